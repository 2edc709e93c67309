import type { AppRootProps } from '@grafana/data';
import { PluginPage } from '@grafana/runtime';
import { Alert, Tab, TabsBar } from '@grafana/ui';
import React from 'react';
import { Navigate, Route, Routes, useLocation, useNavigate } from 'react-router-dom';

import { APP_PROXY_BASE, prefixRoute, ROUTES } from '../constants';
import { ExceptionsPage } from '../pages/ExceptionsPage';
import { IncidentsPage } from '../pages/IncidentsPage';
import { StatusPage } from '../pages/StatusPage';
import { TemplatesPage } from '../pages/TemplatesPage';
import type { AppSettings } from '../types';
import { SidecarProvider } from './SidecarContext';

const PAGES: Array<{ route: ROUTES; label: string; Page: () => React.JSX.Element }> = [
  { route: ROUTES.Incidents, label: 'Incidents', Page: IncidentsPage },
  { route: ROUTES.Templates, label: 'Templates', Page: TemplatesPage },
  { route: ROUTES.Exceptions, label: 'Exceptions', Page: ExceptionsPage },
  { route: ROUTES.Status, label: 'Status', Page: StatusPage },
];

/** The four pages under one tab bar; routes are relative to the app's root. */
export function AppPages({ base, settings }: { base: string; settings: AppSettings }) {
  const location = useLocation();
  const navigate = useNavigate();
  const current = PAGES.find((p) => location.pathname.endsWith(`/${p.route}`))?.route ?? ROUTES.Incidents;
  return (
    <SidecarProvider base={base} settings={settings}>
      <TabsBar>
        {PAGES.map((p) => (
          <Tab key={p.route} label={p.label} active={p.route === current} onChangeTab={() => navigate(prefixRoute(p.route))} />
        ))}
      </TabsBar>
      <Routes>
        {PAGES.map(({ route, Page }) => (
          <Route key={route} path={route} element={<Page />} />
        ))}
        <Route path="*" element={<Navigate replace to={prefixRoute(ROUTES.Incidents)} />} />
      </Routes>
    </SidecarProvider>
  );
}

export function App(props: AppRootProps<AppSettings>) {
  const settings = props.meta.jsonData ?? {};
  return (
    <PluginPage>
      {!settings.url && (
        <Alert severity="warning" title="LogGuardian is not configured">
          Set the sidecar URL on the app&apos;s configuration page.
        </Alert>
      )}
      <AppPages base={APP_PROXY_BASE} settings={settings} />
    </PluginPage>
  );
}
