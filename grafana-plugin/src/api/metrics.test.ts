import { parseMetrics, summarize } from './metrics';

const TEXT = `# HELP logguardian_queue_depth Records queued
logguardian_queue_depth 12.0
logguardian_queue_capacity 100000.0
logguardian_model_loaded 1.0
logguardian_records_total{service="a"} 10.0
logguardian_records_total{service="b"} 5.0
logguardian_exporter_sent_total{exporter="elasticsearch"} 7.0
logguardian_exporter_pending{exporter="elasticsearch"} 3.0
logguardian_exporter_errors_total{exporter="local"} 1.0
logguardian_rejected_total{reason="decode"} 2.0
`;

it('summarizes queue, model, records and exporters', () => {
  const health = summarize(parseMetrics(TEXT));
  expect(health).toEqual({
    queueDepth: 12,
    queueCapacity: 100000,
    modelLoaded: true,
    processed: 15,
    rejected: 2,
    exporters: [
      { exporter: 'elasticsearch', sent: 7, pending: 3, errors: 0, dropped: 0, spoolBytes: 0 },
      { exporter: 'local', sent: 0, pending: 0, errors: 1, dropped: 0, spoolBytes: 0 },
    ],
  });
});

it('parses escaped label values', () => {
  const [s] = parseMetrics('m{a="x\\"y"} 1');
  expect(s.labels.a).toBe('x"y');
});
