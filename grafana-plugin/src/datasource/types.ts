import type { DataSourceJsonData } from '@grafana/data';
import type { DataQuery } from '@grafana/schema';

export type QueryType = 'anomalies' | 'anomaly_counts' | 'templates' | 'incidents';

export interface LgQuery extends DataQuery {
  queryType?: QueryType;
  /** A service name or a template variable such as `$service`; empty means all. */
  service?: string;
  /** anomaly_counts: one series per service or per reason kind. */
  groupBy?: 'service' | 'reason';
  openOnly?: boolean;
  limit?: number;
}

export const DEFAULT_QUERY: Partial<LgQuery> = {
  queryType: 'anomaly_counts',
  groupBy: 'service',
  limit: 1000,
};

export interface LgOptions extends DataSourceJsonData {
  url?: string;
}

export interface LgSecureOptions {
  token?: string;
}
