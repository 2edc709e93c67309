// A page that mounts the app's pages with Grafana's theme outside Grafana, for the
// browser test and the README screenshots. Calls go to the same proxy-route paths
// Grafana would serve; the test's server forwards them to a live sidecar.
import { createTheme } from '@grafana/data';
import { setBackendSrv } from '@grafana/runtime';
import { GlobalStyles, ThemeContext } from '@grafana/ui';
import { createRoot } from 'react-dom/client';
import { BrowserRouter, Route, Routes } from 'react-router-dom';

import { AppPages } from '../src/components/App';
import { APP_PROXY_BASE, PLUGIN_ID } from '../src/constants';
import { fetchBackendSrv } from './backendSrv';

setBackendSrv(fetchBackendSrv());
const theme = createTheme({ colors: { mode: 'dark' } });
const settings = {
  url: 'http://sidecar:9880',
  kibanaUrlTemplate: "https://kibana.example/app/discover#/?_a=(query:(language:kuery,query:'service.name:{service}'))&_g=(time:(from:'{start}',to:'{end}'))",
  exploreDatasourceUid: 'logs',
};

createRoot(document.getElementById('root')!).render(
  <ThemeContext.Provider value={theme}>
    <GlobalStyles />
    <div style={{ padding: 24 }}>
      <h1>LogGuardian</h1>
      <BrowserRouter future={{ v7_startTransition: true, v7_relativeSplatPath: true }}>
        <Routes>
          <Route path={`/a/${PLUGIN_ID}/*`} element={<AppPages base={APP_PROXY_BASE} settings={settings} />} />
        </Routes>
      </BrowserRouter>
    </div>
  </ThemeContext.Provider>
);
