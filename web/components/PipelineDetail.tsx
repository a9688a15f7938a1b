"use client";
// One pipeline: its tables (copy progress with rows/s and ETA, streaming, stopped with the
// reason and what to do), throughput, lag and buffer depth over a chosen range, and the
// actions — pause, resume, stop, start, resync a table, verify — each saying what it does.

import ScrollTable from "@/components/ScrollTable";
import Link from "next/link";
import { useParams } from "next/navigation";
import { useCallback, useState } from "react";
import Chart from "@/components/Chart";
import Confirm from "@/components/Confirm";
import { useMe } from "@/components/Shell";
import {
  api,
  idPath,
  type Commit,
  type HistorySample,
  type Page,
  type Pipeline,
  type PipelineStatus,
  type TableStatus,
  type VerifyRun,
} from "@/lib/api";
import { attentionOf } from "@/lib/attention";
import { formatAgo, formatBytes, formatCount, formatDuration, formatRate, formatTime } from "@/lib/format";
import { usePoll } from "@/lib/poll";
import { copyProgress, tableAdvice } from "@/lib/progress";

const RANGES = [
  { hours: 1, label: "last hour" },
  { hours: 6, label: "last 6 hours" },
  { hours: 24, label: "last 24 hours" },
  { hours: 168, label: "last 7 days" },
];

function Card({ label, value }: { label: string; value: string }) {
  return (
    <div className="card">
      <div className="label">{label}</div>
      <div className="value">{value}</div>
    </div>
  );
}

function TableRow({ t, canOperate, onResync }: { t: TableStatus; canOperate: boolean; onResync: (name: string) => Promise<void> }) {
  const live = copyProgress(t.rows_copied, t.copy_started_at, t.source_rows_estimate);
  const advice = tableAdvice(t.state);
  return (
    <tr data-table={t.name}>
      <th scope="row">{t.name}</th>
      <td className={`state state-${t.state}`}>{t.state.replace("_", " ")}</td>
      <td className="wrap">
        {t.state === "copying" && (
          <>
            {live.fraction !== null && (
              <progress max={1} value={live.fraction} aria-label={`copy of ${t.name}`} />
            )}{" "}
            {formatCount(t.rows_copied)} rows
            {live.rowsPerSecond !== null && `, ${formatCount(live.rowsPerSecond)} rows/s`}
            {live.etaSeconds !== null && `, about ${formatDuration(live.etaSeconds)} left`}
          </>
        )}
        {t.stopped_reason && <span className="alert critical" style={{ display: "block" }}>{t.stopped_reason}</span>}
        {advice && <span className="muted">{advice}</span>}
      </td>
      <td className="num">{formatDuration(t.lag_seconds)}</td>
      <td className="num">{formatCount(t.buffered_changes)}</td>
      <td className="num">{formatCount(t.changes_in_lake)}</td>
      <td>{formatAgo(t.last_commit_at)}</td>
      <td>
        {canOperate && <Confirm
          label={`Resync ${t.name}`}
          title={`Copy ${t.name} again?`}
          confirm="Resync"
          onConfirm={() => onResync(t.name)}
        >
          <p>
            Ingest copies the table again from the source while the other tables stream on. The changelog records
            the copy; nothing already in the lake is lost. A large table takes a while.
          </p>
        </Confirm>}
      </td>
    </tr>
  );
}

function VerifyResult({ run }: { run: VerifyRun }) {
  return (
    <div data-verify-run={run.id} data-state={run.state}>
      <p>
        Verify #{run.id}, asked by {run.requested_by} {formatAgo(run.requested_at)}: <strong>{run.state}</strong>
        {run.outcome && <> — <strong data-outcome={run.outcome}>{run.outcome}</strong></>}
        {run.report && <span className="muted"> at LSN {run.report.lsn}</span>}
      </p>
      {run.error && <p className="alert critical">{run.error}</p>}
      {run.report && (
        <ScrollTable label="Verify report" columns={["Table", "Result", "#Source rows", "#Lake rows", "#Missing", "#Extra", "#Different", "Rows and columns"]}>
          {run.report.tables.map((t) => (
            <tr key={t.table}>
              <th scope="row">{t.table}</th>
              <td>{t.status.replace("_", " ")}</td>
              <td className="num">{formatCount(t.source_rows)}</td>
              <td className="num">{formatCount(t.lake_rows)}</td>
              <td className="num">{formatCount(t.missing)}</td>
              <td className="num">{formatCount(t.extra)}</td>
              <td className="num">{formatCount(t.different)}</td>
              <td className="wrap">
                {t.first_missing.length > 0 && <div>missing: {t.first_missing.join(", ")}</div>}
                {t.first_extra.length > 0 && <div>extra: {t.first_extra.join(", ")}</div>}
                {t.first_different.map((d) => (
                  <div key={d.key}>
                    different: {d.key} (columns {d.columns.join(", ")})
                  </div>
                ))}
                {t.reason && <div className="muted">{t.reason}</div>}
              </td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </div>
  );
}

export default function PipelineDetail() {
  const params = useParams<{ id: string }>();
  const id = idPath(params.id);
  const me = useMe();
  // A viewer sees no button it may not use (and the API refuses such a change anyway).
  const canOperate = me?.scope === "operate" || me?.scope === "admin";
  const [hours, setHours] = useState(1);
  const [actionError, setActionError] = useState<string>();
  const [notice, setNotice] = useState<string>();

  const load = useCallback(async () => {
    const [pipeline, status] = await Promise.all([
      api.get<Pipeline>(`/api/v1/pipelines/${id}`),
      api.get<PipelineStatus>(`/api/v1/pipelines/${id}/status`),
    ]);
    return { pipeline, status };
  }, [id]);
  // Every second while a table is being copied (its progress moves), else every 3 seconds.
  const [copying, setCopying] = useState(false);
  const { data, error, reload } = usePoll(load, copying ? 1000 : 3000);
  const nowCopying = !!data?.status.tables.some((t) => ["waiting", "copying", "needs_copy"].includes(t.state));
  if (data && nowCopying !== copying) setCopying(nowCopying);
  const history = usePoll(
    useCallback(() => api.get<HistorySample[]>(`/api/v1/pipelines/${id}/history?hours=${hours}`), [id, hours]),
    30_000,
  );
  const commits = usePoll(
    useCallback(() => api.get<Commit[]>(`/api/v1/pipelines/${id}/commits`), [id]),
    5000,
  );
  const runs = usePoll(
    useCallback(() => api.get<Page<VerifyRun>>(`/api/v1/pipelines/${id}/verify-runs`), [id]),
    3000,
  );

  const act = async (what: string, path: string, body?: unknown, done?: string) => {
    setActionError(undefined);
    setNotice(undefined);
    try {
      await api.post(path, body);
      if (done) setNotice(done);
      reload();
      runs.reload();
    } catch (e) {
      setActionError(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  if (error && !data) {
    return (
      <main>
        <p className="alert critical" role="alert">
          {error.message}
        </p>
        <Link href="/">Back to the pipelines</Link>
      </main>
    );
  }
  if (!data) {
    return (
      <main aria-busy="true">
        <p className="muted">Loading the pipeline…</p>
      </main>
    );
  }
  const { pipeline, status } = data;
  const attention = attentionOf(pipeline, status);
  const samples = history.data ?? [];
  const latestRun = runs.data?.items[0];

  return (
    <main>
      <p>
        <Link href="/">Pipelines</Link> / {pipeline.name}
      </p>
      <h1>
        {pipeline.name} <span className={`state state-${status.state}`}>{status.state}</span>
      </h1>
      <div className="actions" aria-label="Pipeline actions" role="group">
        {canOperate && status.state === "running" && (
          <Confirm label="Pause" title={`Pause ${pipeline.name}?`} confirm="Pause"
            onConfirm={() => act("Pause", `/api/v1/pipelines/${id}/pause`, undefined, "Paused: ingest stops reading the slot.")}>
            <p>Ingest stops reading the replication slot; the source keeps the WAL meanwhile. Workers finish what is buffered. Resume goes on where it stopped.</p>
          </Confirm>
        )}
        {canOperate && status.state === "paused" && (
          <button type="button"
            onClick={() => void act("Resume", `/api/v1/pipelines/${id}/resume`, undefined, "Resumed.")}>
            Resume
          </button>
        )}
        {canOperate && (status.state === "running" || status.state === "paused") && (
          <Confirm label="Stop" title={`Stop ${pipeline.name}?`} confirm="Stop" danger
            onConfirm={() => act("Stop", `/api/v1/pipelines/${id}/stop`, undefined, "Stopped.")}>
            <p>Ingest and workers let go of the pipeline. The slot stays, so the source keeps WAL until it starts again: watch the slot&apos;s retained WAL.</p>
          </Confirm>
        )}
        {canOperate && (status.state === "stopped" || status.state === "failed") && (
          <button type="button"
            onClick={() => void act("Start", `/api/v1/pipelines/${id}/start`, undefined, "Started.")}>
            Start
          </button>
        )}
        {canOperate && <Confirm label="Verify" title={`Verify ${pipeline.name}?`} confirm="Verify"
          onConfirm={() => act("Verify", `/api/v1/pipelines/${id}/verify`, { tables: [] }, "Verification asked for; the result shows below.")}>
          <p>Compares every table in the lake with the source at one position, by hashed key ranges. It reads the source; a large table takes a while.</p>
        </Confirm>}
        <Link className="button" href={`/pipelines/${id}/dead-letters`}>
          Dead letters
        </Link>
      </div>
      {!canOperate && <p className="muted">Your role can watch, not act.</p>}
      {actionError && <p className="alert critical" role="alert">{actionError}</p>}
      {notice && <p className="alert" role="status">{notice}</p>}
      {error && <p className="alert warning" role="alert">Refresh failed: {error.message}</p>}

      {attention.length > 0 && (
        <section aria-labelledby="attention-title">
          <h2 id="attention-title">Needs attention</h2>
          <ul className="attention">
            {attention.map((a, i) => (
              <li key={i} className={`alert ${a.severity}`}>{a.what}</li>
            ))}
          </ul>
        </section>
      )}

      <div className="cards">
        <Card label="Lag" value={formatDuration(status.lag_seconds)} />
        <Card label="Buffered changes" value={formatCount(status.buffer_depth)} />
        <Card label="Workers" value={formatCount(status.workers.length)} />
        <Card label="Last commit" value={formatAgo(status.last_commit_at)} />
        <Card label="Slot WAL retained" value={status.slot?.retained_bytes != null ? formatBytes(status.slot.retained_bytes) : "—"} />
        <Card label="Slot WAL status" value={status.slot?.wal_status ?? "—"} />
      </div>

      <h2>Tables</h2>
      {status.tables.length === 0 ? (
        <p className="muted">No table yet: ingest lists them once it runs the pipeline.</p>
      ) : (
        <ScrollTable label="Tables" columns={["Table", "State", "Progress", "#Lag", "#Buffered", "#Changes in the lake", "Last commit", "Action"]}>
          {status.tables.map((t) => (
            <TableRow key={t.name} t={t} canOperate={canOperate}
              onResync={(name) => act(`Resync ${name}`, `/api/v1/pipelines/${id}/resync`, { tables: [name] }, `${name} is copied again.`)} />
          ))}
        </ScrollTable>
      )}

      <h2>
        <label htmlFor="range" style={{ display: "inline", fontWeight: 600 }}>History over the</label>{" "}
        <select id="range" value={hours} onChange={(e) => setHours(Number(e.target.value))}>
          {RANGES.map((r) => (
            <option key={r.hours} value={r.hours}>{r.label}</option>
          ))}
        </select>
      </h2>
      {history.error && <p className="alert warning">{history.error.message}</p>}
      <div className="charts">
        <Chart title="Into the lake" points={samples.map((s) => ({ at: s.at, value: s.lake_changes_per_second }))} format={formatRate} />
        <Chart title="Lag" points={samples.map((s) => ({ at: s.at, value: s.lag_seconds }))} format={formatDuration} />
        <Chart title="Buffered changes" points={samples.map((s) => ({ at: s.at, value: s.buffer_depth }))} format={(v) => formatCount(v)} />
      </div>

      <h2>Recent commits</h2>
      {commits.error && <p className="alert warning">{commits.error.message}</p>}
      {commits.data && commits.data.length === 0 && <p className="muted">No commit yet.</p>}
      {commits.data && commits.data.length > 0 && (
        <ScrollTable label="Recent commits" columns={["When", "Table", "Kind", "#Changes or rows", "Up to LSN", "#Took"]}>
          {commits.data.slice(0, 15).map((c, i) => (
            <tr key={`${c.at}-${c.table}-${i}`} data-commit={c.table}>
              <td>{formatAgo(c.at)}</td>
              <th scope="row">{c.table}</th>
              <td>{c.kind === "copy" ? "copy" : "changes"}</td>
              <td className="num">{formatCount(c.rows)}</td>
              <td>{c.watermark}</td>
              <td className="num">{c.seconds !== null ? formatDuration(c.seconds) : "—"}</td>
            </tr>
          ))}
        </ScrollTable>
      )}

      <h2>Verification</h2>
      {latestRun ? <VerifyResult run={latestRun} /> : <p className="muted">Not verified yet.</p>}
      <p className="muted">Times are in your time zone ({Intl.DateTimeFormat().resolvedOptions().timeZone}); created {formatTime(pipeline.created_at)}.</p>
    </main>
  );
}
