"use client";
// Every pipeline at a glance, and what needs a person at the top. Refreshes every 5 seconds.

import { api, type Page, type Pipeline, type PipelineStatus } from "@/lib/api";
import { attentionAll } from "@/lib/attention";
import { formatAgo, formatCount, formatDuration } from "@/lib/format";
import { usePoll } from "@/lib/poll";

interface Row {
  pipeline: Pipeline;
  status: PipelineStatus | null;
  statusError: string | null;
}

async function load(): Promise<Row[]> {
  const page = await api.get<Page<Pipeline>>("/api/v1/pipelines");
  return Promise.all(
    page.items.map(async (pipeline) => {
      try {
        const status = await api.get<PipelineStatus>(`/api/v1/pipelines/${pipeline.id}/status`);
        return { pipeline, status, statusError: null };
      } catch (e) {
        return { pipeline, status: null, statusError: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
}

export default function Overview() {
  const { data, error, loading } = usePoll(load, 5000);
  const attention = data ? attentionAll(data) : [];

  return (
    <main>
      <h1>Pipelines</h1>
      {error && (
        <p className="alert critical" role="alert">
          {error.message}
        </p>
      )}
      {attention.length > 0 && (
        <section aria-labelledby="attention-title">
          <h2 id="attention-title">Needs attention</h2>
          <ul className="attention">
            {attention.map((a, i) => (
              <li key={`${a.pipelineId}-${i}`} className={`alert ${a.severity}`}>
                <strong>{a.pipeline}</strong>: {a.what}
              </li>
            ))}
          </ul>
        </section>
      )}
      {loading && !data && <p className="muted" aria-busy="true">Loading pipelines…</p>}
      {data && data.length === 0 && (
        <p className="muted">No pipeline yet. Create one with the API or <code>philotes pipeline create</code>.</p>
      )}
      {data && data.length > 0 && (
        // Focusable, so a keyboard can scroll the table on a narrow screen.
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Pipelines table">
          <table>
            <caption className="muted" style={{ textAlign: "left" }}>
              Refreshed every 5 seconds
            </caption>
            <thead>
              <tr>
                <th scope="col">Pipeline</th>
                <th scope="col">State</th>
                <th scope="col" className="num">Tables</th>
                <th scope="col" className="num">Lag</th>
                <th scope="col" className="num">Buffered changes</th>
                <th scope="col" className="num">Changes in the lake</th>
                <th scope="col">Last commit</th>
              </tr>
            </thead>
            <tbody>
              {data.map(({ pipeline, status, statusError }) => (
                <tr key={pipeline.id} data-pipeline={pipeline.name}>
                  <th scope="row">{pipeline.name}</th>
                  <td className={`state state-${status?.state ?? pipeline.state}`}>{status?.state ?? pipeline.state}</td>
                  <td className="num">{formatCount(status?.tables.length ?? pipeline.tables.length)}</td>
                  <td className="num">{status ? formatDuration(status.lag_seconds) : "—"}</td>
                  <td className="num">{status ? formatCount(status.buffer_depth) : "—"}</td>
                  <td className="num">
                    {status ? formatCount(status.tables.reduce((n, t) => n + t.changes_in_lake, 0)) : "—"}
                  </td>
                  <td>{status ? formatAgo(status.last_commit_at) : statusError ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}
