import { createDataFrame, type DataFrame, FieldType } from '@grafana/data';

import type { Anomaly, Incident, Template } from '../api/types';

/** Pure conversions from sidecar responses to data frames: what the tests pin down. */

const ms = (seconds: number) => Math.round(seconds * 1000);

export function anomaliesFrame(anomalies: Anomaly[], refId: string): DataFrame {
  return createDataFrame({
    refId,
    name: 'anomalies',
    fields: [
      { name: 'time', type: FieldType.time, values: anomalies.map((a) => ms(a.ts)) },
      { name: 'service', type: FieldType.string, values: anomalies.map((a) => a.service) },
      { name: 'score', type: FieldType.number, values: anomalies.map((a) => a.score) },
      { name: 'reasons', type: FieldType.string, values: anomalies.map((a) => a.reasons.map((r) => r.text).join('; ')) },
      { name: 'message', type: FieldType.string, values: anomalies.map((a) => a.message) },
      { name: 'template', type: FieldType.string, values: anomalies.map((a) => a.template_text ?? '') },
      { name: 'incident', type: FieldType.string, values: anomalies.map((a) => a.incident_id ?? '') },
    ],
  });
}

/**
 * Counts of anomalies per `stepMs` bucket in [fromMs, toMs), one frame per group
 * (service, or reason kind: a record with two reasons counts under both).
 */
export function anomalyCountFrames(
  anomalies: Anomaly[],
  fromMs: number,
  toMs: number,
  stepMs: number,
  groupBy: 'service' | 'reason',
  refId: string
): DataFrame[] {
  const step = Math.max(1000, stepMs);
  const start = Math.floor(fromMs / step) * step;
  const buckets = Math.max(1, Math.ceil((toMs - start) / step));
  const groups = new Map<string, number[]>();
  for (const a of anomalies) {
    const t = ms(a.ts);
    if (t < fromMs || t >= toMs) {
      continue;
    }
    const keys = groupBy === 'service' ? [a.service] : [...new Set(a.reasons.map((r) => r.kind))];
    const index = Math.floor((t - start) / step);
    for (const key of keys) {
      let counts = groups.get(key);
      if (!counts) {
        counts = new Array(buckets).fill(0);
        groups.set(key, counts);
      }
      counts[index] += 1;
    }
  }
  const times = Array.from({ length: buckets }, (_, i) => start + i * step);
  return [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, counts]) =>
      createDataFrame({
        refId,
        name: key,
        fields: [
          { name: 'time', type: FieldType.time, values: times },
          { name: 'anomalies', type: FieldType.number, values: counts, labels: { [groupBy]: key }, config: { displayNameFromDS: key } },
        ],
      })
    );
}

export function templatesFrame(templates: Template[], refId: string): DataFrame {
  return createDataFrame({
    refId,
    name: 'templates',
    fields: [
      { name: 'id', type: FieldType.string, values: templates.map((t) => t.id) },
      { name: 'template', type: FieldType.string, values: templates.map((t) => t.text) },
      { name: 'services', type: FieldType.string, values: templates.map((t) => Object.keys(t.services).join(', ')) },
      { name: 'count', type: FieldType.number, values: templates.map((t) => t.count) },
      { name: 'first seen', type: FieldType.time, values: templates.map((t) => ms(t.first_seen)) },
      { name: 'last seen', type: FieldType.time, values: templates.map((t) => ms(t.last_seen)) },
      { name: 'state', type: FieldType.string, values: templates.map((t) => t.state) },
    ],
  });
}

/** Incidents as a table that doubles as annotations (time, timeEnd, title, text, tags). */
export function incidentsFrame(incidents: Incident[], refId: string, nowMs: number): DataFrame {
  return createDataFrame({
    refId,
    name: 'incidents',
    fields: [
      { name: 'time', type: FieldType.time, values: incidents.map((i) => ms(i.started_at)) },
      { name: 'timeEnd', type: FieldType.time, values: incidents.map((i) => (i.resolved_at ? ms(i.resolved_at) : nowMs)) },
      { name: 'title', type: FieldType.string, values: incidents.map((i) => `${i.alertname} in ${i.service} (${i.severity})`) },
      {
        name: 'text',
        type: FieldType.string,
        values: incidents.map((i) => [i.explanation?.summary, ...i.reasons].filter(Boolean).join('\n')),
      },
      { name: 'tags', type: FieldType.other, values: incidents.map((i) => ['logguardian', i.service, i.severity, i.alertname]) },
      { name: 'service', type: FieldType.string, values: incidents.map((i) => i.service) },
      { name: 'severity', type: FieldType.string, values: incidents.map((i) => i.severity) },
      { name: 'anomalies', type: FieldType.number, values: incidents.map((i) => i.anomalies) },
      { name: 'open', type: FieldType.boolean, values: incidents.map((i) => i.open) },
      { name: 'id', type: FieldType.string, values: incidents.map((i) => i.id) },
    ],
  });
}

/** Incidents overlapping [fromMs, toMs] (open ones reach `nowMs`). */
export function incidentsInRange(incidents: Incident[], fromMs: number, toMs: number, nowMs: number): Incident[] {
  return incidents.filter((i) => ms(i.started_at) <= toMs && (i.resolved_at ? ms(i.resolved_at) : nowMs) >= fromMs);
}
