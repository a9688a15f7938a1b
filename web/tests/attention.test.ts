import { describe, expect, it } from "vitest";
import type { Pipeline, PipelineStatus } from "../lib/api";
import { attentionAll, attentionOf } from "../lib/attention";
import { safeNext } from "../lib/next-path";

const pipeline: Pipeline = {
  id: 7, name: "shop", source_id: 1, slot: "philotes_shop", tables: ["public.orders"], state: "running",
  created_at: "2026-12-04T10:00:00Z", updated_at: "2026-12-04T10:00:00Z",
};

function status(over: Partial<PipelineStatus> = {}): PipelineStatus {
  return {
    state: "running", buffer_depth: 0, lag_seconds: 1.2, last_commit_at: null, workers: ["w1"],
    slot: { active: true, retained_bytes: 1024, wal_status: "reserved", safe_wal_bytes: 10 * 1024 ** 3 },
    source_error: null, tables: [], ...over,
  };
}

describe("what needs a person", () => {
  it("nothing for a healthy pipeline", () => {
    expect(attentionOf(pipeline, status())).toEqual([]);
  });
  it("a stopped table, with its reason", () => {
    const s = status({
      tables: [{ name: "public.orders", state: "stopped", stopped_reason: "cannot convert a value", buffered_changes: 3,
        lag_seconds: 0, rows_copied: 0, copy_started_at: null, source_rows_estimate: null, changes_in_lake: 0, last_commit_at: null }],
    });
    expect(attentionOf(pipeline, s)).toEqual([
      { pipeline: "shop", pipelineId: 7, severity: "critical", what: "table public.orders stopped: cannot convert a value" },
    ]);
  });
  it("open dead letters, counted", () => {
    expect(attentionOf(pipeline, status(), 2)).toEqual([
      { pipeline: "shop", pipelineId: 7, severity: "critical", what: "2 open dead letters: skip or retry them on the dead letters page" },
    ]);
    expect(attentionOf(pipeline, status(), 1)[0]?.what).toBe("1 open dead letter: skip or retry it on the dead letters page");
  });
  it("a slot near its WAL limit, or past it", () => {
    const near = status({ slot: { active: false, retained_bytes: 9 * 1024 ** 3, wal_status: "extended", safe_wal_bytes: 1024 ** 3 } });
    expect(attentionOf(pipeline, near)[0]?.what).toBe("the slot holds 9 GiB of WAL, 1 GiB before its limit");
    const lost = status({ slot: { active: false, retained_bytes: null, wal_status: "lost", safe_wal_bytes: null } });
    expect(attentionOf(pipeline, lost)[0]?.severity).toBe("critical");
  });
  it("no worker while changes wait, and lag", () => {
    const s = status({ workers: [], buffer_depth: 10, lag_seconds: 600 });
    expect(attentionOf(pipeline, s).map((a) => a.what)).toEqual([
      "no worker is running: changes wait in the buffer",
      "the lake is 10 min behind the source",
    ]);
  });
  it("critical first across pipelines", () => {
    const all = attentionAll([
      { pipeline, status: status({ workers: [], buffer_depth: 1 }) },
      { pipeline: { ...pipeline, id: 8, name: "crm" }, status: status({ source_error: "connection refused" }) },
      { pipeline: { ...pipeline, id: 9, name: "unknown" }, status: null },
    ]);
    expect(all.map((a) => [a.pipeline, a.severity])).toEqual([["crm", "critical"], ["shop", "warning"]]);
  });
});

describe("after signing in", () => {
  it("goes only to a page of the dashboard", () => {
    expect(safeNext("/pipelines/7")).toBe("/pipelines/7");
    expect(safeNext(null)).toBe("/");
    expect(safeNext("https://evil.example/")).toBe("/");
    expect(safeNext("//evil.example/")).toBe("/");
    expect(safeNext("/\\evil.example")).toBe("/");
    expect(safeNext("/login?next=/")).toBe("/");
  });
});
