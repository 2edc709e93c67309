import { dateTimeFormat, dateTimeFormatTimeAgo } from '@grafana/data';

/** Sidecar times are epoch seconds; Grafana formats milliseconds. */
export const formatTime = (epochSeconds: number | null | undefined): string =>
  epochSeconds ? dateTimeFormat(epochSeconds * 1000) : '—';

export const timeAgo = (epochSeconds: number | null | undefined): string =>
  epochSeconds ? dateTimeFormatTimeAgo(epochSeconds * 1000) : '—';

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${s % 60}s`;
  }
  const h = Math.floor(s / 3600);
  return `${h}h ${Math.floor((s % 3600) / 60)}m`;
}

/** Fills {service} {start} {end} {start_ms} {end_ms} like the sidecar's alert links. */
export function fillLinkTemplate(template: string, service: string, startSeconds: number, endSeconds: number): string {
  const values: Record<string, string> = {
    service: encodeURIComponent(service),
    start: new Date(startSeconds * 1000).toISOString(),
    end: new Date(endSeconds * 1000).toISOString(),
    start_ms: String(Math.floor(startSeconds * 1000)),
    end_ms: String(Math.ceil(endSeconds * 1000)),
  };
  return template.replace(/\{(service|start|end|start_ms|end_ms)\}/g, (_, key: string) => values[key]);
}
