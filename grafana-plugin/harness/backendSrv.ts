import type { BackendSrv, BackendSrvRequest, FetchResponse } from '@grafana/runtime';
import { Observable } from 'rxjs';

/**
 * The slice of Grafana's BackendSrv the plugin uses, over window.fetch: JSON bodies,
 * query params, and errors shaped like Grafana's FetchError ({status, data, statusText}).
 */
export function fetchBackendSrv(): BackendSrv {
  const fetch = <T>(options: BackendSrvRequest): Observable<FetchResponse<T>> =>
    new Observable((subscriber) => {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(options.params ?? {})) {
        if (value !== undefined && value !== null) {
          params.set(key, String(value));
        }
      }
      const url = params.size ? `${options.url}?${params}` : options.url;
      const init: RequestInit = { method: options.method ?? 'GET', headers: {} };
      if (options.data !== undefined) {
        init.body = JSON.stringify(options.data);
        init.headers = { 'Content-Type': 'application/json' };
      }
      window
        .fetch(url, init)
        .then(async (res) => {
          const text = await res.text();
          const json = (res.headers.get('content-type') ?? '').includes('json');
          const data = json && text ? JSON.parse(text) : text;
          if (!res.ok) {
            subscriber.error({ status: res.status, statusText: res.statusText, data, config: options });
            return;
          }
          subscriber.next({
            data: data as T,
            status: res.status,
            statusText: res.statusText,
            ok: true,
            headers: res.headers,
            redirected: res.redirected,
            type: res.type,
            url: res.url,
            config: options,
          });
          subscriber.complete();
        })
        .catch((err: unknown) => subscriber.error({ status: 0, statusText: String(err), data: {}, config: options }));
    });
  return { fetch } as unknown as BackendSrv;
}
