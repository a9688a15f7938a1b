"""`philotes` benchmarks against the physical limit measured in the same run.

Starts its own PostgreSQL, generates data of a stated shape and size, and measures:

- snapshot: rows/s and MB/s of the initial copy into committed Iceberg files, as a ratio to
  PostgreSQL's own `COPY … TO STDOUT (FORMAT binary)` drain rate of the same table;
- streaming: changes/s end to end (committed in Iceberg) for inserts, updates and deletes in
  transactions of 1, 100 and 10,000 rows, as a ratio to `pg_recvlogical` draining the same WAL
  (pgoutput) to /dev/null;
- latency: source commit → visible in Iceberg, p50/p99, at the default flush settings under a
  steady load, with the embedded SQL catalog and with a REST catalog (lakana-server);
- service: `ingest` alone and `ingest` + two `worker`s (one table, two tables), freshness through
  the buffer, and one large transaction through all three roles;
- memory: peak RSS of every philotes run, and of one large transaction.

Prints a table and writes JSON (`--json`). Asserts nothing: the figures are the result.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from pgcluster import Cluster  # noqa: E402

WIDE_COLUMNS = [
    ("id", "bigint PRIMARY KEY", "g"),
    ("i1", "int", "g % 1000"), ("i2", "int", "g % 7"), ("i3", "smallint", "(g % 100)::smallint"),
    ("b1", "bigint", "g * 31"), ("b2", "bigint", "g * 17"),
    ("f1", "double precision", "g * 0.5"), ("f2", "real", "(g % 1000) * 0.25"),
    ("n1", "numeric(12,2)", "(g % 100000) * 1.25"), ("n2", "numeric(18,6)", "g * 0.000123"),
    ("n3", "numeric(10,0)", "g % 99999"),
    ("t1", "timestamptz", "'2024-01-01'::timestamptz + g * interval '1 second'"),
    ("t2", "timestamptz", "now()"), ("t3", "timestamp", "'2024-01-01'::timestamp + g * interval '1 minute'"),
    ("d1", "date", "'2020-01-01'::date + (g % 2000)"),
    ("s1", "text", "'customer-' || g"), ("s2", "text", "md5(g::text)"), ("s3", "varchar(32)", "'city-' || (g % 500)"),
    ("s4", "text", "repeat('x', g % 40)"), ("s5", "text", "'status-' || (g % 5)"),
    ("bo", "boolean", "g % 2 = 0"), ("u", "uuid", "md5(g::text)::uuid"),
    ("j1", "jsonb", "jsonb_build_object('k', g, 'tag', 't' || (g % 9))"),
    ("j2", "json", "json_build_object('a', g % 3)"),
    ("a1", "int[]", "ARRAY[g % 10, g % 20]"), ("a2", "text[]", "ARRAY['x', 'y' || (g % 3)]"),
    ("e1", "bigint", "g + 1"), ("e2", "int", "g % 13"), ("e3", "text", "'note ' || (g % 77)"),
    ("e4", "double precision", "g / 3.0"),
]


def vm_hwm_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Bench:
    def __init__(self, args):
        self.args = args
        self.binary = Path(args.binary)
        self.cluster = Cluster()
        self.url = self.cluster.url()
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.work = Path(tempfile.mkdtemp(prefix="philotes-bench-"))
        self.results = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "binary": str(self.binary)}
        self.runs = 0

    def drop_slot(self, slot):
        """Drop a slot once its walsender has noticed that the client left (a moment after the
        client's exit)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sql(f"SELECT pg_drop_replication_slot('{slot}')")
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def sql(self, q):
        return self.conn.execute(q)

    def say(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def timed_psql(self, sql, output="/dev/null"):
        t = time.perf_counter()
        with open(output, "wb") as out:
            subprocess.run(["psql", self.url, "-X", "-q", "-c", sql], stdout=out, check=True)
        return time.perf_counter() - t

    def philotes(self, *args, background=False):
        """A philotes run on a fresh slot and data dir; returns (seconds, peak RSS KiB)."""
        self.runs += 1
        data = self.work / f"run{self.runs}"
        cmd = [str(self.binary), "run", "--source", self.url, "--data-dir", str(data), *args]
        env = {**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "warn")}
        if background:
            return subprocess.Popen(cmd, env=env), data
        t = time.perf_counter()
        p = subprocess.Popen(cmd + ["--until-caught-up"], env=env)
        peak = 0
        while p.poll() is None:
            peak = max(peak, vm_hwm_kib(p.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - t
        if p.returncode != 0:
            raise SystemExit(f"philotes failed ({p.returncode}): {' '.join(cmd)}")
        return seconds, peak, data

    # --- snapshot ---------------------------------------------------------------------------

    def snapshot(self, table, rows):
        out = self.work / f"{table}.copy"
        copy_s = self.timed_psql(f"COPY {table} TO STDOUT (FORMAT binary)", output=str(out))
        size = out.stat().st_size
        out.unlink()
        pub = f"bench_{table}"
        self.sql(f"CREATE PUBLICATION {pub} FOR TABLE {table}")
        secs, peak, data = self.philotes("--publication", pub, "--slot", f"snap_{table}")
        verify = self.verify(pub, f"snap_{table}", data, rows, copy_s)
        self.drop_slot(f"snap_{table}")
        files = list((data / "warehouse").rglob("*.parquet"))
        r = {
            "rows": rows,
            "copy_binary_bytes": size,
            "copy_rows_per_s": rows / copy_s,
            "philotes_seconds": secs,
            "philotes_rows_per_s": rows / secs,
            "philotes_mb_per_s": size / secs / 1e6,
            "ratio_to_copy": (rows / secs) / (rows / copy_s),
            "peak_rss_mib": peak / 1024,
            "parquet_files": len(files),
            "parquet_mean_mib": (sum(f.stat().st_size for f in files) / len(files) / 2**20) if files else 0,
            "verify": verify,
        }
        shutil.rmtree(data, ignore_errors=True)
        return r

    def verify(self, pub, slot, data, rows, copy_s):
        """`philotes verify` of the copied table while `philotes run` keeps the slot, timed."""
        env = {**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "warn")}
        common = ["--source", self.url, "--data-dir", str(data), "--publication", pub, "--slot", slot]
        run = subprocess.Popen([str(self.binary), "run", *common, "--flush-interval", "500ms"], env=env)
        try:
            t = time.perf_counter()
            p = subprocess.Popen([str(self.binary), "verify", *common, "--format", "json"], env=env, stdout=subprocess.PIPE, text=True)
            peak = 0
            while p.poll() is None:
                peak = max(peak, vm_hwm_kib(p.pid))
                time.sleep(0.01)
            secs = time.perf_counter() - t
            report = json.loads(p.stdout.read())
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=120)
        if p.returncode != 0:
            raise SystemExit(f"philotes verify found the lake different ({p.returncode}): {report}")
        # The comparison itself; the rest is start-up and the wait for `run` to confirm past
        # the verification point (about its flush interval).
        compare_s = max(sum(t["seconds"] for t in report["tables"]), 1e-3)
        return {"seconds": secs, "compare_seconds": compare_s, "rows_per_s": rows / compare_s,
                "ratio_to_copy": (rows / compare_s) / (rows / copy_s),
                "peak_rss_mib": peak / 1024, "status": report["status"]}

    def make_tables(self):
        a = self.args
        self.say(f"generating narrow ({a.narrow_rows} rows) and wide ({a.wide_rows} rows, {len(WIDE_COLUMNS)} columns)")
        self.sql("CREATE TABLE narrow (id bigint PRIMARY KEY, a int, b int, c text, d timestamptz)")
        self.sql(f"INSERT INTO narrow SELECT g, g % 1000, g % 7, 'item-' || g, now() FROM generate_series(1, {a.narrow_rows}) g")
        cols = ", ".join(f"{n} {t}" for n, t, _ in WIDE_COLUMNS)
        self.sql(f"CREATE TABLE wide ({cols})")
        exprs = ", ".join(e for _, _, e in WIDE_COLUMNS)
        self.sql(f"INSERT INTO wide SELECT {exprs} FROM generate_series(1, {a.wide_rows}) g")
        self.sql("VACUUM ANALYZE narrow, wide")

    # --- streaming --------------------------------------------------------------------------

    def workload(self, op, txn_rows, changes, base):
        """SQL that makes `changes` row changes of kind `op` in transactions of `txn_rows`."""
        txns = max(1, changes // txn_rows)
        if op == "insert":
            body = f"INSERT INTO stream_t SELECT g, g % 1000, 'v' || g FROM generate_series({base} + i * {txn_rows} + 1, {base} + (i + 1) * {txn_rows}) g;"
        elif op == "update":
            body = f"UPDATE stream_t SET a = a + 1 WHERE id > i * {txn_rows} AND id <= (i + 1) * {txn_rows};"
        else:
            body = f"DELETE FROM stream_t WHERE id > i * {txn_rows} AND id <= (i + 1) * {txn_rows};"
        return f"DO $$ BEGIN FOR i IN 0..{txns - 1} LOOP {body} COMMIT; END LOOP; END $$;", txns * txn_rows

    def streaming(self, op, txn_rows, changes):
        slot, probe = f"s_{op}_{txn_rows}", f"r_{op}_{txn_rows}"
        self.sql("TRUNCATE stream_t")
        if op != "insert":
            self.sql(f"INSERT INTO stream_t SELECT g, g % 1000, 'v' || g FROM generate_series(1, {changes}) g")
        # The pipeline's table, copied (nearly empty for inserts), and both slots at the same point.
        secs, _, data = self.philotes("--publication", "bench_stream", "--slot", slot)
        probes = [probe + "_a", probe + "_b"]
        for p in probes:
            self.sql(f"SELECT pg_create_logical_replication_slot('{p}', 'pgoutput')")
        sql, n = self.workload(op, txn_rows, changes, changes)
        self.sql(sql)
        end = self.sql("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
        # The physical limit: pg_recvlogical drains the same WAL through pgoutput, once before
        # and once after philotes (the second decoder finds the WAL in the page cache); the
        # faster of the two counts.
        drain_a = self.drain(probes[0], end)
        secs, peak, _ = self.resume(data, slot)
        drain_b = self.drain(probes[1], end)
        drain_s = min(drain_a, drain_b)
        self.drop_slot(slot)
        files = list((data / "warehouse").rglob("*.parquet"))
        shutil.rmtree(data, ignore_errors=True)
        return {
            "op": op, "txn_rows": txn_rows, "changes": n,
            "pg_recvlogical_changes_per_s": n / drain_s,
            "philotes_seconds": secs,
            "philotes_changes_per_s": n / secs,
            "ratio_to_pg_recvlogical": drain_s / secs,
            "peak_rss_mib": peak / 1024,
            "parquet_files": len(files),
        }

    def drain(self, slot, end):
        t = time.perf_counter()
        subprocess.run([
            "pg_recvlogical", "-d", self.url, "--slot", slot, "--start", "--endpos", end,
            "-o", "proto_version=1", "-o", "publication_names=bench_stream", "-f", "/dev/null", "--no-loop",
        ], check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - t
        self.drop_slot(slot)
        return seconds

    def resume(self, data, slot):
        cmd = [str(self.binary), "run", "--source", self.url, "--data-dir", str(data), "--publication", "bench_stream", "--slot", slot, "--until-caught-up"]
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env={**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "warn")})
        peak = 0
        while p.poll() is None:
            peak = max(peak, vm_hwm_kib(p.pid))
            time.sleep(0.01)
        if p.returncode != 0:
            raise SystemExit(f"philotes failed ({p.returncode})")
        return time.perf_counter() - t, peak, data

    def startup(self):
        """One caught-up run with nothing to do: what every streaming figure above includes."""
        self.sql("TRUNCATE stream_t")
        _, _, data = self.philotes("--publication", "bench_stream", "--slot", "s_idle")
        secs, _, _ = self.resume(data, "s_idle")
        self.drop_slot("s_idle")
        shutil.rmtree(data, ignore_errors=True)
        return secs

    # --- ingest and workers ----------------------------------------------------------------

    def service(self, changes, txn_rows=100, big_rows=0):
        """The production shape on a backlog of inserts: `philotes ingest` alone draining the
        slot into the control database's buffer, then `ingest` with two `worker`s end to end
        into Iceberg on a second backlog into one table and a third into two tables (a table is
        the unit of parallelism: one worker writes it at a time); all against pg_recvlogical
        draining the same WAL. Then one `big_rows`-row transaction through all three roles, for
        their peak memory."""
        self.sql("DROP DATABASE IF EXISTS bench_ctl")
        self.sql("CREATE DATABASE bench_ctl")
        ctl_url = self.cluster.url("bench_ctl")
        ctl = psycopg.connect(ctl_url, autocommit=True)
        self.sql("TRUNCATE stream_t")
        self.sql("CREATE TABLE stream_u (id bigint PRIMARY KEY, a int, v text)")
        self.sql("ALTER PUBLICATION bench_stream ADD TABLE stream_u")
        data = self.work / "service"
        common = ["--source", self.url, "--data-dir", str(data), "--publication", "bench_stream", "--slot", "svc",
                  "--buffer-url", ctl_url, "--metrics-addr", "127.0.0.1:0"]
        env = {**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "warn")}

        def start(*args):
            return subprocess.Popen([str(self.binary), *args, *common], env=env)

        def until(cond, procs):
            """Seconds until cond(), and the peak RSS (KiB) of each of `procs` meanwhile."""
            t = time.perf_counter()
            peaks = [0] * len(procs)
            while not cond():
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        raise SystemExit(f"a philotes role exited ({p.returncode}) during the service benchmark")
                    peaks[i] = max(peaks[i], vm_hwm_kib(p.pid))
                time.sleep(0.01)
            return time.perf_counter() - t, [max(pk, vm_hwm_kib(p.pid)) for pk, p in zip(peaks, procs)]

        def confirmed_past(end):
            return self.sql(f"SELECT confirmed_flush_lsn >= '{end}'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'svc'").fetchone()[0]

        def buffered():
            # Polled every 10 ms: the tables' counters, not a count(*) that scans the whole
            # buffer (a scan 100 times a second slowed the very drain it measured). A count
            # confirms the empty buffer once.
            now = ctl.execute("SELECT coalesce(sum(changes_now), 0) FROM philotes.tables").fetchone()[0]
            if now == 0:
                return ctl.execute("SELECT count(*) FROM philotes.changes").fetchone()[0]
            return now

        def stop(*procs):
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=120)

        # Set up: the (empty) table copied, the slot made; then a backlog while nothing runs.
        ingest = start("ingest")
        until(lambda: ctl.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'philotes' AND tablename = 'tables'").fetchone()[0] == 1
              and ctl.execute("SELECT count(*) FROM philotes.tables WHERE snapshot_lsn IS NOT NULL").fetchone()[0] == 2, [ingest])
        stop(ingest)
        base = 0
        out = {}
        for phase in ("ingest", "end_to_end", "end_to_end_two_tables"):
            self.sql(f"SELECT pg_create_logical_replication_slot('svc_probe', 'pgoutput')")
            if phase == "end_to_end_two_tables":
                # The same number of changes and transactions, each half into either table.
                half = txn_rows // 2
                txns = max(1, changes // txn_rows)
                sql = (f"DO $$ BEGIN FOR i IN 0..{txns - 1} LOOP "
                       f"INSERT INTO stream_t SELECT g, g % 1000, 'v' || g FROM generate_series({base} + i * {half} + 1, {base} + (i + 1) * {half}) g; "
                       f"INSERT INTO stream_u SELECT g, g % 1000, 'v' || g FROM generate_series({base} + i * {half} + 1, {base} + (i + 1) * {half}) g; "
                       "COMMIT; END LOOP; END $$;")
                n = txns * half * 2
            else:
                sql, n = self.workload("insert", txn_rows, changes, base)
            base += n
            self.sql(sql)
            end = self.sql("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
            drain_s = self.drain("svc_probe", end)
            if phase == "ingest":
                ingest = start("ingest")
                secs, (peak,) = until(lambda: confirmed_past(end), [ingest])
                stop(ingest)
                out["ingest"] = {"changes": n, "txn_rows": txn_rows, "seconds": secs, "changes_per_s": n / secs,
                                 "pg_recvlogical_changes_per_s": n / drain_s, "ratio_to_pg_recvlogical": drain_s / secs,
                                 "peak_rss_mib": peak / 1024}
                # The first backlog is written by the workers before the second one.
                workers = [start("worker", "--worker-id", f"w{i}") for i in (1, 2)]
                until(lambda: buffered() == 0, workers)
                stop(*workers)
            else:
                procs = [start("ingest"), start("worker", "--worker-id", "w1"), start("worker", "--worker-id", "w2")]
                secs, peaks = until(lambda: confirmed_past(end) and buffered() == 0, procs)
                stop(*procs)
                out[phase] = {"changes": n, "txn_rows": txn_rows, "workers": 2, "tables": 2 if phase.endswith("two_tables") else 1,
                              "seconds": secs, "changes_per_s": n / secs, "pg_recvlogical_changes_per_s": n / drain_s,
                              "ratio_to_pg_recvlogical": drain_s / secs,
                              "peak_rss_mib": {"ingest": peaks[0] / 1024, "worker_1": peaks[1] / 1024, "worker_2": peaks[2] / 1024}}
        if big_rows:
            # One transaction larger than any buffer: ingest writes it out as it goes, the
            # workers read it in parts; the peak memory of each role is the figure.
            self.sql(f"INSERT INTO stream_t SELECT g, g % 1000, md5(g::text) FROM generate_series({base} + 1, {base} + {big_rows}) g")
            end = self.sql("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
            procs = [start("ingest"), start("worker", "--worker-id", "w1"), start("worker", "--worker-id", "w2")]
            secs, peaks = until(lambda: confirmed_past(end) and buffered() == 0, procs)
            stop(*procs)
            out["big_transaction"] = {"rows": big_rows, "seconds": secs, "rows_per_s": big_rows / secs,
                                      "peak_rss_mib": {"ingest": peaks[0] / 1024, "worker_1": peaks[1] / 1024, "worker_2": peaks[2] / 1024}}
        # Freshness through the buffer: single-row inserts at the latency run's rate while all
        # three run with the default flush interval.
        procs = [start("ingest"), start("worker", "--worker-id", "w1"), start("worker", "--worker-id", "w2")]
        time.sleep(3)
        hi, lo = self.sql("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0].split("/")
        since = (int(hi, 16) << 32) | int(lo, 16)
        a = self.args
        stop_at = time.monotonic() + a.latency_seconds
        i = 0
        with psycopg.connect(self.url, autocommit=True) as c:
            while time.monotonic() < stop_at:
                c.execute("INSERT INTO stream_t VALUES (%s, 0, 'fresh')", (10**12 + i,))
                i += 1
                time.sleep(1 / a.latency_rate)
        time.sleep(a.flush_seconds + 3)
        peak = max(vm_hwm_kib(p.pid) for p in procs)
        stop(*procs)
        out["freshness"] = self.visible_latency(data, i, peak, table="stream_t", since_lsn=since)
        ctl.close()
        self.drop_slot("svc")
        shutil.rmtree(data, ignore_errors=True)
        self.sql("DROP DATABASE bench_ctl WITH (FORCE)")
        self.sql("ALTER PUBLICATION bench_stream DROP TABLE stream_u")
        self.sql("DROP TABLE stream_u")
        return out

    # --- latency ----------------------------------------------------------------------------

    def latency(self, seconds, rate):
        self.sql("CREATE TABLE lat (id bigint PRIMARY KEY, v text)")
        self.sql("CREATE PUBLICATION bench_lat FOR TABLE lat")
        p, data = self.philotes("--publication", "bench_lat", "--slot", "s_lat", "--maintenance=false", background=True)
        i, peak = self.trickle_into(p, "lat", "s_lat", seconds, rate)
        return self.visible_latency(data, i, peak)

    def trickle_into(self, p, table, slot, seconds, rate):
        """Single-row inserts into `table` at `rate` a second for `seconds` while the run `p`
        streams them, then one flush interval and a margin; stops `p` and drops its slot.
        Returns the rows inserted and `p`'s peak RSS (KiB)."""
        time.sleep(3)  # initial copy of the empty table
        stop = time.monotonic() + seconds
        i = 0
        with psycopg.connect(self.url, autocommit=True) as c:
            while time.monotonic() < stop:
                c.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (i,))
                i += 1
                time.sleep(1 / rate)
        time.sleep(self.args.flush_seconds + 2)
        peak = vm_hwm_kib(p.pid)
        p.terminate()
        p.wait()
        self.drop_slot(slot)
        return i, peak

    def latency_rest(self, seconds, rate):
        """`latency` with the tables in an Iceberg REST catalog (lakana-server, the REST catalog
        that installs here; test-env.sh puts it in .venv-lakana): every commit is an HTTP call."""
        import base64
        import urllib.request
        from pyiceberg.catalog.rest import RestCatalog
        sys.path.insert(0, str(ROOT / "tests" / "e2e"))
        from pgcluster import free_port
        lakana = Path(os.environ.get("PHILOTES_LAKANA_VENV", ROOT / ".venv-lakana")) / "bin" / "lakana-server"
        work = self.work / "rest"
        (work / "warehouse").mkdir(parents=True)
        port = free_port()
        env = {**os.environ, "LAKANA_DATABASE__URL": f"sqlite:///{work / 'lakana.db'}",
               "LAKANA_BOOTSTRAP_TOKEN_FILE": str(work / "token"), "LAKANA_PORT": str(port),
               "LAKANA_SECRETS__MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
        subprocess.run([str(lakana), "migrate"], env=env, check=True, capture_output=True)
        server = subprocess.Popen([str(lakana)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        uri = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(uri + "/v1/config", timeout=1)
                except urllib.error.HTTPError:
                    if (work / "token").exists() and (work / "token").read_text().strip():
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            token = (work / "token").read_text().strip()
            req = urllib.request.Request(
                uri + "/api/v1/environments",
                data=json.dumps({"name": "dev", "storage": {"scheme": "file", "root": f"file://{work / 'warehouse'}"}}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10)
            self.sql("CREATE TABLE lat_rest (id bigint PRIMARY KEY, v text)")
            self.sql("CREATE PUBLICATION bench_lat_rest FOR TABLE lat_rest")
            p = subprocess.Popen(
                [str(self.binary), "run", "--source", self.url, "--data-dir", str(work / "data"), "--publication", "bench_lat_rest",
                 "--slot", "s_lat_rest", "--maintenance=false", "--catalog-uri", uri, "--catalog-prefix", "dev",
                 "--namespace", "bronze", "--warehouse", f"file://{work / 'warehouse'}"],
                env={**os.environ, "PHILOTES_LOG": os.environ.get("PHILOTES_LOG", "warn"), "PHILOTES_CATALOG_TOKEN": token})
            i, peak = self.trickle_into(p, "lat_rest", "s_lat_rest", seconds, rate)
            cat = RestCatalog("rest", uri=uri, token=token, prefix="dev")
            out = self.visible_latency(None, i, peak, table="lat_rest", catalog=cat, ident="bronze.public__lat_rest__changelog")
        finally:
            server.kill()
            server.wait()
        self.sql("DROP PUBLICATION bench_lat_rest")
        self.sql("DROP TABLE lat_rest")
        return out

    def visible_latency(self, data, inserted, peak, table="lat", since_lsn=0, catalog=None, ident=None):
        from pyiceberg.catalog.sql import SqlCatalog
        cat = catalog or SqlCatalog("philotes", uri=f"sqlite:///{data / 'catalog.db'}", warehouse=f"file://{data / 'warehouse'}")
        t = cat.load_table(ident or f"public.{table}__changelog")
        snaps = sorted(t.snapshots(), key=lambda s: s.timestamp_ms)
        rows = t.scan(selected_fields=("_cdc_lsn", "_cdc_ts", "_cdc_op")).to_arrow().to_pylist()
        # A row became visible with the first snapshot whose watermark is above its commit LSN.
        marks = []
        for s in snaps:
            w = s.summary.additional_properties.get("philotes.watermark-lsn")
            if w:
                hi, lo = w.split("/")
                marks.append(((int(hi, 16) << 32) | int(lo, 16), s.timestamp_ms))
        lat = []
        for r in rows:
            if r["_cdc_op"] != "I" or r["_cdc_lsn"] < since_lsn:
                continue
            seen = next(ms for w, ms in marks if r["_cdc_lsn"] < w)
            lat.append(seen / 1000 - r["_cdc_ts"].timestamp())
        lat.sort()
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
        return {"rows": len(lat), "inserted": inserted, "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": lat[-1], "peak_rss_mib": peak / 1024,
                "flush_interval_s": self.args.flush_seconds}

    # --- maintenance ------------------------------------------------------------------------

    def commit_flatness(self, commits):
        """A trickle of one-row transactions replicated at a 20 ms flush with maintenance every
        10 s: the time between commits near commit 100 against the last ones, after `commits`."""
        import json as _json
        import sqlite3
        import threading
        self.sql("CREATE TABLE trickle (id bigint PRIMARY KEY, v bigint)")
        self.sql("CREATE PUBLICATION bench_trickle FOR TABLE trickle")
        p, data = self.philotes("--publication", "bench_trickle", "--slot", "s_trickle", "--flush-interval", "20ms",
                                "--maintenance-interval", "10s", "--snapshot-max-age", "5s", background=True)
        stop = threading.Event()

        def write():
            with psycopg.connect(self.url, autocommit=True) as c:
                i = 0
                while not stop.is_set():
                    c.execute("INSERT INTO trickle VALUES (%s, 0) ON CONFLICT (id) DO UPDATE SET v = trickle.v + 1", (i % 5000,))
                    i += 1
                    time.sleep(0.002)

        def current():
            try:
                with sqlite3.connect(data / "catalog.db") as c:
                    row = c.execute("SELECT metadata_location FROM iceberg_tables WHERE table_name = 'trickle__changelog'").fetchone()
            except sqlite3.Error:
                return None
            if not row:
                return None
            path = Path(row[0].removeprefix("file://"))
            return int(path.name.split("-")[0]), _json.loads(path.read_text()), path.stat().st_size

        def gaps(md, last):
            appends = {s["snapshot-id"] for s in md["snapshots"] if s["summary"]["operation"] == "append"}
            ts = [e["timestamp-ms"] for e in md["snapshot-log"] if e["snapshot-id"] in appends][-last:]
            g = sorted(b - a for a, b in zip(ts, ts[1:]))
            return g[len(g) // 2] if g else None

        w = threading.Thread(target=write)
        w.start()
        early = None
        worst_md = 0
        t0 = time.monotonic()
        try:
            while True:
                c = current()
                if c:
                    version, md, size = c
                    worst_md = max(worst_md, size)
                    if early is None and version >= 150:
                        early = gaps(md, 100)
                    if version >= commits:
                        late = gaps(md, 100)
                        break
                if p.poll() is not None:
                    raise SystemExit("philotes stopped during the commit bench")
                time.sleep(0.5)
        finally:
            stop.set()
            w.join()
            p.terminate()
            p.wait()
        self.drop_slot("s_trickle")
        files = len(list((data / "warehouse").rglob("trickle__changelog/data/*.parquet")))
        shutil.rmtree(data, ignore_errors=True)
        self.sql("DROP PUBLICATION bench_trickle")
        self.sql("DROP TABLE trickle")
        return {"commits": commits, "seconds": time.monotonic() - t0, "flush_interval_ms": 20,
                "median_ms_between_commits_near_100": early, "median_ms_between_commits_at_end": late,
                "ratio_end_to_start": (late / early) if early and late else None,
                "largest_metadata_file_kib": worst_md / 1024, "parquet_files_at_end": files}

    def compaction(self, txns, rows_per_txn):
        """`txns` committed transactions replicated into as many small files, then one
        `philotes maintain`, against pyarrow rewriting the same files in the same run."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        self.sql("CREATE TABLE small (id bigint PRIMARY KEY, a int, v text, at timestamptz)")
        self.sql("CREATE PUBLICATION bench_small FOR TABLE small")
        _, _, data = self.philotes("--publication", "bench_small", "--slot", "s_small", "--maintenance=false")
        for t in range(txns):
            self.sql(f"INSERT INTO small SELECT g, g % 1000, md5(g::text), now() FROM generate_series({t * rows_per_txn}, {(t + 1) * rows_per_txn - 1}) g")
        cmd = [str(self.binary), "run", "--source", self.url, "--data-dir", str(data), "--publication", "bench_small", "--slot", "s_small",
               "--maintenance=false", "--flush-rows", str(rows_per_txn), "--until-caught-up"]
        subprocess.run(cmd, check=True, env={**os.environ, "PHILOTES_LOG": "warn"})
        self.drop_slot("s_small")
        # The changelog's files (the mirror beside it is not what maintenance compacts).
        inputs = sorted((data / "warehouse").rglob("small__changelog/data/*.parquet"))
        in_bytes = sum(f.stat().st_size for f in inputs)
        # pyarrow: read every file and write them as one zstd file (the physical rewrite).
        t = time.perf_counter()
        table = pa.concat_tables([pq.read_table(f) for f in inputs])
        pq.write_table(table, self.work / "rewrite.parquet", compression="zstd", compression_level=1, row_group_size=131072)
        arrow_s = time.perf_counter() - t
        out = subprocess.run([str(self.binary), "maintain", "--data-dir", str(data), "--format", "json"],
                             check=True, capture_output=True, text=True, env={**os.environ, "PHILOTES_LOG": "warn"})
        (rep,) = json.loads(out.stdout)["tables"]
        shutil.rmtree(data, ignore_errors=True)
        (self.work / "rewrite.parquet").unlink()
        self.sql("DROP PUBLICATION bench_small")
        self.sql("DROP TABLE small")
        mb = in_bytes / 1e6
        # The compaction step (reading the manifests, the rewrite, its commit) against pyarrow's
        # rewrite; the whole pass (also expiry and listing the table's files) beside it.
        step_s = rep["rewrite"]["seconds"]
        return {"files_in": rep["rewrite"]["files_in"], "files_out": rep["rewrite"]["files_out"], "rows": rep["rewrite"]["rows"],
                "mb_in": mb, "mb_out": rep["rewrite"]["bytes_out"] / 1e6, "seconds": step_s, "pass_seconds": rep["seconds"],
                "mb_per_s": mb / step_s, "pass_mb_per_s": mb / rep["seconds"], "pyarrow_mb_per_s": mb / arrow_s,
                "pyarrow_seconds": arrow_s, "ratio_to_pyarrow": arrow_s / step_s, "pass_ratio_to_pyarrow": arrow_s / rep["seconds"]}

    # --- memory -----------------------------------------------------------------------------

    def big_transaction(self, rows, stream):
        """One `rows`-row transaction, committed before philotes starts; `stream`: protocol 2."""
        tag = "on" if stream else "off"
        table, pub, slot = f"huge_{tag}", f"bench_huge_{tag}", f"s_huge_{tag}"
        self.sql(f"CREATE TABLE {table} (id bigint PRIMARY KEY, a int, b text, c timestamptz)")
        self.sql(f"CREATE PUBLICATION {pub} FOR TABLE {table}")
        mode = f"--stream-large-transactions={'true' if stream else 'false'}"
        _, _, data = self.philotes("--publication", pub, "--slot", slot, mode)
        self.say(f"one transaction of {rows} rows, streaming of large transactions {tag}")
        self.sql(f"INSERT INTO {table} SELECT g, g % 1000, md5(g::text), now() FROM generate_series(1, {rows}) g")
        cmd = [str(self.binary), "run", "--source", self.url, "--data-dir", str(data), "--publication", pub, "--slot", slot, mode, "--until-caught-up"]
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env={**os.environ, "PHILOTES_LOG": "warn"})
        peak, spill_peak, polled = 0, 0, 0.0
        while p.poll() is None:
            peak = max(peak, vm_hwm_kib(p.pid))
            if time.perf_counter() - polled > 0.5:
                polled = time.perf_counter()
                spill_peak = max(spill_peak, sum(f.stat().st_size for f in (data / "spill").glob("*.spill")) if (data / "spill").exists() else 0)
            time.sleep(0.01)
        secs = time.perf_counter() - t
        if p.returncode != 0:
            raise SystemExit(f"philotes failed ({p.returncode}): {' '.join(cmd)}")
        for _ in range(100):  # the walsender reports the slot's statistics as it exits
            if not self.conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchall()[0][0]:
                break
            time.sleep(0.1)
        (spill_bytes, stream_bytes), = self.conn.execute(
            "SELECT spill_bytes, stream_bytes FROM pg_stat_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchall()
        self.drop_slot(slot)
        files = list((data / "warehouse").rglob("*.parquet"))
        sizes = [f.stat().st_size for f in files]
        shutil.rmtree(data, ignore_errors=True)
        self.sql(f"DROP PUBLICATION {pub}")
        self.sql(f"DROP TABLE {table}")
        return {"rows": rows, "streaming": stream, "seconds": secs, "rows_per_s": rows / secs, "peak_rss_mib": peak / 1024,
                "local_spill_peak_mib": spill_peak / 2**20, "source_spill_mib": spill_bytes / 2**20,
                "source_stream_mib": stream_bytes / 2**20,
                "parquet_files": len(files), "parquet_mean_mib": sum(sizes) / len(sizes) / 2**20 if sizes else 0,
                "files_per_1m_changes": len(files) / (rows / 1e6)}

    def run(self):
        a = self.args
        if a.only == "compaction":
            self.results["compaction"] = self.compaction(a.compaction_txns, a.compaction_txn_rows)
            return self.results
        if a.only == "latency":
            self.results["latency"] = self.latency(a.latency_seconds, a.latency_rate)
            self.results["latency_rest"] = self.latency_rest(a.latency_seconds, a.latency_rate)
            return self.results
        if a.only == "service":
            self.sql("CREATE TABLE stream_t (id bigint PRIMARY KEY, a int, v text)")
            self.sql("CREATE PUBLICATION bench_stream FOR TABLE stream_t")
            self.say(f"ingest and two workers: {a.stream_changes} inserts in transactions of 100, three times; one of {a.service_big_txn_rows} rows")
            self.results["service"] = self.service(a.stream_changes, big_rows=a.service_big_txn_rows)
            return self.results
        self.make_tables()
        self.say("snapshot: narrow")
        self.results["snapshot"] = {"narrow": self.snapshot("narrow", a.narrow_rows)}
        self.say("snapshot: wide")
        self.results["snapshot"]["wide"] = self.snapshot("wide", a.wide_rows)
        self.sql("DROP TABLE narrow, wide")
        self.sql("CREATE TABLE stream_t (id bigint PRIMARY KEY, a int, v text)")
        self.sql("CREATE PUBLICATION bench_stream FOR TABLE stream_t")
        self.results["startup_seconds"] = self.startup()
        self.results["streaming"] = []
        for op in ("insert", "update", "delete"):
            for size in (1, 100, 10000):
                changes = a.stream_changes if size > 1 else a.single_row_changes
                self.say(f"streaming: {op} in transactions of {size}")
                self.results["streaming"].append(self.streaming(op, size, changes))
        self.say(f"ingest and two workers: {a.stream_changes} inserts in transactions of 100, three times; one of {a.service_big_txn_rows} rows")
        self.results["service"] = self.service(a.stream_changes, big_rows=a.service_big_txn_rows)
        self.say(f"latency: {a.latency_rate} inserts/s for {a.latency_seconds} s")
        self.results["latency"] = self.latency(a.latency_seconds, a.latency_rate)
        self.say(f"latency with a REST catalog: {a.latency_rate} inserts/s for {a.latency_seconds} s")
        self.results["latency_rest"] = self.latency_rest(a.latency_seconds, a.latency_rate)
        self.say(f"maintenance: {a.flatness_commits} commits at a 20 ms flush")
        self.results["commit_flatness"] = self.commit_flatness(a.flatness_commits)
        self.say(f"maintenance: compaction of {a.compaction_txns} small files")
        self.results["compaction"] = self.compaction(a.compaction_txns, a.compaction_txn_rows)
        self.results["big_transaction"] = self.big_transaction(a.big_txn_rows, stream=True)
        self.results["big_transaction_protocol_1"] = self.big_transaction(a.big_txn_rows, stream=False)
        return self.results

    def close(self):
        self.conn.close()
        self.cluster.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def report_service(sv):
    i = sv["ingest"]
    rss = lambda d: ", ".join(f"{k} {v:.0f} MiB" for k, v in d.items())  # noqa: E731
    out = [
        f"ingest alone into the buffer: {i['changes']:,} inserts in transactions of {i['txn_rows']}: {i['changes_per_s']:,.0f} changes/s against "
        f"pg_recvlogical {i['pg_recvlogical_changes_per_s']:,.0f} (ratio {i['ratio_to_pg_recvlogical']:.2f}, includes start-up); peak RSS {i['peak_rss_mib']:.0f} MiB",
    ]
    for key in ("end_to_end", "end_to_end_two_tables"):
        e = sv[key]
        out.append(f"ingest + {e['workers']} workers end to end into Iceberg, {e['tables']} table(s): {e['changes']:,} inserts: {e['changes_per_s']:,.0f} changes/s against "
                   f"pg_recvlogical {e['pg_recvlogical_changes_per_s']:,.0f} (ratio {e['ratio_to_pg_recvlogical']:.2f}, includes start-up); peak RSS {rss(e['peak_rss_mib'])}")
    if "big_transaction" in sv:
        b = sv["big_transaction"]
        out.append(f"one transaction of {b['rows']:,} rows through ingest + 2 workers: {b['seconds']:.1f} s ({b['rows_per_s']:,.0f} rows/s); peak RSS {rss(b['peak_rss_mib'])}")
    out.append("ingest + 2 workers, commit → visible in Iceberg ({rows} rows, flush interval {flush_interval_s} s): p50 {p50_s:.2f} s, p99 {p99_s:.2f} s, max {max_s:.2f} s".format(**sv["freshness"]))
    return out


def report(r):
    if set(r) == {"machine", "binary", "service"}:
        return "\n".join([f"machine: {r['machine']['cores']} cores, {r['machine']['platform']}", "", *report_service(r["service"])])
    if set(r) == {"machine", "binary", "compaction"}:
        c = r["compaction"]
        return (f"compaction: {c['files_in']} files ({c['mb_in']:.1f} MB) in {c['seconds']:.2f} s ({c['mb_per_s']:.1f} MB/s) against pyarrow "
                f"{c['pyarrow_mb_per_s']:.1f} MB/s: ratio {c['ratio_to_pyarrow']:.2f} (whole pass {c['pass_seconds']:.2f} s, ratio {c['pass_ratio_to_pyarrow']:.2f})")
    if set(r) == {"machine", "binary", "latency", "latency_rest"}:
        return "\n".join(f"{k}: p50 {v['p50_s']:.2f} s, p99 {v['p99_s']:.2f} s, max {v['max_s']:.2f} s ({v['rows']} rows); peak RSS {v['peak_rss_mib']:.0f} MiB"
                         for k, v in r.items() if k.startswith("latency"))
    out = []
    out.append(f"machine: {r['machine']['cores']} cores, {r['machine']['platform']}")
    out.append("")
    out.append("snapshot   rows      philotes rows/s   MB/s    COPY binary rows/s   ratio   peak RSS   files (mean MiB)")
    for name, s in r["snapshot"].items():
        out.append(f"{name:<9}{s['rows']:>9}   {s['philotes_rows_per_s']:>14,.0f}   {s['philotes_mb_per_s']:>5.1f}   {s['copy_rows_per_s']:>18,.0f}   {s['ratio_to_copy']:>5.2f}   {s['peak_rss_mib']:>5.0f} MiB   {s['parquet_files']} ({s['parquet_mean_mib']:.1f})")
    out.append("")
    out.append("verify     rows      verify rows/s     COPY binary rows/s   ratio   peak RSS   result   total s (incl. waiting for run)")
    for name, s in r["snapshot"].items():
        v = s["verify"]
        out.append(f"{name:<9}{s['rows']:>9}   {v['rows_per_s']:>14,.0f}   {s['copy_rows_per_s']:>18,.0f}   {v['ratio_to_copy']:>5.2f}   {v['peak_rss_mib']:>5.0f} MiB   {v['status']:<6}   {v['seconds']:.1f}")
    out.append("")
    out.append(f"streaming (each run includes {r['startup_seconds']:.2f} s of start-up)")
    out.append("op       txn rows   changes   philotes changes/s   pg_recvlogical changes/s   ratio   peak RSS   files")
    for s in r["streaming"]:
        out.append(f"{s['op']:<8}{s['txn_rows']:>9}{s['changes']:>10}   {s['philotes_changes_per_s']:>18,.0f}   {s['pg_recvlogical_changes_per_s']:>24,.0f}   {s['ratio_to_pg_recvlogical']:>5.2f}   {s['peak_rss_mib']:>5.0f} MiB   {s['parquet_files']}")
    out.append("")
    out.extend(report_service(r["service"]))
    lat = r["latency"]
    out.append("")
    out.append(f"latency (commit → visible in Iceberg, flush interval {lat['flush_interval_s']} s, {lat['rows']} rows): p50 {lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s, max {lat['max_s']:.2f} s; peak RSS {lat['peak_rss_mib']:.0f} MiB")
    if "latency_rest" in r:
        lr = r["latency_rest"]
        out.append(f"latency with a REST catalog (lakana-server; {lr['rows']} rows): p50 {lr['p50_s']:.2f} s, p99 {lr['p99_s']:.2f} s, max {lr['max_s']:.2f} s; peak RSS {lr['peak_rss_mib']:.0f} MiB")
    f = r["commit_flatness"]
    out.append(f"commits at a {f['flush_interval_ms']} ms flush with maintenance: median ms between commits near commit 100 {f['median_ms_between_commits_near_100']}, "
               f"at commit {f['commits']:,} {f['median_ms_between_commits_at_end']} (ratio {f['ratio_end_to_start']:.2f}); largest metadata file {f['largest_metadata_file_kib']:.0f} KiB, "
               f"{f['parquet_files_at_end']} Parquet files at the end")
    c = r["compaction"]
    out.append(f"compaction: {c['files_in']} files ({c['mb_in']:.1f} MB, {c['rows']:,} rows) into {c['files_out']} ({c['mb_out']:.1f} MB) in {c['seconds']:.1f} s: "
               f"{c['mb_per_s']:.1f} MB/s against pyarrow rewriting the same files at {c['pyarrow_mb_per_s']:.1f} MB/s (ratio {c['ratio_to_pyarrow']:.2f}; "
               f"the whole pass {c['pass_seconds']:.1f} s, ratio {c['pass_ratio_to_pyarrow']:.2f})")
    for key in ("big_transaction", "big_transaction_protocol_1"):
        b = r[key]
        how = "streamed while decoded (protocol 2)" if b["streaming"] else "sent at commit (protocol 1)"
        out.append(f"one transaction of {b['rows']:,} rows, {how}: {b['seconds']:.1f} s ({b['rows_per_s']:,.0f} rows/s), peak RSS {b['peak_rss_mib']:.0f} MiB, "
                   f"local spill peak {b['local_spill_peak_mib']:.0f} MiB, source spilled {b['source_spill_mib']:.0f} MiB / streamed {b['source_stream_mib']:.0f} MiB, "
                   f"{b['parquet_files']} files of {b['parquet_mean_mib']:.1f} MiB mean ({b['files_per_1m_changes']:.1f} per 1M changes)")
    return "\n".join(out)


def main():
    # Runs here are one after the other, but a dev machine may have Prometheus on 9090.
    os.environ.setdefault("PHILOTES_METRICS_ADDR", "127.0.0.1:0")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "philotes"))
    p.add_argument("--narrow-rows", type=int, default=2_000_000)
    p.add_argument("--wide-rows", type=int, default=200_000)
    p.add_argument("--stream-changes", type=int, default=200_000, help="changes per streaming case (100- and 10,000-row transactions)")
    p.add_argument("--single-row-changes", type=int, default=20_000, help="changes per streaming case in 1-row transactions")
    p.add_argument("--latency-seconds", type=int, default=20)
    p.add_argument("--latency-rate", type=int, default=200, help="inserts per second during the latency run")
    p.add_argument("--flush-seconds", type=float, default=1.0, help="the default flush interval (for the report)")
    p.add_argument("--flatness-commits", type=int, default=10_000, help="commits of the commit-cost run (maintenance on)")
    p.add_argument("--compaction-txns", type=int, default=400, help="small files to compact")
    p.add_argument("--compaction-txn-rows", type=int, default=5000)
    p.add_argument("--big-txn-rows", type=int, default=10_000_000)
    p.add_argument("--service-big-txn-rows", type=int, default=2_000_000, help="rows of the one transaction through ingest and workers")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--only", choices=["service", "latency", "compaction"], default=None,
                   help="run only this part (service: ingest and two workers; latency: freshness with the SQL and the REST catalog; compaction)")
    args = p.parse_args()
    b = Bench(args)
    try:
        r = b.run()
    finally:
        b.close()
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
        print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
