import pluginJson from './plugin.json';

export const PLUGIN_ID = pluginJson.id;
/** Every call goes through the app's proxy route, so the browser never sees the token. */
export const APP_PROXY_BASE = `/api/plugin-proxy/${PLUGIN_ID}/sidecar`;

export enum ROUTES {
  Incidents = 'incidents',
  Templates = 'templates',
  Exceptions = 'exceptions',
  Status = 'status',
}

export const prefixRoute = (route: string): string => `/a/${PLUGIN_ID}/${route}`;
