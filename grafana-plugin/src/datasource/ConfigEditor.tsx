import type { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { Field, Input, SecretInput } from '@grafana/ui';

import type { LgOptions, LgSecureOptions } from './types';

type Props = DataSourcePluginOptionsEditorProps<LgOptions, LgSecureOptions>;

/** The sidecar URL in jsonData; the token in secureJsonData, sent only by the proxy route. */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const { jsonData, secureJsonFields, secureJsonData } = options;
  return (
    <>
      <Field label="Sidecar URL" description="Where Grafana's server reaches the sidecar's HTTP port">
        <Input
          width={60}
          value={jsonData.url ?? ''}
          placeholder="http://logguardian:9880"
          onChange={(e) => onOptionsChange({ ...options, jsonData: { ...jsonData, url: e.currentTarget.value.trim() } })}
        />
      </Field>
      <Field label="API token">
        <SecretInput
          width={60}
          isConfigured={Boolean(secureJsonFields?.token)}
          value={secureJsonData?.token ?? ''}
          onChange={(e) => onOptionsChange({ ...options, secureJsonData: { token: e.currentTarget.value } })}
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...secureJsonFields, token: false },
              secureJsonData: { token: '' },
            })
          }
        />
      </Field>
    </>
  );
}
