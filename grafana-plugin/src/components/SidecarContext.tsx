import React, { createContext, useContext, useMemo } from 'react';

import { SidecarClient } from '../api/client';
import type { AppSettings } from '../types';

interface SidecarContextValue {
  client: SidecarClient;
  settings: AppSettings;
}

const Context = createContext<SidecarContextValue | null>(null);

export function SidecarProvider({ base, settings, children }: { base: string; settings: AppSettings; children: React.ReactNode }) {
  const value = useMemo(() => ({ client: new SidecarClient(base), settings }), [base, settings]);
  return <Context.Provider value={value}>{children}</Context.Provider>;
}

export function useSidecar(): SidecarContextValue {
  const value = useContext(Context);
  if (!value) {
    throw new Error('useSidecar outside SidecarProvider');
  }
  return value;
}
