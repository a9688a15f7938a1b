"use client";
// Every pipeline at a glance, and what needs a person at the top. Refreshes every 5 seconds.

import ScrollTable from "@/components/ScrollTable";
import Link from "next/link";
import { api, type DeadLetter, type HistorySample, type Page, type Pipeline, type PipelineStatus } from "@/lib/api";
import { attentionAll } from "@/lib/attention";
import { formatAgo, formatCount, formatDuration, formatRate } from "@/lib/format";
import { usePoll } from "@/lib/poll";
import { useMe } from "@/components/Shell";

interface Row {
  pipeline: Pipeline;
  status: PipelineStatus | null;
  statusError: string | null;
  /** Changes into the lake per second over the newest sample interval (a minute). */
  throughput: number | null;
  openDeadLetters: number;
}

async function openDeadLettersOf(id: number): Promise<number> {
  try {
    const page = await api.get<Page<DeadLetter>>(`/api/v1/pipelines/${id}/dead-letters`);
    return page.items.filter((l) => l.state === "open").length;
  } catch {
    return 0;
  }
}

async function throughputOf(id: number): Promise<number | null> {
  try {
    const samples = await api.get<HistorySample[]>(`/api/v1/pipelines/${id}/history?hours=1`);
    return samples.at(-1)?.lake_changes_per_second ?? null;
  } catch {
    return null;
  }
}

async function load(): Promise<Row[]> {
  const page = await api.get<Page<Pipeline>>("/api/v1/pipelines");
  return Promise.all(
    page.items.map(async (pipeline) => {
      const throughput = throughputOf(pipeline.id);
      const letters = openDeadLettersOf(pipeline.id);
      try {
        const status = await api.get<PipelineStatus>(`/api/v1/pipelines/${pipeline.id}/status`);
        return { pipeline, status, statusError: null, throughput: await throughput, openDeadLetters: await letters };
      } catch (e) {
        const statusError = e instanceof Error ? e.message : String(e);
        return { pipeline, status: null, statusError, throughput: await throughput, openDeadLetters: await letters };
      }
    }),
  );
}

export default function Overview() {
  const me = useMe();
  const { data, error, loading } = usePoll(load, 5000);
  const attention = data ? attentionAll(data) : [];

  return (
    <main>
      <h1>Pipelines</h1>
      {me?.scope === "admin" && (
        <p>
          <Link className="button" href="/pipelines/new">New pipeline</Link>
        </p>
      )}
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
                <Link href={`/pipelines/${a.pipelineId}`}><strong>{a.pipeline}</strong></Link>: {a.what}
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
        <ScrollTable label="Pipelines table" caption="Refreshed every 5 seconds" columns={["Pipeline", "State", "#Tables", "#Throughput", "#Lag", "#Buffered changes", "#Changes in the lake", "Last commit"]}>
          {data.map(({ pipeline, status, statusError, throughput }) => (
            <tr key={pipeline.id} data-pipeline={pipeline.name}>
              <th scope="row">
                <Link href={`/pipelines/${pipeline.id}`}>{pipeline.name}</Link>
              </th>
              <td className={`state state-${status?.state ?? pipeline.state}`}>{status?.state ?? pipeline.state}</td>
              <td className="num">{formatCount(status?.tables.length ?? pipeline.tables.length)}</td>
              <td className="num">{throughput !== null ? formatRate(throughput) : "—"}</td>
              <td className="num">{status ? formatDuration(status.lag_seconds) : "—"}</td>
              <td className="num">{status ? formatCount(status.buffer_depth) : "—"}</td>
              <td className="num">
                {status ? formatCount(status.tables.reduce((n, t) => n + t.changes_in_lake, 0)) : "—"}
              </td>
              <td>{status ? formatAgo(status.last_commit_at) : statusError ?? "—"}</td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </main>
  );
}
