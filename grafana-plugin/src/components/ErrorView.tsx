import { Alert, Button } from '@grafana/ui';

import { describeError } from '../api/client';

/** The sidecar's error in words, with a retry: never a blank page. */
export function ErrorView({ title, error, onRetry }: { title: string; error: unknown; onRetry?: () => void }) {
  return (
    <Alert severity="error" title={title}>
      <p data-testid="sidecar-error">{describeError(error)}</p>
      {onRetry && (
        <Button size="sm" variant="secondary" icon="sync" onClick={onRetry}>
          Retry
        </Button>
      )}
    </Alert>
  );
}
