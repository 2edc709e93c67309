/** Shapes of the sidecar's REST API (DESIGN §4); only the fields the UI reads. */

export type Severity = 'low' | 'medium' | 'high' | 'critical';

export interface Explanation {
  source: 'llm' | 'rules';
  summary: string;
  likely_cause?: string;
  /** What the explanation rests on: a template id, fingerprint or service, and the fact. */
  evidence?: Array<{ ref: string; fact: string }>;
  next_steps?: string[];
  confidence?: number;
  model?: string;
  generated_at?: number;
}

export interface Incident {
  id: string;
  service: string;
  alertname: string;
  severity: Severity;
  started_at: number;
  last_seen: number;
  resolved_at: number | null;
  anomalies: number;
  template_ids: string[];
  reasons: string[];
  examples: string[];
  namespace: string | null;
  open: boolean;
  explanation?: Explanation | null;
  fingerprints?: string[];
}

export interface TemplateFeedback {
  verdict: 'normal' | 'anomalous';
  at: number;
  note: string;
}

export interface Template {
  id: string;
  text: string;
  count: number;
  /** Records per service (services past the sidecar's cap pooled as "other"). */
  services: Record<string, number>;
  first_seen: number;
  last_seen: number;
  state: 'normal' | 'suppressed';
  feedback: TemplateFeedback | null;
}

export interface AnomalyReason {
  kind: string;
  score: number;
  text: string;
  severity?: Severity;
}

export interface Anomaly {
  id: string;
  ts: number;
  service: string;
  message: string;
  level: string | null;
  score: number;
  reasons: AnomalyReason[];
  template_id: string | null;
  template_text: string | null;
  incident_id: string | null;
}

export interface Frame {
  file?: string | null;
  function?: string | null;
  line?: number | null;
  module?: string | null;
  in_app?: boolean;
  url?: string | null;
}

export interface ExceptionGroup {
  fingerprint: string;
  service: string;
  type: string;
  message_template?: string | null;
  top_frames: Frame[];
  first_seen: number;
  last_seen: number;
  count: number;
  versions?: string[];
  example?: string | null;
}

export interface ReadinessCheck {
  ok: boolean;
  detail: string;
}

export interface Readiness {
  status: string;
  checks: Record<string, ReadinessCheck>;
}

export type Verdict = 'normal' | 'anomalous';
