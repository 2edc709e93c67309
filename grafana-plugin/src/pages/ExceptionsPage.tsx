import { css } from '@emotion/css';
import type { GrafanaTheme2 } from '@grafana/data';
import { Badge, LoadingPlaceholder, Stack, TextLink, useStyles2 } from '@grafana/ui';

import { useCallback } from 'react';

import { formatTime } from '../api/format';
import type { ExceptionGroup, Frame } from '../api/types';
import { ErrorView } from '../components/ErrorView';
import { cardStyle } from '../components/styles';
import { useSidecar } from '../components/SidecarContext';
import { useAsync } from '../components/useAsync';

function FrameLine({ frame }: { frame: Frame }) {
  const where = `${frame.file ?? frame.module ?? '?'}${frame.line != null ? `:${frame.line}` : ''}`;
  const label = `${frame.function ?? '?'} (${where})`;
  return (
    <li>
      {frame.url ? (
        <TextLink href={frame.url} external>
          {label}
        </TextLink>
      ) : (
        label
      )}
      {frame.in_app === false && <span> · library</span>}
    </li>
  );
}

export function ExceptionGroupCard({ group }: { group: ExceptionGroup }) {
  const styles = useStyles2(getStyles);
  return (
    <div className={styles.card} data-testid="exception-group">
      <Stack gap={1} alignItems="center" wrap="wrap">
        <strong>{group.type}</strong>
        <span>{group.service}</span>
        <Badge color="orange" text={`${group.count}×`} />
        <span className={styles.muted}>
          first {formatTime(group.first_seen)} · last {formatTime(group.last_seen)}
          {group.versions && group.versions.length > 0 ? ` · versions ${group.versions.join(', ')}` : ''}
        </span>
      </Stack>
      {group.message_template && <code>{group.message_template}</code>}
      <ol className={styles.frames}>
        {group.top_frames.map((f, i) => (
          <FrameLine key={i} frame={f} />
        ))}
      </ol>
      <div className={styles.muted}>fingerprint {group.fingerprint}</div>
    </div>
  );
}

export function ExceptionsPage() {
  const { client } = useSidecar();
  const state = useAsync(useCallback(() => client.exceptions(), [client]));
  if (state.error) {
    return <ErrorView title="Could not load exception groups" error={state.error} onRetry={state.reload} />;
  }
  if (state.loading && state.value === undefined) {
    return <LoadingPlaceholder text="Loading exception groups…" />;
  }
  if (state.value === null) {
    return (
      <p data-testid="exceptions-unsupported">
        This sidecar does not group exceptions yet (no <code>/api/v1/exceptions</code>): upgrade it to see stack traces
        grouped by type and in-app frames here.
      </p>
    );
  }
  if (!state.value || state.value.length === 0) {
    return <p data-testid="exceptions-empty">No exceptions seen: no stack traces in the logs so far.</p>;
  }
  return (
    <div>
      {state.value.map((g) => (
        <ExceptionGroupCard key={`${g.service}/${g.fingerprint}`} group={g} />
      ))}
    </div>
  );
}

const getStyles = (theme: GrafanaTheme2) => ({
  card: cardStyle(theme),
  muted: css({ color: theme.colors.text.secondary }),
  frames: css({ margin: theme.spacing(1, 0, 1, 3), fontFamily: theme.typography.fontFamilyMonospace }),
});
