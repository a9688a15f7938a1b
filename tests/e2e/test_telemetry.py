"""End-to-end: what `philotes run` tells Prometheus and Kubernetes, scraped by a real Prometheus
(Debian's package), and a run that outlives restarts of its source."""
import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest

from compare import assert_same
from conftest import BINARY, Source, run_philotes
from pgcluster import Cluster, free_port


def http_get(url):
    """(status, body) of a GET; a 4xx/5xx is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what, cond, timeout=120, every=0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def sample(text, name, **labels):
    """The value of `name{labels}` in Prometheus text output (None when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def ready(base):
    """(status, JSON body) of /readyz; (0, {}) while nothing listens yet."""
    try:
        code, body = http_get(f"{base}/readyz")
    except OSError:
        return (0, {})
    return (code, json.loads(body))


class Running:
    """`philotes run` in the background, its log in a file."""

    def __init__(self, cmd, log):
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"philotes exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        return True

    def readyz(self, base, want):
        """Wait until /readyz answers `want`; its JSON body."""
        def check():
            r = ready(base)
            return r[1] if self.alive() and r[0] == want else None
        return wait_for(f"/readyz {want}", check, timeout=120)

    def stop(self):
        """SIGTERM; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


class Prometheus:
    """A real Prometheus scraping `targets` every second."""

    def __init__(self, targets):
        exe = shutil.which("prometheus")
        if not exe:
            pytest.fail("prometheus is not installed: run deployments/scripts/test-env.sh")
        self.dir = Path(tempfile.mkdtemp(prefix="philotes-prom-"))
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: philotes\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "w"),
        )
        wait_for("prometheus to start", lambda: self._up(), timeout=60)

    def _up(self):
        try:
            return http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, q):
        """The instant vector of `q`: a list of (labels, value)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        code, body = http_get(url)
        assert code == 200, body
        res = json.loads(body)["data"]["result"]
        return [(r["metric"], float(r["value"][1])) for r in res]

    def targets_up(self):
        code, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        return [t["health"] for t in json.loads(body)["data"]["activeTargets"]]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_run_and_health_says_what_it_needs(source, tmp_path):
    source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, note text)")
    source.sql("INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = Running(source.philotes_cmd("--metrics-addr", f"127.0.0.1:{port}", "--flush-interval", "200ms",
                                      "--maintenance-interval", "1s"),
                  tmp_path / "run.log")
    prom = None
    try:
        body = run.readyz(base, 200)
        assert body == {"status": "ready", "checks": {"lake": "ok", "source": "ok"}}, body
        assert http_get(f"{base}/healthz") == (200, '{"status":"alive"}')
        # The probe images without a shell use.
        for args in ([], ["--ready"]):
            out = subprocess.run([str(BINARY), "healthcheck", "--metrics-addr", f"0.0.0.0:{port}", *args],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stdout + out.stderr
        source.sql("INSERT INTO orders SELECT g, 'm' || g FROM generate_series(1001, 1500) g")
        source.sql("UPDATE orders SET note = 'u' WHERE id <= 100")

        def committed():
            text = http_get(f"{base}/metrics")[1]
            v = sample(text, "philotes_committed_rows_total", table="public.orders")
            return text if v is not None and v >= 1600 else None
        text = wait_for("1,600 committed rows in /metrics", committed)
        assert sample(text, "philotes_snapshot_copied_rows_total", table="public.orders") == 1000
        assert sample(text, "philotes_ingested_rows_total", table="public.orders") == 1600
        assert sample(text, "philotes_snapshot_in_progress", table="public.orders") == 0
        assert sample(text, "philotes_table_stopped", table="public.orders") == 0
        assert sample(text, "philotes_commits_total", table="public.orders") >= 2
        assert sample(text, "philotes_commit_duration_seconds_count", table="public.orders") >= 2
        assert sample(text, "philotes_source_connected", pipeline="philotes") == 1

        def maintained():
            text = http_get(f"{base}/metrics")[1]
            v = sample(text, "philotes_maintenance_passes_total", table="public.orders__changelog", outcome="ok")
            return text if v and v >= 1 else None
        text = wait_for("a maintenance pass in /metrics", maintained)
        assert sample(text, "philotes_maintenance_duration_seconds_count", table="public.orders__changelog") >= 1

        prom = Prometheus([f"127.0.0.1:{port}"])
        wait_for("the target to be up", lambda: prom.targets_up() == ["up"], timeout=60)
        got = wait_for("philotes_committed_rows_total in Prometheus",
                       lambda: prom.query('philotes_committed_rows_total{table="public.orders"}'))
        ((labels, value),) = got
        assert labels["pipeline"] == "philotes" and labels["job"] == "philotes", labels
        assert value >= 1600
        # What KEDA scales workers on, and the lag, as Prometheus has them.
        (((labels, depth),)) = wait_for("philotes_buffer_depth", lambda: prom.query("philotes_buffer_depth"))
        assert labels["pipeline"] == "philotes" and depth >= 0
        (((_, lag),)) = wait_for("philotes_replication_lag_bytes",
                                 lambda: prom.query("philotes_replication_lag_bytes"))
        assert lag >= 0
        wait_for("philotes_replication_lag_seconds", lambda: prom.query("philotes_replication_lag_seconds"))
        (((_, reserved),)) = wait_for(
            "the slot's wal_status", lambda: prom.query('philotes_slot_wal_status{status="reserved"}'))
        assert reserved == 1
        (((_, retained),)) = wait_for("retained WAL", lambda: prom.query("philotes_slot_retained_wal_bytes"))
        assert retained > 0
        rate = wait_for("a commit rate", lambda: prom.query(
            'sum(rate(philotes_commits_total{table="public.orders"}[1m]))'))
        assert rate[0][1] >= 0
    finally:
        if prom:
            prom.stop()
        code = run.stop()
    assert code == 0, run.log.read_text()[-3000:]


def test_metrics_addr_taken_is_a_clear_error(source, tmp_path):
    source.sql("CREATE TABLE t (id int PRIMARY KEY)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err, _ = run_philotes(source.philotes_cmd("--until-caught-up", "--metrics-addr", f"127.0.0.1:{port}"),
                                    check=False)
    assert code == 2, err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--metrics-addr" in err, err
    # Nothing was started: no slot was created.
    assert source.sql("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]
    # Nothing serves there: the health probe fails, saying where it looked.
    out = subprocess.run([str(BINARY), "healthcheck", "--metrics-addr", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and f"cannot connect to 127.0.0.1:{port}" in out.stderr, out.stderr


def writer(url, stop, stats):
    """Upserts and deletes until `stop`, riding out the source's restarts."""
    rnd = random.Random(11)
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
            k = rnd.randint(1, 600)
            if rnd.random() < 0.75:
                conn.execute("INSERT INTO busy VALUES (%s, 1, repeat('x', 300)) "
                             "ON CONFLICT (id) DO UPDATE SET v = busy.v + 1", (k,))
            else:
                conn.execute("DELETE FROM busy WHERE id = %s", (k,))
            stats["ok"] += 1
        except psycopg.OperationalError:
            stats["failed"] += 1
            conn = None
            time.sleep(0.2)
        time.sleep(0.003)
    if conn is not None:
        conn.close()


def test_run_stays_up_through_source_restarts_and_loses_nothing(tmp_path):
    """The source restarted twice under writes (once right after a large transaction that
    arrives in blocks while it runs): `run` stays up, `/readyz` says the source is away and then
    back, and the lake equals the source with no change twice."""
    cluster = Cluster(settings={"logical_decoding_work_mem": "64kB"})
    src = Source(cluster, "restarts", tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    stats = {"ok": 0, "failed": 0}
    run = None
    try:
        src.sql("CREATE TABLE busy (id bigint PRIMARY KEY, v bigint, pad text)")
        src.sql("INSERT INTO busy SELECT g, 0, 'p' FROM generate_series(1, 600) g")
        run = Running(src.philotes_cmd("--metrics-addr", f"127.0.0.1:{port}", "--flush-interval", "300ms"),
                      tmp_path / "run.log")
        run.readyz(base, 200)
        w = threading.Thread(target=writer, args=(src.url, stop, stats))
        w.start()
        for round_ in range(2):
            time.sleep(3)
            if round_ == 1:
                # A transaction far over logical_decoding_work_mem, then the restart at once:
                # it may be cut off while it streams in.
                with psycopg.connect(src.url, autocommit=True) as c:
                    c.execute("INSERT INTO busy SELECT g, 7, repeat('L', 200) FROM generate_series(10001, 40000) g")
            cluster.stop_server()
            body = run.readyz(base, 503)
            assert "reconnecting" in body["checks"]["source"], body
            assert body["checks"]["lake"] == "ok", body
            text = http_get(f"{base}/metrics")[1]
            assert sample(text, "philotes_source_connected") == 0
            out = subprocess.run([str(BINARY), "healthcheck", "--ready", "--metrics-addr", f"127.0.0.1:{port}"],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 1 and "reconnecting" in out.stdout, out.stdout + out.stderr
            time.sleep(2)
            assert run.alive()
            cluster.start_server()
            run.readyz(base, 200)
        time.sleep(2)
        stop.set()
        w.join()
        assert stats["ok"] > 100, stats
        text = http_get(f"{base}/metrics")[1]
        assert sample(text, "philotes_retries_total", operation="source", kind="source") >= 2, text
        # `verify` against the running pipeline: it waits for run to commit up to now.
        out = subprocess.run(
            [str(BINARY), "verify", "--source", src.url, "--data-dir", str(src.data_dir), "--format", "json"],
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert run.alive()
        assert run.stop() == 0, run.log.read_text()[-3000:]
        log = run.log.read_text()
        run = None
        src.conn = psycopg.connect(src.url, autocommit=True)
        lake = src.lake()
        ident = "public.busy__changelog"
        n = assert_same(src, lake, ident, "SELECT * FROM busy", ["id"])
        assert n > 30000
        keys = [(r["_cdc_lsn"], r["_cdc_seq"]) for r in lake.changelog(ident) if r["_cdc_op"] != "S"]
        assert len(keys) == len(set(keys)), "a change is in the lake twice"
        assert log.count("reconnected to the source") == 2, log[-3000:]
    finally:
        stop.set()
        if run is not None:
            run.proc.kill()
            run.proc.wait()
        cluster.stop()


def test_sigterm_past_the_shutdown_timeout_exits_at_once_and_loses_nothing(source, tmp_path):
    """SIGTERM during an initial copy with a 1 ms shutdown timeout: the process does not wait for
    the copy, exits 1 saying why, and the next run copies and streams everything."""
    source.sql("CREATE TABLE big (id bigint PRIMARY KEY, pad text)")
    source.sql("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 100000) g")
    run = Running(source.philotes_cmd("--shutdown-timeout", "1ms"), tmp_path / "run.log")
    wait_for("the copy to start", lambda: run.alive() and "exported a consistent snapshot" in run.log.read_text())
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) == 1
    log = run.log.read_text()
    assert "not stopped within shutdown_timeout" in log and "the next start resumes" in log, log[-2000:]
    source.sql("UPDATE big SET pad = 'changed' WHERE id % 1000 = 0")
    source.run()
    assert assert_same(source, source.lake(), "public.big__changelog", "SELECT * FROM big", ["id"]) == 100000


def test_a_second_run_on_the_same_slot_is_refused_and_the_first_goes_on(source, tmp_path):
    source.sql("CREATE TABLE t (id int PRIMARY KEY)")
    port = free_port()
    first = Running(source.philotes_cmd("--metrics-addr", f"127.0.0.1:{port}", "--flush-interval", "200ms"),
                    tmp_path / "first.log")
    try:
        first.readyz(f"http://127.0.0.1:{port}", 200)
        second = [str(BINARY), "run", "--source", source.url, "--data-dir", str(tmp_path / "second"),
                  "--until-caught-up"]
        code, err, _ = run_philotes(second, check=False)
        assert code != 0, err
        assert "another Philotes process is replicating slot philotes (its source connection: backend pid" in err, err
        assert "give this pipeline its own --slot" in err, err
        assert not (tmp_path / "second" / "catalog.db").exists()
        source.sql("INSERT INTO t VALUES (1)")
        out = subprocess.run([str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert first.alive()
    finally:
        assert first.stop() == 0
    # Its lease ended with it.
    source.sql("INSERT INTO t VALUES (2)")
    source.run()
    assert assert_same(source, source.lake(), "public.t__changelog", "SELECT * FROM t", ["id"]) == 2


def test_run_reconnects_when_only_its_walsender_is_terminated(source, tmp_path):
    """The replication connection alone breaks (its walsender terminated by an administrator):
    run keeps its lease on the SQL connection it still has, streams again, loses nothing."""
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v int)")
    source.sql("INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = Running(source.philotes_cmd("--metrics-addr", f"127.0.0.1:{port}", "--flush-interval", "200ms"),
                  tmp_path / "run.log")
    try:
        run.readyz(base, 200)
        for i in range(2):
            (pid,) = wait_for("the walsender", lambda: source.sql(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'philotes' AND active")[0]
                if source.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'philotes' AND active")
                else None)
            source.sql("SELECT pg_terminate_backend(%s)", (pid,))
            source.sql("UPDATE t SET v = v + 1 WHERE id <= 50")
            wait_for("a reconnect", lambda: run.log.read_text().count("reconnected to the source") == i + 1)
        out = subprocess.run([str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert run.alive()
        assert "another Philotes process" not in run.log.read_text()
    finally:
        assert run.stop() == 0, run.log.read_text()[-3000:]
