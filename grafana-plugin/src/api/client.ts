import { getBackendSrv, type FetchError } from '@grafana/runtime';
import { lastValueFrom } from 'rxjs';

import type { Anomaly, ExceptionGroup, Incident, Readiness, Template, Verdict } from './types';

/** A sidecar error in words a person can act on (never a blank page). */
export class SidecarError extends Error {
  constructor(
    message: string,
    readonly status?: number
  ) {
    super(message);
    this.name = 'SidecarError';
  }
}

export function describeError(err: unknown): string {
  if (err instanceof SidecarError) {
    return err.message;
  }
  const fetchError = err as Partial<FetchError<{ error?: string; message?: string }>>;
  if (fetchError && typeof fetchError.status === 'number') {
    const detail = fetchError.data?.error ?? fetchError.data?.message ?? fetchError.statusText ?? '';
    if (fetchError.status === 401 || fetchError.status === 403) {
      return `The sidecar refused the request (${fetchError.status}): check the token in the app configuration.`;
    }
    if (fetchError.status === 502 || fetchError.status === 0) {
      return `The sidecar cannot be reached (${fetchError.status}): check its URL in the app configuration.`;
    }
    return `The sidecar answered ${fetchError.status}${detail ? `: ${detail}` : ''}`;
  }
  if (err instanceof Error) {
    return err.message;
  }
  return String(err);
}

export interface AnomalyQuery {
  service?: string;
  since?: number;
  limit?: number;
}

/** Typed calls to one sidecar behind a Grafana proxy route. */
export class SidecarClient {
  constructor(private readonly base: string) {}

  private async request<T>(path: string, init: { method?: string; data?: unknown; params?: Record<string, unknown> } = {}): Promise<T> {
    const params = Object.fromEntries(
      Object.entries(init.params ?? {}).filter(([, v]) => v !== undefined && v !== null && v !== '')
    );
    const response = await lastValueFrom(
      getBackendSrv().fetch<T>({
        url: `${this.base}${path}`,
        method: init.method ?? 'GET',
        data: init.data,
        params,
        showErrorAlert: false,
        showSuccessAlert: false,
      })
    );
    return response.data;
  }

  async incidents(openOnly = false, limit = 200): Promise<Incident[]> {
    const body = await this.request<{ incidents: Incident[] }>('/api/v1/incidents', {
      params: { open: openOnly ? 'true' : undefined, limit },
    });
    return body.incidents ?? [];
  }

  async templates(service?: string, limit = 1000): Promise<Template[]> {
    const body = await this.request<{ templates: Template[] }>('/api/v1/templates', {
      params: { service, limit },
    });
    return body.templates ?? [];
  }

  async feedback(templateId: string, verdict: Verdict, note = ''): Promise<{ template_id: string; state: Template['state'] }> {
    return this.request(`/api/v1/templates/${encodeURIComponent(templateId)}/feedback`, {
      method: 'POST',
      data: { verdict, note },
    });
  }

  async anomalies(query: AnomalyQuery = {}): Promise<Anomaly[]> {
    const body = await this.request<{ anomalies: Anomaly[] }>('/api/v1/anomalies', {
      params: { service: query.service, since: query.since, limit: query.limit ?? 1000 },
    });
    return body.anomalies ?? [];
  }

  /** Exception groups; an older sidecar without the endpoint gives an empty list. */
  async exceptions(service?: string, limit = 200): Promise<ExceptionGroup[] | null> {
    try {
      const body = await this.request<{ exceptions: ExceptionGroup[] }>('/api/v1/exceptions', {
        params: { service, limit },
      });
      return body.exceptions ?? [];
    } catch (err) {
      if ((err as { status?: number }).status === 404) {
        return null;
      }
      throw err;
    }
  }

  async readiness(): Promise<Readiness> {
    try {
      return await this.request<Readiness>('/readyz');
    } catch (err) {
      // 503 still carries the per-check details the Status page shows.
      const data = (err as { status?: number; data?: Readiness }).data;
      if ((err as { status?: number }).status === 503 && data?.checks) {
        return data;
      }
      throw err;
    }
  }

  async metrics(): Promise<string> {
    return this.request<string>('/metrics', { params: {} });
  }
}

export const appClient = (base: string) => new SidecarClient(base);
