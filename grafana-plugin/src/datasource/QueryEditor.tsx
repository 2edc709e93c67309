import type { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineSwitch, Input, Select, Stack } from '@grafana/ui';

import type { LogGuardianDatasource } from './datasource';
import { DEFAULT_QUERY, type LgOptions, type LgQuery, type QueryType } from './types';

const QUERY_TYPES: Array<SelectableValue<QueryType>> = [
  { label: 'Anomaly counts', value: 'anomaly_counts', description: 'Time series of anomalies by service or reason' },
  { label: 'Anomalies', value: 'anomalies', description: 'Table of anomalous records' },
  { label: 'Incidents', value: 'incidents', description: 'Incidents (also usable as annotations)' },
  { label: 'Templates', value: 'templates', description: 'Mined templates with counts and state' },
];

type Props = QueryEditorProps<LogGuardianDatasource, LgQuery, LgOptions>;

export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const q = { ...DEFAULT_QUERY, ...query };
  const update = (patch: Partial<LgQuery>) => {
    onChange({ ...query, ...patch });
    onRunQuery();
  };
  return (
    <Stack gap={1} wrap="wrap">
      <InlineField label="Query">
        <Select width={22} options={QUERY_TYPES} value={q.queryType} onChange={(v) => update({ queryType: v.value })} />
      </InlineField>
      <InlineField label="Service" tooltip="A service or a variable such as $service; empty for all">
        <Input width={20} value={q.service ?? ''} onChange={(e) => onChange({ ...query, service: e.currentTarget.value })} onBlur={onRunQuery} />
      </InlineField>
      {q.queryType === 'anomaly_counts' && (
        <InlineField label="Group by">
          <Select
            width={14}
            options={[
              { label: 'Service', value: 'service' },
              { label: 'Reason', value: 'reason' },
            ]}
            value={q.groupBy}
            onChange={(v) => update({ groupBy: v.value as LgQuery['groupBy'] })}
          />
        </InlineField>
      )}
      {q.queryType === 'incidents' && (
        <InlineField label="Open only">
          <InlineSwitch value={Boolean(q.openOnly)} onChange={() => update({ openOnly: !q.openOnly })} />
        </InlineField>
      )}
      <InlineField label="Limit">
        <Input width={10} type="number" value={q.limit} onChange={(e) => onChange({ ...query, limit: Number(e.currentTarget.value) || undefined })} onBlur={onRunQuery} />
      </InlineField>
    </Stack>
  );
}
