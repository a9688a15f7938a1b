// What needs a person, from a pipeline's status: the overview lists these first, worst first.
// A rule here is a sentence an operator can act on, with the page that mends it.

import type { Pipeline, PipelineStatus } from "./api";
import { formatBytes, formatDuration } from "./format";

export type Severity = "critical" | "warning";

export interface Attention {
  pipeline: string;
  pipelineId: number;
  severity: Severity;
  what: string;
}

/** Lag above this is worth a look (the default alert fires at 5 minutes). */
export const LAG_WARNING_SECONDS = 300;
/** The share of the slot's WAL allowance at which the slot is near its limit. */
export const SLOT_NEAR_LIMIT = 0.8;

export function attentionOf(p: Pipeline, s: PipelineStatus, openDeadLetters = 0): Attention[] {
  const out: Attention[] = [];
  const add = (severity: Severity, what: string) =>
    out.push({ pipeline: p.name, pipelineId: p.id, severity, what });
  if (s.source_error) add("critical", `cannot reach the source: ${s.source_error}`);
  if (s.state === "failed") add("critical", "the pipeline failed; open it for the error");
  for (const t of s.tables) {
    if (t.stopped_reason) add("critical", `table ${t.name} stopped: ${t.stopped_reason}`);
  }
  if (openDeadLetters > 0) {
    add("critical", `${openDeadLetters} open dead letter${openDeadLetters === 1 ? "" : "s"}: skip or retry ${openDeadLetters === 1 ? "it" : "them"} on the dead letters page`);
  }
  const slot = s.slot;
  if (slot) {
    if (slot.wal_status === "lost") {
      add("critical", "the replication slot lost WAL it needed: resync the pipeline's tables");
    } else if (slot.wal_status === "unreserved") {
      add("critical", "the replication slot is about to lose WAL (wal_status unreserved): bring ingest up now");
    } else if (
      slot.retained_bytes != null &&
      slot.safe_wal_bytes != null &&
      slot.retained_bytes + slot.safe_wal_bytes > 0 &&
      slot.retained_bytes / (slot.retained_bytes + slot.safe_wal_bytes) >= SLOT_NEAR_LIMIT
    ) {
      add(
        "warning",
        `the slot holds ${formatBytes(slot.retained_bytes)} of WAL, ${formatBytes(slot.safe_wal_bytes)} before its limit`,
      );
    }
  }
  if (s.state === "running" && s.workers.length === 0 && s.buffer_depth > 0) {
    add("warning", "no worker is running: changes wait in the buffer");
  }
  if (s.state === "running" && s.lag_seconds >= LAG_WARNING_SECONDS) {
    add("warning", `the lake is ${formatDuration(s.lag_seconds)} behind the source`);
  }
  return out;
}

/** Everything that needs a person across pipelines, critical first. */
export function attentionAll(
  items: { pipeline: Pipeline; status: PipelineStatus | null; openDeadLetters?: number }[],
): Attention[] {
  const all = items.flatMap(({ pipeline, status, openDeadLetters }) =>
    status ? attentionOf(pipeline, status, openDeadLetters ?? 0) : [],
  );
  return all.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "critical" ? -1 : 1));
}
