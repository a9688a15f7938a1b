"use client";
// Data that refreshes by itself: load now, then every `everyMs`, without a page reload. A
// failed refresh keeps the last good data and shows the error beside it. A new `load` (pass
// a stable one: useCallback, or a module function) starts over at once, as when a chart's
// range changes.

import { useCallback, useEffect, useState } from "react";

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
}

export function usePoll<T>(load: () => Promise<T>, everyMs = 5000): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error>();
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const d = await load();
        if (!live) return;
        setData(d);
        setError(undefined);
      } catch (e) {
        if (!live) return;
        setError(e instanceof Error ? e : new Error(String(e)));
      } finally {
        if (live) {
          setLoading(false);
          timer = setTimeout(run, everyMs);
        }
      }
    };
    void run();
    return () => {
      live = false;
      if (timer) clearTimeout(timer);
    };
  }, [load, everyMs, tick]);

  return { data, error, loading, reload };
}
