import { css } from '@emotion/css';
import type { GrafanaTheme2 } from '@grafana/data';
import { Badge, type BadgeColor, Button, LoadingPlaceholder, Stack, Switch, TextLink, useStyles2 } from '@grafana/ui';
import { useCallback, useState } from 'react';

import { fillLinkTemplate, formatDuration, formatTime } from '../api/format';
import type { Explanation, Incident, Severity } from '../api/types';
import { ErrorView } from '../components/ErrorView';
import { cardStyle } from '../components/styles';
import { useSidecar } from '../components/SidecarContext';
import { useAsync } from '../components/useAsync';
import type { AppSettings } from '../types';

const SEVERITY_COLOR: Record<Severity, BadgeColor> = {
  low: 'blue',
  medium: 'orange',
  high: 'red',
  critical: 'purple',
};

export function exploreUrl(settings: AppSettings, incident: Incident): string | undefined {
  if (!settings.exploreDatasourceUid) {
    return undefined;
  }
  const end = (incident.resolved_at ?? incident.last_seen) + 60;
  const left = {
    datasource: settings.exploreDatasourceUid,
    queries: [{ refId: 'A', datasource: { uid: settings.exploreDatasourceUid }, query: `service.name:"${incident.service}"` }],
    range: { from: String(Math.floor((incident.started_at - 300) * 1000)), to: String(Math.ceil(end * 1000)) },
  };
  return `/explore?schemaVersion=1&orgId=1&panes=${encodeURIComponent(JSON.stringify({ lg: left }))}`;
}

function ExplanationView({ explanation }: { explanation: Explanation }) {
  const styles = useStyles2(getStyles);
  return (
    <div className={styles.explanation} data-testid="incident-explanation">
      <Stack gap={1} alignItems="center">
        <strong>{explanation.summary}</strong>
        <Badge color={explanation.source === 'llm' ? 'purple' : 'blue'} text={explanation.source === 'llm' ? `LLM${explanation.model ? ` · ${explanation.model}` : ''}` : 'rules'} />
      </Stack>
      {explanation.likely_cause && <p>Likely cause: {explanation.likely_cause}</p>}
      {explanation.evidence && explanation.evidence.length > 0 && (
        <ul>
          {explanation.evidence.map((e, i) => (
            <li key={i}>
              <code>{e.ref}</code>: {e.fact}
            </li>
          ))}
        </ul>
      )}
      {explanation.next_steps && explanation.next_steps.length > 0 && (
        <p>Next steps: {explanation.next_steps.join('; ')}</p>
      )}
    </div>
  );
}

export function IncidentCard({ incident, settings }: { incident: Incident; settings: AppSettings }) {
  const styles = useStyles2(getStyles);
  const end = incident.resolved_at ?? incident.last_seen;
  const kibana = settings.kibanaUrlTemplate
    ? fillLinkTemplate(settings.kibanaUrlTemplate, incident.service, incident.started_at - 300, end + 60)
    : undefined;
  const explore = exploreUrl(settings, incident);
  return (
    <div className={styles.card} data-testid="incident">
      <Stack gap={1} alignItems="center" wrap="wrap">
        <Badge color={SEVERITY_COLOR[incident.severity] ?? 'blue'} text={incident.severity} />
        <strong className={styles.service}>{incident.service}</strong>
        <span>{incident.alertname}</span>
        <Badge color={incident.open ? 'red' : 'green'} text={incident.open ? 'open' : 'resolved'} icon={incident.open ? 'fire' : 'check'} />
        <span className={styles.muted}>
          since {formatTime(incident.started_at)} · {formatDuration(end - incident.started_at)} · {incident.anomalies} anomalies
        </span>
      </Stack>
      <ul className={styles.reasons} data-testid="incident-reasons">
        {incident.reasons.map((r, i) => (
          <li key={i}>{r}</li>
        ))}
      </ul>
      {incident.explanation && <ExplanationView explanation={incident.explanation} />}
      {incident.examples.length > 0 && (
        <pre className={styles.examples}>{incident.examples.slice(0, 5).join('\n')}</pre>
      )}
      <Stack gap={2}>
        {kibana && (
          <TextLink href={kibana} external>
            Open in Kibana
          </TextLink>
        )}
        {explore && (
          <TextLink href={explore} external={false}>
            Open in Explore
          </TextLink>
        )}
      </Stack>
    </div>
  );
}

export function IncidentsPage() {
  const { client, settings } = useSidecar();
  const [openOnly, setOpenOnly] = useState(false);
  const state = useAsync(useCallback(() => client.incidents(openOnly), [client, openOnly]));
  return (
    <div>
      <Stack gap={2} alignItems="center">
        <Stack gap={1} alignItems="center">
          <Switch id="open-only" value={openOnly} onChange={() => setOpenOnly(!openOnly)} />
          <label htmlFor="open-only">Open only</label>
        </Stack>
        <Button size="sm" variant="secondary" icon="sync" onClick={state.reload}>
          Refresh
        </Button>
      </Stack>
      {state.error ? (
        <ErrorView title="Could not load incidents" error={state.error} onRetry={state.reload} />
      ) : state.loading && !state.value ? (
        <LoadingPlaceholder text="Loading incidents…" />
      ) : state.value && state.value.length === 0 ? (
        <p data-testid="incidents-empty">No incidents{openOnly ? ' open' : ''}: nothing unusual was found.</p>
      ) : (
        state.value?.map((incident) => <IncidentCard key={incident.id} incident={incident} settings={settings} />)
      )}
    </div>
  );
}

const getStyles = (theme: GrafanaTheme2) => ({
  card: cardStyle(theme),
  service: css({ fontSize: theme.typography.h5.fontSize }),
  muted: css({ color: theme.colors.text.secondary }),
  reasons: css({ margin: theme.spacing(1, 0, 1, 3) }),
  explanation: css({
    borderLeft: `3px solid ${theme.colors.primary.main}`,
    paddingLeft: theme.spacing(1.5),
    margin: theme.spacing(1, 0),
  }),
  examples: css({ maxHeight: 160, overflow: 'auto', fontSize: theme.typography.bodySmall.fontSize }),
});
