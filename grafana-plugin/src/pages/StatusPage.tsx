import { css } from '@emotion/css';
import type { GrafanaTheme2 } from '@grafana/data';
import { Badge, Button, LoadingPlaceholder, Stack, useStyles2 } from '@grafana/ui';

import { useCallback } from 'react';

import { parseMetrics, summarize } from '../api/metrics';
import { ErrorView } from '../components/ErrorView';
import { useSidecar } from '../components/SidecarContext';
import { useAsync } from '../components/useAsync';

export function StatusPage() {
  const { client } = useSidecar();
  const styles = useStyles2(getStyles);
  const state = useAsync(
    useCallback(async () => {
      const [ready, metrics] = await Promise.all([client.readiness(), client.metrics()]);
      return { ready, health: summarize(parseMetrics(metrics)) };
    }, [client])
  );
  if (state.error) {
    return <ErrorView title="Could not read the sidecar's status" error={state.error} onRetry={state.reload} />;
  }
  if (!state.value) {
    return <LoadingPlaceholder text="Reading status…" />;
  }
  const { ready, health } = state.value;
  return (
    <div>
      <Stack gap={1} alignItems="center">
        <Badge
          color={ready.status === 'ready' ? 'green' : 'red'}
          text={ready.status}
          icon={ready.status === 'ready' ? 'check' : 'exclamation-triangle'}
        />
        <span data-testid="status-summary">
          {health.processed.toLocaleString()} records processed · {health.rejected.toLocaleString()} rejected
          {health.queueCapacity !== undefined && ` · queue ${health.queueDepth ?? 0}/${health.queueCapacity}`}
          {health.modelLoaded !== undefined && ` · model ${health.modelLoaded ? 'loaded' : 'not loaded'}`}
        </span>
        <Button size="sm" variant="secondary" icon="sync" onClick={state.reload}>
          Refresh
        </Button>
      </Stack>
      <h4 className={styles.heading}>Readiness checks</h4>
      <table className={styles.table}>
        <tbody>
          {Object.entries(ready.checks).map(([name, check]) => (
            <tr key={name} data-testid={`check-${name}`}>
              <td>{name}</td>
              <td>
                <Badge color={check.ok ? 'green' : 'red'} text={check.ok ? 'ok' : 'failing'} />
              </td>
              <td>{check.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h4 className={styles.heading}>Exporters</h4>
      <table className={styles.table}>
        <thead>
          <tr>
            <th>Exporter</th>
            <th>Sent</th>
            <th>Pending</th>
            <th>Errors</th>
            <th>Dropped</th>
            <th>Spool bytes</th>
          </tr>
        </thead>
        <tbody>
          {health.exporters.map((e) => (
            <tr key={e.exporter} data-testid={`exporter-${e.exporter}`}>
              <td>{e.exporter}</td>
              <td>{e.sent.toLocaleString()}</td>
              <td>{e.pending.toLocaleString()}</td>
              <td>{e.errors.toLocaleString()}</td>
              <td>{e.dropped.toLocaleString()}</td>
              <td>{e.spoolBytes.toLocaleString()}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const getStyles = (theme: GrafanaTheme2) => ({
  heading: css({ marginTop: theme.spacing(3) }),
  table: css({
    borderCollapse: 'collapse',
    'th, td': { padding: theme.spacing(0.5, 1.5), borderBottom: `1px solid ${theme.colors.border.weak}` },
    th: { textAlign: 'left', color: theme.colors.text.secondary },
  }),
});
