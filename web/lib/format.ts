// How the dashboard writes numbers, sizes, durations and times: always with a unit, times in
// the viewer's own time zone. Pure functions, so the unit tests pin every rule.

/** A count with a thousands separator, or compact (1.2M) past a million. */
export function formatCount(n: number, locale?: string): string {
  if (!Number.isFinite(n)) return "—";
  if (Math.abs(n) >= 1_000_000) {
    return new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 }).format(n);
  }
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(n);
}

/** A rate of changes per second. */
export function formatRate(perSecond: number, locale?: string): string {
  if (!Number.isFinite(perSecond)) return "—";
  const digits = perSecond > 0 && perSecond < 10 ? 1 : 0;
  const n =
    Math.abs(perSecond) >= 1_000_000
      ? new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 }).format(perSecond)
      : new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(perSecond);
  return `${n} changes/s`;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** Bytes in binary units (what PostgreSQL's WAL settings use). */
export function formatBytes(bytes: number, locale?: string): string {
  if (!Number.isFinite(bytes)) return "—";
  let v = Math.abs(bytes);
  let unit = 0;
  while (v >= 1024 && unit < BYTE_UNITS.length - 1) {
    v /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || v >= 100 ? 0 : 1;
  const text = new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(v);
  return `${bytes < 0 ? "-" : ""}${text} ${BYTE_UNITS[unit]}`;
}

/** A duration in seconds, to the two largest units that matter: 0.8 s, 42 s, 3 min 4 s, 2 h 5 min, 3 d 4 h. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toString()} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const parts: [number, string][] = [
    [Math.floor(s / 86_400), "d"],
    [Math.floor((s % 86_400) / 3_600), "h"],
    [Math.floor((s % 3_600) / 60), "min"],
    [s % 60, "s"],
  ];
  const first = parts.findIndex(([v]) => v > 0);
  const shown = parts.slice(first, first + 2).filter(([v]) => v > 0);
  return shown.map(([v, u]) => `${v} ${u}`).join(" ");
}

/** A point in time in the viewer's time zone (or `timeZone`), with the zone named. */
export function formatTime(iso: string | null | undefined, timeZone?: string, locale?: string): string {
  if (!iso) return "never";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  return new Intl.DateTimeFormat(locale, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone,
    timeZoneName: "short",
  }).format(d);
}

/** How long ago `iso` was, from `now`: "12 s ago", "3 min 4 s ago". */
export function formatAgo(iso: string | null | undefined, now: Date = new Date()): string {
  if (!iso) return "never";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  const seconds = Math.max(0, (now.getTime() - d.getTime()) / 1000);
  return `${formatDuration(seconds)} ago`;
}
