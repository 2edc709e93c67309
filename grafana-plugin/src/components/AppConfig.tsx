import type { AppPluginMeta, PluginConfigPageProps, PluginMeta } from '@grafana/data';
import { getBackendSrv } from '@grafana/runtime';
import { Button, Field, FieldSet, Input, SecretInput } from '@grafana/ui';
import { useState } from 'react';
import { lastValueFrom } from 'rxjs';

import type { AppSecureSettings, AppSettings } from '../types';

type Props = PluginConfigPageProps<AppPluginMeta<AppSettings>>;

export function validSidecarUrl(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Saves the sidecar URL in jsonData and the token in secureJsonData (write-only). */
export function AppConfig({ plugin }: Props) {
  const { enabled, pinned, jsonData, secureJsonFields } = plugin.meta;
  const [url, setUrl] = useState(jsonData?.url ?? '');
  const [kibana, setKibana] = useState(jsonData?.kibanaUrlTemplate ?? '');
  const [explore, setExplore] = useState(jsonData?.exploreDatasourceUid ?? '');
  const [token, setToken] = useState('');
  const [tokenSet, setTokenSet] = useState(Boolean(secureJsonFields?.token));

  const save = async () => {
    const secureJsonData: AppSecureSettings | undefined = token ? { token } : undefined;
    await updatePlugin(plugin.meta.id, {
      enabled: true,
      pinned: true,
      jsonData: { url, kibanaUrlTemplate: kibana || undefined, exploreDatasourceUid: explore || undefined },
      secureJsonData,
    });
    window.location.reload();
  };

  return (
    <FieldSet label="Sidecar">
      <Field label="Sidecar URL" description="Where Grafana's server reaches the sidecar's HTTP port, e.g. http://logguardian:9880" invalid={url !== '' && !validSidecarUrl(url)} error="An http(s) URL">
        <Input width={60} value={url} onChange={(e) => setUrl(e.currentTarget.value.trim())} placeholder="http://logguardian:9880" />
      </Field>
      <Field label="API token" description="The sidecar's auth token; stored encrypted, sent only by Grafana's proxy">
        <SecretInput
          width={60}
          isConfigured={tokenSet}
          value={token}
          onChange={(e) => setToken(e.currentTarget.value)}
          onReset={() => {
            setToken('');
            setTokenSet(false);
          }}
        />
      </Field>
      <Field label="Kibana link template" description="Optional: {service} {start} {end} {start_ms} {end_ms}">
        <Input width={60} value={kibana} onChange={(e) => setKibana(e.currentTarget.value)} />
      </Field>
      <Field label="Explore datasource UID" description="Optional: the logs datasource incidents open in Explore">
        <Input width={60} value={explore} onChange={(e) => setExplore(e.currentTarget.value)} />
      </Field>
      <Button onClick={save} disabled={!validSidecarUrl(url)}>
        {enabled && pinned ? 'Save settings' : 'Enable and save'}
      </Button>
    </FieldSet>
  );
}

async function updatePlugin(pluginId: string, data: Partial<PluginMeta<AppSettings>> & { secureJsonData?: AppSecureSettings }) {
  await lastValueFrom(getBackendSrv().fetch({ url: `/api/plugins/${pluginId}/settings`, method: 'POST', data }));
}
