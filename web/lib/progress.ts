// A copy's progress: rows per second since it began and the time left against the source's
// estimate of the table's rows.

export interface CopyProgress {
  /** 0..1, or null without an estimate. */
  fraction: number | null;
  rowsPerSecond: number | null;
  /** Seconds left, or null when unknown. */
  etaSeconds: number | null;
}

export function copyProgress(
  rowsCopied: number,
  startedAt: string | null,
  estimate: number | null,
  now: Date = new Date(),
): CopyProgress {
  const started = startedAt ? new Date(startedAt).getTime() : Number.NaN;
  const elapsed = (now.getTime() - started) / 1000;
  const rowsPerSecond = Number.isFinite(elapsed) && elapsed > 0 ? rowsCopied / elapsed : null;
  const fraction = estimate && estimate > 0 ? Math.min(1, rowsCopied / estimate) : null;
  const etaSeconds =
    estimate && estimate > 0 && rowsPerSecond && rowsPerSecond > 0
      ? Math.max(0, (estimate - rowsCopied) / rowsPerSecond)
      : null;
  return { fraction, rowsPerSecond, etaSeconds };
}

/** What to do about a table in a state, in one sentence (the status has the why). */
export function tableAdvice(state: string): string | null {
  switch (state) {
    case "stopped":
      return "Open its dead letters: skip the change, or fix the value on the source and resync the table (retry once the mapping is fixed).";
    case "needs_copy":
      return "Ingest copies it again within seconds; if it stays here, check that ingest runs.";
    case "waiting":
      return "Ingest copies it once it runs; if it stays here, check that ingest runs.";
    default:
      return null;
  }
}
