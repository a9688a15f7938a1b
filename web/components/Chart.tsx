// A line chart of one series over time, in SVG: no chart library, readable by a screen reader
// (its summary is the figure's caption), in the theme's colours.

import { formatTime } from "@/lib/format";

export default function Chart({
  title,
  points,
  format,
}: {
  title: string;
  points: { at: string; value: number | null }[];
  format: (v: number) => string;
}) {
  const values = points.map((p) => p.value).filter((v): v is number => v !== null && Number.isFinite(v));
  const width = 480;
  const height = 120;
  const pad = 4;
  if (values.length < 2) {
    return (
      <figure className="chart">
        <figcaption>
          <strong>{title}</strong>: <span className="muted">not enough samples yet (one a minute)</span>
        </figcaption>
      </figure>
    );
  }
  const max = Math.max(...values, 0);
  const min = Math.min(...values, 0);
  const span = max - min || 1;
  const times = points.map((p) => new Date(p.at).getTime());
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const x = (t: number) => pad + ((t - t0) / (t1 - t0 || 1)) * (width - 2 * pad);
  const y = (v: number) => height - pad - ((v - min) / span) * (height - 2 * pad);
  const d = points
    .map((p, i) => (p.value === null ? null : `${x(times[i] ?? t0).toFixed(1)},${y(p.value).toFixed(1)}`))
    .filter((s): s is string => s !== null)
    .join(" ");
  const last = values[values.length - 1] ?? 0;
  const first = points[0];
  const lastPoint = points[points.length - 1];
  return (
    <figure className="chart">
      <figcaption>
        <strong>{title}</strong>: now {format(last)}, highest {format(max)}
        <span className="muted">
          {" "}
          ({formatTime(first?.at)} – {formatTime(lastPoint?.at)})
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title}: now ${format(last)}, highest ${format(max)}`}>
        <polyline points={d} fill="none" stroke="var(--accent)" strokeWidth="2" />
      </svg>
    </figure>
  );
}
