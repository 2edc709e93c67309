import { css } from '@emotion/css';
import type { GrafanaTheme2 } from '@grafana/data';

/** The bordered card an incident or an exception group is shown in. */
export const cardStyle = (theme: GrafanaTheme2) =>
  css({
    border: `1px solid ${theme.colors.border.weak}`,
    borderRadius: theme.shape.radius.default,
    padding: theme.spacing(2),
    margin: theme.spacing(2, 0),
    background: theme.colors.background.secondary,
  });
