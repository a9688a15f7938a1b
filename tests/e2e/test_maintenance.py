"""End-to-end: table maintenance (compaction, manifest rewrite, snapshot expiry, orphan cleanup)
while `philotes run` streams, and `philotes maintain`, read back with pyiceberg."""
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from compare import assert_same
from conftest import BINARY, run_philotes

QUICK = ["--maintenance-interval", "2s", "--snapshot-max-age", "1s", "--snapshot-keep-min", "5",
         "--orphan-min-age", "30s"]


def metadata_location(data_dir, ident):
    ns, name = ident.rsplit(".", 1)
    with sqlite3.connect(data_dir / "catalog.db") as c:
        (loc,) = c.execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_namespace = ? AND table_name = ?",
            (ns, name),
        ).fetchone()
    return loc


def table_dir(data_dir, ident):
    ns, name = ident.rsplit(".", 1)
    return data_dir / "warehouse" / ns / name


def sample(data_dir, ident):
    """What a table holds now: commits so far, snapshots, files, metadata size."""
    loc = metadata_location(data_dir, ident)
    path = Path(loc.removeprefix("file://"))
    md = json.loads(path.read_text())
    d = table_dir(data_dir, ident)
    return {
        "t": time.monotonic(),
        "version": int(re.match(r"(\d+)-", path.name).group(1)),
        "snapshots": len(md.get("snapshots", [])),
        "metadata_bytes": path.stat().st_size,
        "data_files": len(list((d / "data").glob("*.parquet"))),
        "metadata_files": len(list((d / "metadata").iterdir())),
        "log": md.get("snapshot-log", []),
    }


def referenced(tbl, alive_only=True):
    """Every file the snapshots of the pyiceberg table `tbl` need — manifest lists, manifests,
    data files alive in a snapshot — plus its metadata files. With `alive_only=False`, also the
    files a manifest names as deleted (they may be gone: no snapshot reads them)."""
    refs = {tbl.metadata_location}
    refs |= {m.metadata_file for m in tbl.metadata.metadata_log}
    for s in tbl.metadata.snapshots:
        refs.add(s.manifest_list)
        for m in s.manifests(tbl.io):
            refs.add(m.manifest_path)
            for e in m.fetch_manifest_entry(tbl.io, discard_deleted=alive_only):
                refs.add(e.data_file.file_path)
    return {r.removeprefix("file://") for r in refs}


def assert_nothing_missing(tbl):
    missing = {f for f in referenced(tbl) if not os.path.exists(f)}
    assert not missing, f"files a snapshot needs are gone: {sorted(missing)[:5]}"


def on_disk(data_dir, ident):
    return {str(p) for p in table_dir(data_dir, ident).rglob("*") if p.is_file()}


def assert_only_referenced(data_dir, ident, tbl):
    """On disk: every file the table needs, and nothing it does not name."""
    assert_nothing_missing(tbl)
    disk, named = on_disk(data_dir, ident), referenced(tbl, alive_only=False)
    assert disk <= named, f"unreferenced files on disk: {sorted(disk - named)[:5]}"


def trickle(url, stop, counter, pause=0.004):
    try:
        rnd = random.Random(5)
        with psycopg.connect(url, autocommit=True) as c:
            while not stop.is_set():
                k = rnd.randint(1, 400)
                if rnd.random() < 0.7:
                    c.execute("INSERT INTO trickle VALUES (%s, %s, repeat('x', 200)) ON CONFLICT (id) DO UPDATE SET v = trickle.v + 1", (k, 1))
                else:
                    c.execute("DELETE FROM trickle WHERE id = %s", (k,))
                counter[0] += 1
                time.sleep(pause)
    except Exception as e:  # reported by the test
        counter.append(e)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0


def intervals(log):
    ts = [e["timestamp-ms"] for e in log]
    return [b - a for a, b in zip(ts, ts[1:])]


def stream_commits(source, ident, commits, extra):
    """Stream a trickle of changes with `philotes run` until the table has `commits` more
    commits; returns the samples taken every second."""
    stop = threading.Event()
    counter = [0]
    w = threading.Thread(target=trickle, args=(source.url, stop, counter))
    p = source.start("--flush-interval", "20ms", *extra)
    samples = []
    try:
        deadline = time.monotonic() + 600
        while not (source.data_dir / "catalog.db").exists() or not _has(source, ident):
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.2)
        w.start()
        start = sample(source.data_dir, ident)["version"]
        while True:
            s = sample(source.data_dir, ident)
            samples.append(s)
            if s["version"] - start >= commits:
                break
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline, "too slow"
            time.sleep(1)
    finally:
        stop.set()
        if w.is_alive():
            w.join()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    assert len(counter) == 1, f"the writer failed: {counter[1:]}"
    assert p.returncode == 0, err[-4000:]
    # What the writer wrote just before it stopped may not have reached `run` yet.
    source.run(*extra)
    return samples, err


def _has(source, ident):
    try:
        metadata_location(source.data_dir, ident)
        return True
    except (TypeError, sqlite3.Error):
        return False


def test_maintenance_keeps_a_busy_table_bounded(source):
    """2,000+ commits at a 20 ms flush with maintenance every 2 s: files, snapshots and the
    metadata file stay bounded; the lake equals the source; time travel and verify answer."""
    source.sql("CREATE TABLE trickle (id bigint PRIMARY KEY, v bigint, pad text)")
    source.sql("INSERT INTO trickle SELECT g, 0, 'seed' FROM generate_series(1, 100) g")
    ident = "public.trickle__changelog"
    samples, err = stream_commits(source, ident, 2000, QUICK)
    assert "maintenance pass" in err, err[-3000:]
    last_half = samples[len(samples) // 2:]
    worst = {k: max(s[k] for s in last_half) for k in ("snapshots", "data_files", "metadata_bytes", "metadata_files")}
    print(f"\nwith maintenance, {samples[-1]['version'] - samples[0]['version']} commits; worst in the second half: {worst}")
    # Bounded: a pass every 2 s at ~30 commits/s leaves a few hundred snapshots and files
    # at most, whatever the number of commits; without maintenance each grows by one a commit.
    assert worst["snapshots"] < 400, worst
    assert worst["data_files"] < 500, worst
    assert worst["metadata_bytes"] < 1 << 20, worst
    assert worst["metadata_files"] < 1200, worst
    gaps = intervals(samples[-1]["log"])
    print(f"median ms between commits, last snapshots kept: {median(gaps)}")

    lake = source.lake()
    tbl = lake.table(ident)
    ops = {s.summary.operation.value for s in tbl.metadata.snapshots}
    assert "replace" in ops, ops
    assert tbl.metadata.snapshots[-1].summary.additional_properties.get("philotes.watermark-lsn")
    assert_same(source, lake, ident, "SELECT * FROM trickle", ["id"])
    # Every snapshot kept reads (pyiceberg), replace snapshots included.
    for s in tbl.metadata.snapshots:
        tbl.scan(snapshot_id=s.snapshot_id).to_arrow()

    # Time travel by LSN filters rows, so it answers for a point long compacted and expired.
    at = source.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    want = sorted(source.sql("SELECT id, v FROM trickle"))
    source.sql("UPDATE trickle SET v = v + 1000")
    source.sql("DELETE FROM trickle WHERE id % 2 = 0")
    stream_commits(source, ident, 200, QUICK)
    out = subprocess.run(
        [str(BINARY), "sql", "--data-dir", str(source.data_dir), "--as-of-lsn", at, "--format", "json",
         "SELECT id, v FROM public.trickle ORDER BY id"],
        capture_output=True, text=True, check=True,
    )
    got = [(r["id"], r["v"]) for r in map(json.loads, out.stdout.splitlines())]
    assert got == want
    assert_same(source, lake, ident, "SELECT * FROM trickle", ["id"])

    # verify passes while run (and its maintenance) go on.
    p = source.start("--flush-interval", "20ms", *QUICK)
    try:
        v = subprocess.run([str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir),
                            "--format", "json"], capture_output=True, text=True, timeout=600)
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)

    # Nothing on disk that the table does not reference, once orphans are old enough.
    run_philotes([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--orphan-min-age", "0s",
                  "--snapshot-max-age", "0s", "--snapshot-keep-min", "2"])
    tbl = source.lake().table(ident)
    assert_only_referenced(source.data_dir, ident, tbl)
    assert_same(source, source.lake(), ident, "SELECT * FROM trickle", ["id"])


def test_without_maintenance_a_table_grows_with_every_commit(source):
    """The same trickle with maintenance off, for the docs: every commit adds a snapshot, a
    data file and a manifest, and the metadata file grows."""
    source.sql("CREATE TABLE trickle (id bigint PRIMARY KEY, v bigint, pad text)")
    ident = "public.trickle__changelog"
    source.sql("INSERT INTO trickle VALUES (1, 0, 'seed')")
    samples, _ = stream_commits(source, ident, 600, ["--maintenance=false"])
    first, last = samples[0], samples[-1]
    print(f"\nwithout maintenance: {last['version'] - first['version']} commits: snapshots {first['snapshots']} -> {last['snapshots']}, "
          f"data files {first['data_files']} -> {last['data_files']}, metadata file {first['metadata_bytes']} -> {last['metadata_bytes']} bytes")
    assert last["snapshots"] - first["snapshots"] >= 500
    assert last["data_files"] - first["data_files"] >= 500
    state = source.lake().current_state(ident, ["id"])
    # One pass brings it down.
    _, err, _ = run_philotes([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--snapshot-max-age", "0s",
                              "--snapshot-keep-min", "2", "--orphan-min-age", "0s"])
    after = sample(source.data_dir, ident)
    live = int(source.lake().table(ident).current_snapshot().summary.additional_properties["total-data-files"])
    print(f"after one `philotes maintain`: {after['snapshots']} snapshots, {live} live data file, "
          f"metadata file {after['metadata_bytes']} bytes; the {after['data_files'] - live} small files go "
          "once the snapshot before the compaction expires (at the next pass after a new commit)")
    # Kept: the compaction's snapshot and the one before it, which still names the small files.
    assert after["snapshots"] == 2 and live == 1
    assert source.lake().current_state(ident, ["id"]) == state
    assert_same(source, source.lake(), ident, "SELECT * FROM trickle", ["id"])


def test_kill_9_during_maintenance_loses_nothing_and_the_next_pass_cleans_up(source):
    """`philotes run` with maintenance every second, killed with -9 again and again under a
    writer, then `philotes maintain` (with changelog retention) killed mid-pass: no change lost
    or doubled, no referenced file deleted, and the next complete pass leaves only referenced
    files."""
    source.sql("CREATE TABLE trickle (id bigint PRIMARY KEY, v bigint, pad text)")
    source.sql("INSERT INTO trickle SELECT g, 0, repeat('p', 500) FROM generate_series(1, 2000) g")
    ident = "public.trickle__changelog"
    stop = threading.Event()
    counter = [0]
    w = threading.Thread(target=trickle, args=(source.url, stop, counter, 0.001))
    w.start()
    rnd = random.Random(3)
    try:
        for i in range(8):
            p = source.start("--flush-interval", "20ms", "--maintenance-interval", "1s", "--snapshot-max-age", "0s",
                             "--snapshot-keep-min", "2", "--orphan-min-age", "1h")
            time.sleep(1.5 + rnd.random() * 3)
            p.kill()
            p.wait()
    finally:
        stop.set()
        w.join()
    assert len(counter) == 1, f"the writer failed: {counter[1:]}"
    source.run("--maintenance=false")
    lake = source.lake()
    assert_same(source, lake, ident, "SELECT * FROM trickle", ["id"])
    rows = lake.changelog(ident)
    keys = [(r["_cdc_lsn"], r["_cdc_seq"]) for r in rows if r["_cdc_op"] != "S"]
    assert len(keys) == len(set(keys)), "a change is there twice"
    # Every file a snapshot references is there (pyiceberg read every snapshot's files).
    assert_nothing_missing(lake.table(ident))

    # `philotes maintain` killed at random points of its pass (changelog retention folding the
    # history too).
    cmd = [str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--changelog-retention", "1s",
           "--snapshot-max-age", "0s", "--snapshot-keep-min", "2", "--orphan-min-age", "1h"]
    for i in range(6):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.05 + rnd.random() * 0.6)
        p.kill()
        p.wait()
        assert_nothing_missing(source.lake().table(ident))
        assert_same(source, source.lake(), ident, "SELECT * FROM trickle", ["id"])
    # The next complete pass, with orphans old enough, removes the leftovers of the killed
    # writes and passes, and leaves only what the table references.
    out = subprocess.run(cmd[:-1] + ["0s", "--format", "json"], capture_output=True, text=True, check=True)
    (report,) = json.loads(out.stdout)["tables"]
    print(f"\nthe complete pass: {report['orphans']}, {report['retention']}")
    assert report["orphans"]["orphans_deleted"] > 0, report
    tbl = source.lake().table(ident)
    assert "philotes.retention-cut-lsn" in tbl.metadata.properties, "retention never folded"
    assert_only_referenced(source.data_dir, ident, tbl)
    assert_same(source, source.lake(), ident, "SELECT * FROM trickle", ["id"])
    # Streaming goes on from the position maintenance carried forward: no second copy.
    copies = sum(1 for r in source.lake().changelog(ident) if r["_cdc_op"] == "S")
    source.sql("UPDATE trickle SET v = -1 WHERE id < 50")
    source.run()
    assert sum(1 for r in source.lake().changelog(ident) if r["_cdc_op"] == "S") == copies
    assert_same(source, source.lake(), ident, "SELECT * FROM trickle", ["id"])


def test_maintain_says_what_is_wrong(source, tmp_path):
    """Bad input to `philotes maintain`: a clear error, a non-zero exit, nothing changed."""
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert p.returncode == 2 and "no lake at" in p.stderr, p.stderr
    assert not (tmp_path / "nowhere").exists()
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--snapshot-keep-min", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "snapshot_keep_min must be at least 2" in p.stderr, p.stderr
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--orphan-min-age", "soon"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "is not a duration" in p.stderr, p.stderr
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--changelog-retention", "0s"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "changelog_retention must be above zero" in p.stderr, p.stderr
    source.sql("CREATE TABLE t (id int PRIMARY KEY)")
    source.sql("INSERT INTO t VALUES (1)")
    source.run()
    before = sample(source.data_dir, "public.t__changelog")["version"]
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "public.nope"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "public.nope__changelog" in p.stderr, p.stderr
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "nodot"], capture_output=True, text=True)
    assert p.returncode == 2 and "is not schema.table" in p.stderr, p.stderr
    assert sample(source.data_dir, "public.t__changelog")["version"] == before
    # A table with nothing to do: the pass says so.
    p = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir)], capture_output=True, text=True)
    assert p.returncode == 0 and "public.t__changelog: nothing to do" in p.stdout, p.stdout + p.stderr


def _maintain_report(source, *extra):
    out = subprocess.run([str(BINARY), "maintain", "--data-dir", str(source.data_dir), "--format", "json", *extra],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (report,) = json.loads(out.stdout)["tables"]
    return report


def _lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _sql_state(source, at, query):
    return subprocess.run(
        [str(BINARY), "sql", "--data-dir", str(source.data_dir), "--as-of-lsn", at, "--format", "json", query],
        capture_output=True, text=True,
    )


def test_changelog_retention_folds_old_changes_and_keeps_the_state(source):
    """`changelog_retention`: the changes older than it are folded into one row per key (unchanged
    TOAST values filled in); the current state still equals the source (pyiceberg's reading of the
    contract, and verify), later changes stay as they were, time travel before the fold is refused
    and after it still answers right; a key change whose new row only the old key's row completes
    holds the fold back until a later change of that key settles the value."""
    source.sql("CREATE TABLE docs (id int PRIMARY KEY, v int, body text)")
    # Out of line and uncompressed: an UPDATE that leaves body alone sends it as unchanged TOAST.
    source.sql("ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL")
    source.sql("INSERT INTO docs SELECT g, 0, repeat(md5(g::text), 100) FROM generate_series(1, 300) g")
    ident = "public.docs__changelog"
    off = ["--maintenance=false"]
    source.run(*off)
    # Old history: values updated around an unchanged TOAST column, deletes, new bodies.
    for i in range(6):
        source.sql("UPDATE docs SET v = v + 1 WHERE id %% 3 = %s", (i % 3,))
    source.sql("DELETE FROM docs WHERE id > 280")
    source.sql("UPDATE docs SET body = 'short ' || id WHERE id <= 10")
    source.run(*off)
    lake = source.lake()
    rows = lake.changelog(ident)
    assert any(r["_cdc_unchanged"] for r in rows), "the test needs unchanged TOAST values"
    old_rows = len(rows)
    time.sleep(7)
    at = source.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    want_at = sorted(source.sql("SELECT id, v, body FROM docs"))
    # Recent history: a key change that leaves body unchanged, more updates.
    source.sql("UPDATE docs SET id = id + 1000 WHERE id BETWEEN 20 AND 24")
    source.sql("UPDATE docs SET v = v + 100 WHERE id > 200")
    source.run(*off)
    recent = [r for r in source.lake().changelog(ident) if r["_cdc_lsn"] >= _lsn(at)]
    assert any(r["_cdc_op"] == "D" for r in recent) and any(r["_cdc_unchanged"] for r in recent)

    report = _maintain_report(source, "--changelog-retention", "6s")
    print(f"\nretention: {report['retention']}")
    ret = report["retention"]
    assert ret["cut_lsn"] and ret["changes_folded"] == old_rows and ret["base_rows"] == 280, ret
    cut = _lsn(ret["cut_lsn"])
    lake = source.lake()
    tbl = lake.table(ident)
    assert tbl.metadata.properties["philotes.retention-cut-lsn"] == ret["cut_lsn"]
    assert tbl.current_snapshot().summary.additional_properties["philotes.maintenance"] == "retention"
    assert tbl.current_snapshot().summary.additional_properties.get("philotes.watermark-lsn")
    rows = lake.changelog(ident)
    base = [r for r in rows if r["_cdc_lsn"] <= cut]
    # One row per key alive at the cut, each with every value (no unchanged TOAST left).
    assert len(base) == 280 and len({r["id"] for r in base}) == 280
    assert all(r["_cdc_op"] in ("S", "I", "U") and not r["_cdc_unchanged"] and r["body"] for r in base)
    # The later changes are exactly as they were.
    key = lambda r: (r["_cdc_lsn"], r["_cdc_seq"])  # noqa: E731
    assert sorted(map(key, (r for r in rows if r["_cdc_lsn"] > cut))) == sorted(map(key, recent))
    assert len(set(map(key, rows))) == len(rows), "a change is there twice"
    # The contract's reading (pyiceberg): the key change takes its body from the old key's base row.
    assert_same(source, lake, ident, "SELECT * FROM docs", ["id"])
    for s in tbl.metadata.snapshots:
        tbl.scan(snapshot_id=s.snapshot_id).to_arrow()

    # Time travel: from the fold on it answers as before; earlier, it refuses.
    out = _sql_state(source, at, "SELECT id, v, body FROM public.docs ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert [(r["id"], r["v"], r["body"]) for r in map(json.loads, out.stdout.splitlines())] == want_at
    out = _sql_state(source, "0/1", "SELECT count(*) FROM public.docs")
    assert out.returncode != 0 and "changelog retention" in out.stderr and ret["cut_lsn"] in out.stderr, out.stderr

    # Later: the key change is old, but the new keys' body is only in the old keys' rows.
    time.sleep(7)
    source.sql("UPDATE docs SET v = -1 WHERE id = 1")
    source.run(*off)
    report = _maintain_report(source, "--changelog-retention", "6s")
    assert report["retention"]["cut_lsn"] is None and "key change" in (report["retention"]["waiting"] or ""), report
    assert_same(source, source.lake(), ident, "SELECT * FROM docs", ["id"])
    # A later change of those keys settles the value; then the fold goes past the key change.
    before_settling = _lsn(source.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0])
    source.sql("UPDATE docs SET body = 'settled ' || id WHERE id BETWEEN 1020 AND 1024")
    time.sleep(7)
    source.sql("UPDATE docs SET v = -2 WHERE id = 2")
    # Through `run`, whose last pass before it exits folds with the same settings.
    _, err, _ = source.run("--changelog-retention", "6s")
    assert "changelog retention folded" in err, err[-3000:]
    lake = source.lake()
    cut2 = _lsn(lake.table(ident).metadata.properties["philotes.retention-cut-lsn"])
    rows = lake.changelog(ident)
    # Past the key change and the change that settled it; the last update is inside the window
    # (unless this machine took over 6 s to get there).
    assert cut2 > before_settling > cut, (cut2, before_settling, cut)
    assert not [r for r in rows if r["_cdc_lsn"] <= cut2 and (r["_cdc_op"] in ("D", "T") or r["_cdc_unchanged"])]
    assert [r["id"] for r in rows if r["_cdc_lsn"] > cut2] in ([2], [])
    assert len({key(r) for r in rows}) == len(rows)
    assert_same(source, lake, ident, "SELECT * FROM docs", ["id"])
    # verify (philotes sql's view; known gap: it cannot carry a value across a key change, which
    # is why it runs once the moved keys' body is settled).
    v = subprocess.run([str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir)],
                       capture_output=True, text=True, timeout=600)
    assert v.returncode == 0, v.stdout + v.stderr
