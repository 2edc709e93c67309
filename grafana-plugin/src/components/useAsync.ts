import { useCallback, useEffect, useRef, useState } from 'react';

export interface AsyncState<T> {
  value?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` on mount and on `reload()`; the newest call wins. */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]): AsyncState<T> {
  const [state, setState] = useState<{ value?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  const latest = useRef(0);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const stableLoad = useCallback(load, deps);
  useEffect(() => {
    const call = ++latest.current;
    setState((s) => ({ ...s, loading: true }));
    stableLoad().then(
      (value) => call === latest.current && setState({ value, loading: false }),
      (error: unknown) => call === latest.current && setState({ error, loading: false })
    );
  }, [stableLoad, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { ...state, reload };
}
