import type { Anomaly, Incident, Template } from '../api/types';

export const incident = (over: Partial<Incident> = {}): Incident => ({
  id: 'inc-1',
  service: 'checkout',
  alertname: 'LogAnomaly',
  severity: 'high',
  started_at: 1_700_000_000,
  last_seen: 1_700_000_120,
  resolved_at: null,
  anomalies: 42,
  template_ids: ['t1'],
  reasons: ['new template "payment <*> failed" first seen in checkout'],
  examples: ['payment 123 failed: gateway timeout'],
  namespace: 'shop',
  open: true,
  ...over,
});

export const template = (over: Partial<Template> = {}): Template => ({
  id: 'a1b2c3d4e5',
  text: 'user <*> logged in from <IP>',
  count: 1234,
  services: { auth: 1234 },
  first_seen: 1_700_000_000,
  last_seen: 1_700_003_600,
  state: 'normal',
  feedback: null,
  ...over,
});

export const anomaly = (over: Partial<Anomaly> = {}): Anomaly => ({
  id: 'an-1',
  ts: 1_700_000_030,
  service: 'checkout',
  message: 'payment 123 failed',
  level: 'error',
  score: 0.93,
  reasons: [{ kind: 'novelty', score: 0.93, text: 'template first seen' }],
  template_id: 't1',
  template_text: 'payment <*> failed',
  incident_id: 'inc-1',
  ...over,
});
