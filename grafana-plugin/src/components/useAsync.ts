import { useCallback, useEffect, useState } from 'react';

export interface AsyncState<T> {
  value?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

interface Settled<T> {
  load?: () => Promise<T>;
  generation: number;
  value?: T;
  error?: unknown;
}

/**
 * Runs `load` (memoize it with useCallback) whenever it changes and on `reload()`.
 * A result only counts for the call that is still current, and the last value stays
 * on screen while a reload runs.
 */
export function useAsync<T>(load: () => Promise<T>): AsyncState<T> {
  const [generation, setGeneration] = useState(0);
  const [settled, setSettled] = useState<Settled<T>>({ generation: -1 });
  useEffect(() => {
    let current = true;
    load().then(
      (value) => current && setSettled({ load, generation, value }),
      (error: unknown) => current && setSettled((s) => ({ load, generation, value: s.value, error }))
    );
    return () => {
      current = false;
    };
  }, [load, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  const loading = settled.load !== load || settled.generation !== generation;
  return { value: settled.value, error: loading ? undefined : settled.error, loading, reload };
}
