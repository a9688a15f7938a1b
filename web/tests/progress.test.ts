import { describe, expect, it } from "vitest";
import { copyProgress, tableAdvice } from "../lib/progress";

describe("a copy's progress", () => {
  const now = new Date("2026-12-04T12:00:10Z");
  it("rows per second and the time left against the estimate", () => {
    expect(copyProgress(50_000, "2026-12-04T12:00:00Z", 200_000, now)).toEqual({
      fraction: 0.25,
      rowsPerSecond: 5_000,
      etaSeconds: 30,
    });
  });
  it("no estimate: no fraction and no ETA, a rate all the same", () => {
    expect(copyProgress(1_000, "2026-12-04T12:00:00Z", null, now)).toEqual({ fraction: null, rowsPerSecond: 100, etaSeconds: null });
  });
  it("past the estimate (it was stale): full, nothing left", () => {
    const p = copyProgress(300_000, "2026-12-04T12:00:00Z", 200_000, now);
    expect(p.fraction).toBe(1);
    expect(p.etaSeconds).toBe(0);
  });
  it("not started: nothing known", () => {
    expect(copyProgress(0, null, 10, now)).toEqual({ fraction: 0, rowsPerSecond: null, etaSeconds: null });
  });
  it("says what to do for the states that need it", () => {
    expect(tableAdvice("stopped")).toContain("resync");
    expect(tableAdvice("streaming")).toBeNull();
  });
});
