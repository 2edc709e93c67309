import {
  type DataFrame,
  type DataQueryRequest,
  type DataQueryResponse,
  DataSourceApi,
  type DataSourceInstanceSettings,
  type MetricFindValue,
  type ScopedVars,
  type TestDataSourceResponse,
} from '@grafana/data';
import { getTemplateSrv } from '@grafana/runtime';

import { describeError, SidecarClient } from '../api/client';
import { anomaliesFrame, anomalyCountFrames, incidentsFrame, incidentsInRange, templatesFrame } from './frames';
import { DEFAULT_QUERY, type LgOptions, type LgQuery } from './types';

/** Queries one sidecar through the datasource's proxy route (`<instance url>/sidecar`). */
export class LogGuardianDatasource extends DataSourceApi<LgQuery, LgOptions> {
  readonly client: SidecarClient;
  // Standard annotation support: annotation queries run through query() as `incidents`.
  annotations = {};

  constructor(instanceSettings: DataSourceInstanceSettings<LgOptions>, client?: SidecarClient) {
    super(instanceSettings);
    this.client = client ?? new SidecarClient(`${instanceSettings.url ?? ''}/sidecar`);
  }

  getDefaultQuery(): Partial<LgQuery> {
    return DEFAULT_QUERY;
  }

  filterQuery(query: LgQuery): boolean {
    return !query.hide;
  }

  private service(query: LgQuery, scopedVars: ScopedVars): string | undefined {
    if (!query.service) {
      return undefined;
    }
    const value = getTemplateSrv().replace(query.service, scopedVars);
    // "All" or a multi-value expansion: no server-side filter (the sidecar takes one service).
    return value === '' || value === '$__all' || value.includes(',') || value.startsWith('{') ? undefined : value;
  }

  async runQuery(query: LgQuery, request: DataQueryRequest<LgQuery>): Promise<DataFrame[]> {
    const q = { ...DEFAULT_QUERY, ...query };
    const service = this.service(q, request.scopedVars);
    const fromMs = request.range.from.valueOf();
    const toMs = request.range.to.valueOf();
    const limit = q.limit ?? 1000;
    switch (q.queryType) {
      case 'anomalies': {
        const rows = await this.client.anomalies({ service, since: fromMs / 1000, limit });
        return [anomaliesFrame(rows.filter((a) => a.ts * 1000 <= toMs), q.refId)];
      }
      case 'anomaly_counts': {
        const rows = await this.client.anomalies({ service, since: fromMs / 1000, limit: 10000 });
        return anomalyCountFrames(rows, fromMs, toMs, request.intervalMs, q.groupBy ?? 'service', q.refId);
      }
      case 'templates': {
        return [templatesFrame((await this.client.templates(service, limit)).slice(0, limit), q.refId)];
      }
      case 'incidents': {
        const now = Date.now();
        const all = await this.client.incidents(Boolean(q.openOnly), Math.min(limit, 1000));
        const found = incidentsInRange(all, fromMs, toMs, now).filter((i) => !service || i.service === service);
        return [incidentsFrame(found, q.refId, now)];
      }
      default:
        throw new Error(`unknown query type ${String(q.queryType)}`);
    }
  }

  async query(request: DataQueryRequest<LgQuery>): Promise<DataQueryResponse> {
    const frames = await Promise.all(request.targets.filter((t) => !t.hide).map((t) => this.runQuery(t, request)));
    return { data: frames.flat() };
  }

  /** Template variables: the services the sidecar has seen (`services`, the default). */
  async metricFindQuery(): Promise<MetricFindValue[]> {
    const templates = await this.client.templates(undefined, 100000);
    const services = [...new Set(templates.flatMap((t) => Object.keys(t.services)))].sort();
    return services.map((text) => ({ text, value: text }));
  }

  async testDatasource(): Promise<TestDataSourceResponse> {
    try {
      const ready = await this.client.readiness();
      const failing = Object.entries(ready.checks)
        .filter(([, c]) => !c.ok)
        .map(([name, c]) => `${name}: ${c.detail}`);
      return failing.length === 0
        ? { status: 'success', message: 'Sidecar reachable and ready' }
        : { status: 'warning', message: `Sidecar reachable but not ready (${failing.join('; ')})` };
    } catch (err) {
      return { status: 'error', message: describeError(err) };
    }
  }
}
