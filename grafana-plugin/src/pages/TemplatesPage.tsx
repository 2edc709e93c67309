import { css } from '@emotion/css';
import type { GrafanaTheme2 } from '@grafana/data';
import { Badge, Button, Input, LoadingPlaceholder, Select, Stack, useStyles2 } from '@grafana/ui';
import { useCallback, useMemo, useState } from 'react';

import { describeError } from '../api/client';
import { formatTime } from '../api/format';
import type { Template, Verdict } from '../api/types';
import { ErrorView } from '../components/ErrorView';
import { useSidecar } from '../components/SidecarContext';
import { useAsync } from '../components/useAsync';

export function filterTemplates(templates: Template[], service: string | undefined, search: string): Template[] {
  const needle = search.trim().toLowerCase();
  return templates.filter(
    (t) =>
      (!service || service in t.services) &&
      (!needle || t.text.toLowerCase().includes(needle) || t.id.toLowerCase().startsWith(needle))
  );
}

export function TemplatesPage() {
  const { client } = useSidecar();
  const styles = useStyles2(getStyles);
  const state = useAsync(useCallback(() => client.templates(), [client]));
  const [service, setService] = useState<string | undefined>();
  const [search, setSearch] = useState('');
  // Rows updated by feedback since the last load (the API answers with the new state).
  const [updated, setUpdated] = useState<Record<string, Template['state']>>({});
  const [busy, setBusy] = useState<string | null>(null);
  const [rowError, setRowError] = useState<{ id: string; message: string } | null>(null);

  const services = useMemo(
    () => [...new Set((state.value ?? []).flatMap((t) => Object.keys(t.services)))].sort(),
    [state.value]
  );
  const rows = useMemo(() => filterTemplates(state.value ?? [], service, search), [state.value, service, search]);

  const give = async (template: Template, verdict: Verdict) => {
    setBusy(template.id);
    setRowError(null);
    try {
      const result = await client.feedback(template.id, verdict);
      setUpdated((u) => ({ ...u, [template.id]: result.state }));
    } catch (err) {
      setRowError({ id: template.id, message: describeError(err) });
    } finally {
      setBusy(null);
    }
  };

  if (state.error) {
    return <ErrorView title="Could not load templates" error={state.error} onRetry={state.reload} />;
  }
  if (state.loading && !state.value) {
    return <LoadingPlaceholder text="Loading templates…" />;
  }
  return (
    <div>
      <Stack gap={2} alignItems="center">
        <div className={styles.filter}>
          <Select
            aria-label="Service"
            placeholder="All services"
            isClearable
            options={services.map((s) => ({ label: s, value: s }))}
            value={service ?? null}
            onChange={(v) => setService(v?.value ?? undefined)}
          />
        </div>
        <div className={styles.search}>
          <Input
            aria-label="Search templates"
            placeholder="Search text or id"
            value={search}
            onChange={(e) => setSearch(e.currentTarget.value)}
          />
        </div>
        <span className={styles.muted}>
          {rows.length} of {state.value?.length ?? 0} templates
        </span>
        <Button size="sm" variant="secondary" icon="sync" onClick={() => { setUpdated({}); state.reload(); }}>
          Refresh
        </Button>
      </Stack>
      <table className={styles.table}>
        <thead>
          <tr>
            <th>Template</th>
            <th>Services</th>
            <th className={styles.num}>Count</th>
            <th>First seen</th>
            <th>Last seen</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((t) => {
            const current = updated[t.id] ?? t.state;
            return (
              <tr key={t.id} data-testid={`template-${t.id}`}>
                <td>
                  <code className={styles.text}>{t.text}</code>
                  <div className={styles.muted}>{t.id}</div>
                  {rowError?.id === t.id && (
                    <div className={styles.error} role="alert">
                      {rowError.message}
                    </div>
                  )}
                </td>
                <td>{Object.keys(t.services).join(', ')}</td>
                <td className={styles.num}>{t.count.toLocaleString()}</td>
                <td>{formatTime(t.first_seen)}</td>
                <td>{formatTime(t.last_seen)}</td>
                <td data-testid="template-state">
                  <Badge color={current === 'suppressed' ? 'green' : 'blue'} text={current} />
                </td>
                <td>
                  {current === 'suppressed' ? (
                    <Button size="sm" variant="secondary" disabled={busy === t.id} onClick={() => give(t, 'anomalous')}>
                      Re-arm
                    </Button>
                  ) : (
                    <Button size="sm" variant="primary" disabled={busy === t.id} onClick={() => give(t, 'normal')}>
                      Mark normal
                    </Button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

const getStyles = (theme: GrafanaTheme2) => ({
  filter: css({ width: 240 }),
  search: css({ width: 320 }),
  muted: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }),
  error: css({ color: theme.colors.error.text }),
  table: css({
    width: '100%',
    marginTop: theme.spacing(2),
    borderCollapse: 'collapse',
    'th, td': { padding: theme.spacing(0.75, 1), borderBottom: `1px solid ${theme.colors.border.weak}`, verticalAlign: 'top' },
    th: { textAlign: 'left', color: theme.colors.text.secondary },
  }),
  num: css({ textAlign: 'right' }),
  text: css({ whiteSpace: 'pre-wrap', wordBreak: 'break-word' }),
});
