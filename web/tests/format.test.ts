import { describe, expect, it } from "vitest";
import { formatAgo, formatBytes, formatCount, formatDuration, formatRate, formatTime } from "../lib/format";

describe("numbers carry their unit", () => {
  it("counts", () => {
    expect(formatCount(0, "en-US")).toBe("0");
    expect(formatCount(12_345, "en-US")).toBe("12,345");
    expect(formatCount(2_500_000, "en-US")).toBe("2.5M");
    expect(formatCount(Number.NaN, "en-US")).toBe("—");
  });
  it("rates", () => {
    expect(formatRate(0, "en-US")).toBe("0 changes/s");
    expect(formatRate(2.345, "en-US")).toBe("2.3 changes/s");
    expect(formatRate(134_604.2, "en-US")).toBe("134,604 changes/s");
  });
  it("bytes in binary units", () => {
    expect(formatBytes(512, "en-US")).toBe("512 B");
    expect(formatBytes(1536, "en-US")).toBe("1.5 KiB");
    expect(formatBytes(5 * 1024 ** 3, "en-US")).toBe("5 GiB");
    expect(formatBytes(300 * 1024 ** 2, "en-US")).toBe("300 MiB");
    expect(formatBytes(-2048, "en-US")).toBe("-2 KiB");
  });
});

describe("durations keep the two units that matter", () => {
  it.each([
    [0, "0 s"],
    [0.84, "0.8 s"],
    [42, "42 s"],
    [184, "3 min 4 s"],
    [7_500, "2 h 5 min"],
    [7_200, "2 h"],
    [3 * 86_400 + 4 * 3_600 + 59, "3 d 4 h"],
  ])("%s s → %s", (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });
  it("refuses nonsense", () => {
    expect(formatDuration(-1)).toBe("—");
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe("—");
  });
  it("says how long ago", () => {
    const now = new Date("2026-12-04T12:00:00Z");
    expect(formatAgo("2026-12-04T11:59:18Z", now)).toBe("42 s ago");
    expect(formatAgo(null, now)).toBe("never");
  });
});

describe("times are the viewer's", () => {
  it("in the time zone asked for, named", () => {
    const iso = "2026-12-04T21:30:00Z";
    const berlin = formatTime(iso, "Europe/Berlin", "en-GB");
    const tokyo = formatTime(iso, "Asia/Tokyo", "en-GB");
    expect(berlin).toContain("22:30:00");
    expect(tokyo).toContain("06:30:00");
    expect(tokyo).toContain("5 Dec 2026");
    expect(formatTime(null)).toBe("never");
    expect(formatTime("not a time")).toBe("—");
  });
});
