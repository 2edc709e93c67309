/** App settings, as saved by the configuration page. The token lives in secureJsonData:
 * Grafana injects it in the proxy route, the browser never reads it back. */
export interface AppSettings {
  url?: string;
  kibanaUrlTemplate?: string;
  exploreDatasourceUid?: string;
}

export interface AppSecureSettings {
  token?: string;
}
