import { type BackendSrv, type BackendSrvRequest, type FetchResponse, setBackendSrv } from '@grafana/runtime';
import { Observable, of, throwError } from 'rxjs';

export interface Call {
  url: string;
  method: string;
  data?: unknown;
  params?: Record<string, unknown>;
}

type Handler = (call: Call) => { status?: number; data: unknown };

/** Installs a BackendSrv whose fetch answers from `handler` and records every call. */
export function installFakeBackend(handler: Handler): Call[] {
  const calls: Call[] = [];
  const fetch = (options: BackendSrvRequest): Observable<FetchResponse<unknown>> => {
    const call: Call = { url: options.url, method: options.method ?? 'GET', data: options.data, params: options.params };
    calls.push(call);
    const { status = 200, data } = handler(call);
    if (status >= 400) {
      return throwError(() => ({ status, data, statusText: 'error' }));
    }
    return of({ data, status, ok: true, headers: new Headers(), redirected: false, statusText: 'OK', type: 'basic', url: options.url, config: options } as FetchResponse<unknown>);
  };
  setBackendSrv({ fetch } as unknown as BackendSrv);
  return calls;
}
