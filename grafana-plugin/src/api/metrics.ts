/** Reads the few sidecar metrics the Status page shows out of Prometheus text format. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      continue;
    }
    const m = LINE.exec(line);
    if (!m) {
      continue;
    }
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(LABEL)) {
      labels[lm[1]] = lm[2].replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const value = Number(m[3]);
    if (!Number.isNaN(value)) {
      out.push({ name: m[1], labels, value });
    }
  }
  return out;
}

export interface ExporterHealth {
  exporter: string;
  sent: number;
  pending: number;
  errors: number;
  dropped: number;
  spoolBytes: number;
}

export interface SidecarHealth {
  queueDepth?: number;
  queueCapacity?: number;
  modelLoaded?: boolean;
  processed: number;
  rejected: number;
  exporters: ExporterHealth[];
}

const sum = (samples: Sample[], name: string, where: (s: Sample) => boolean = () => true) =>
  samples.filter((s) => s.name === name && where(s)).reduce((acc, s) => acc + s.value, 0);

const one = (samples: Sample[], name: string) => samples.find((s) => s.name === name)?.value;

export function summarize(samples: Sample[]): SidecarHealth {
  const exporters = new Map<string, ExporterHealth>();
  const exporter = (name: string): ExporterHealth => {
    let found = exporters.get(name);
    if (!found) {
      found = { exporter: name, sent: 0, pending: 0, errors: 0, dropped: 0, spoolBytes: 0 };
      exporters.set(name, found);
    }
    return found;
  };
  for (const s of samples) {
    const name = s.labels.exporter;
    if (!name) {
      continue;
    }
    switch (s.name) {
      case 'logguardian_exporter_sent_total':
        exporter(name).sent += s.value;
        break;
      case 'logguardian_exporter_pending':
        exporter(name).pending += s.value;
        break;
      case 'logguardian_exporter_errors_total':
        exporter(name).errors += s.value;
        break;
      case 'logguardian_exporter_dropped_total':
        exporter(name).dropped += s.value;
        break;
      case 'logguardian_exporter_spool_bytes':
        exporter(name).spoolBytes += s.value;
        break;
    }
  }
  const model = one(samples, 'logguardian_model_loaded');
  return {
    queueDepth: one(samples, 'logguardian_queue_depth'),
    queueCapacity: one(samples, 'logguardian_queue_capacity'),
    modelLoaded: model === undefined ? undefined : model > 0,
    processed: sum(samples, 'logguardian_records_total'),
    rejected: sum(samples, 'logguardian_rejected_total'),
    exporters: [...exporters.values()].sort((a, b) => a.exporter.localeCompare(b.exporter)),
  };
}
