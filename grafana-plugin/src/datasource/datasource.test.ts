import { dateTime, type DataQueryRequest, type DataSourceInstanceSettings } from '@grafana/data';
import { setTemplateSrv, type TemplateSrv } from '@grafana/runtime';

import { anomaly, incident, template } from '../testing/fixtures';
import { installFakeBackend } from '../testing/fakeBackend';
import { LogGuardianDatasource } from './datasource';
import type { LgOptions, LgQuery } from './types';

const settings = { url: '/api/datasources/proxy/uid/lg', jsonData: {} } as DataSourceInstanceSettings<LgOptions>;

const request = (targets: LgQuery[]): DataQueryRequest<LgQuery> =>
  ({
    targets,
    range: { from: dateTime(1_700_000_000_000), to: dateTime(1_700_000_120_000), raw: { from: 'now-2m', to: 'now' } },
    intervalMs: 60_000,
    scopedVars: {},
  }) as unknown as DataQueryRequest<LgQuery>;

beforeEach(() => {
  setTemplateSrv({ replace: (v?: string) => (v === '$service' ? 'checkout' : (v ?? '')) } as unknown as TemplateSrv);
});

it('anomaly counts ask for anomalies since the range start, with the variable resolved', async () => {
  const calls = installFakeBackend(() => ({ data: { anomalies: [anomaly()] } }));
  const ds = new LogGuardianDatasource(settings);
  const res = await ds.query(request([{ refId: 'A', queryType: 'anomaly_counts', service: '$service' }]));
  expect(calls[0].url).toBe('/api/datasources/proxy/uid/lg/sidecar/api/v1/anomalies');
  expect(calls[0].params).toEqual({ service: 'checkout', since: 1_700_000_000, limit: 10000 });
  expect(res.data).toHaveLength(1);
  // Buckets are aligned to whole steps, so a range starting mid-minute spans three.
  expect(Array.from(res.data[0].fields[1].values)).toEqual([1, 0, 0]);
});

it('anomalies table drops rows after the range end', async () => {
  installFakeBackend(() => ({ data: { anomalies: [anomaly(), anomaly({ id: 'late', ts: 1_700_009_999 })] } }));
  const ds = new LogGuardianDatasource(settings);
  const res = await ds.query(request([{ refId: 'A', queryType: 'anomalies' }]));
  expect(res.data[0].length).toBe(1);
});

it('incidents query passes open=true and filters by service', async () => {
  const calls = installFakeBackend(() => ({
    data: { incidents: [incident(), incident({ id: 'x', service: 'other' })] },
  }));
  const ds = new LogGuardianDatasource(settings);
  const res = await ds.query(request([{ refId: 'A', queryType: 'incidents', openOnly: true, service: 'checkout' }]));
  expect(calls[0].url).toMatch(/\/api\/v1\/incidents$/);
  expect(calls[0].params).toMatchObject({ open: 'true' });
  expect(res.data[0].length).toBe(1);
});

it('templates query and the services variable', async () => {
  installFakeBackend(() => ({ data: { templates: [template(), template({ id: 'b', services: { cart: 3, auth: 1 } })] } }));
  const ds = new LogGuardianDatasource(settings);
  const res = await ds.query(request([{ refId: 'A', queryType: 'templates' }]));
  expect(res.data[0].length).toBe(2);
  expect((await ds.metricFindQuery()).map((v) => v.text)).toEqual(['auth', 'cart']);
});

it('test connection reports failing readiness checks', async () => {
  installFakeBackend(() => ({ status: 503, data: { status: 'not ready', checks: { queue: { ok: false, detail: '10/10 records queued' } } } }));
  const result = await new LogGuardianDatasource(settings).testDatasource();
  expect(result.status).toBe('warning');
  expect(result.message).toContain('queue: 10/10 records queued');
});

it('test connection explains an unreachable sidecar', async () => {
  installFakeBackend(() => ({ status: 502, data: {} }));
  const result = await new LogGuardianDatasource(settings).testDatasource();
  expect(result).toEqual({ status: 'error', message: expect.stringContaining('cannot be reached') });
});
