"""End-to-end: the production shape — `philotes ingest` into a PostgreSQL buffer, a pool of
`philotes worker`s into Iceberg — against real PostgreSQL (source and control database), read
back with pyiceberg, through kill -9 of workers and of the ingest, with a standby ingest."""
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter

import psycopg
import pytest

from compare import assert_same
from conftest import BINARY, stop_roles
from test_s3 import s3  # noqa: F401 - the fixture
from test_telemetry import wait_for


class Role:
    """A philotes role in the background, its log in a file (appended across restarts)."""

    def __init__(self, args, log, log_filter=None):
        self.args = args
        self.log = log
        self.log_filter = log_filter or os.environ.get("PHILOTES_LOG", "info")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [str(BINARY), *self.args], stdout=subprocess.DEVNULL, stderr=open(self.log, "a"),
            env={**os.environ, "PHILOTES_LOG": self.log_filter},
        )

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def tail(self):
        return self.log.read_text()[-4000:]


def control_db(cluster, name):
    with psycopg.connect(cluster.url(), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    return cluster.url(name)


def ctl_value(ctl, query):
    """The first column of the first row of `query` on the control database (None before the
    schema exists)."""
    try:
        with psycopg.connect(ctl) as c:
            row = c.execute(query).fetchone()
            return row[0] if row else None
    except psycopg.errors.UndefinedTable:
        return None


def copied_tables(ctl):
    return ctl_value(ctl, "SELECT count(*) FROM philotes.tables WHERE snapshot_lsn IS NOT NULL") or 0


def lake_equals_source(source, lake, tables):
    try:
        for t, key in tables:
            assert_same(source, lake, f"public.{t}__changelog", f"SELECT * FROM {t}", key)
        return True
    except (AssertionError, Exception) as e:  # not there yet (or a table not created yet)
        lake_equals_source.last = str(e)[:500]
        return False


def no_duplicates(lake, ident):
    seen = Counter((r["_cdc_lsn"], r["_cdc_seq"]) for r in lake.changelog(ident))
    dup = [k for k, n in seen.items() if n > 1]
    assert not dup, f"{ident}: {len(dup)} (lsn, seq) pairs written twice, e.g. {dup[:3]}"


def test_ingest_and_workers_replicate_exactly_once_through_kill_9(source, cluster, tmp_path):
    source.sql("CREATE TABLE a (id int PRIMARY KEY, v text, n int)")
    source.sql("CREATE TABLE b (id int PRIMARY KEY, v text)")
    source.sql("CREATE TABLE c (id int PRIMARY KEY, big text, n int)")
    source.sql("INSERT INTO a SELECT g, 'a' || g, g FROM generate_series(1, 3000) g")
    source.sql("INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 3000) g")
    # TOAST: values far over 2 kB, left unchanged by most updates.
    source.sql("INSERT INTO c SELECT g, repeat(md5(g::text), 200), 0 FROM generate_series(1, 300) g")
    ctl = control_db(cluster, f"{source.name}_ctl")
    common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
              "--flush-interval", "300ms"]
    ingest = Role(["ingest", *common], tmp_path / "ingest.log")
    roles = [ingest]
    try:
        wait_for("ingest to copy the tables", lambda: copied_tables(ctl) == 3, timeout=120)
        standby = Role(["ingest", *common], tmp_path / "standby.log")
        roles.append(standby)
        wait_for("the standby", lambda: "standing by" in standby.log.read_text(), timeout=60)
        workers = [Role(["worker", "--worker-id", f"w{i}", *common], tmp_path / f"w{i}.log") for i in range(3)]
        roles.extend(workers)
        check_service(source, ctl, tmp_path, ingest, standby, workers)
    finally:
        for r in roles:
            if r.alive():
                r.kill()


def check_service(source, ctl, tmp_path, ingest, standby, workers):
    stop = threading.Event()
    errors = []

    def workload():
        rnd = random.Random(7)
        try:
            with psycopg.connect(source.url, autocommit=True) as c:
                next_id = 10_000
                step = 0
                while not stop.is_set():
                    step += 1
                    op = rnd.random()
                    if op < 0.35:
                        next_id += 1
                        c.execute("INSERT INTO a VALUES (%s, %s, %s)", (next_id, f"new{next_id}", step))
                    elif op < 0.55:
                        c.execute("UPDATE a SET n = n + 1 WHERE id = %s", (rnd.randint(1, 3000),))
                    elif op < 0.65:
                        c.execute("DELETE FROM a WHERE id = %s", (rnd.randint(1, 3000),))
                    elif op < 0.75:
                        # A key change.
                        k = rnd.randint(1, 3000)
                        c.execute("UPDATE b SET id = id + 100000, v = v || 'k' WHERE id = %s", (k,))
                    elif op < 0.9:
                        c.execute("UPDATE c SET n = n + 1 WHERE id = %s", (rnd.randint(1, 300),))
                    else:
                        with c.transaction():
                            for _ in range(5):
                                next_id += 1
                                c.execute("INSERT INTO b VALUES (%s, 'txn')", (next_id,))
                    if step == 400:
                        c.execute("ALTER TABLE a ADD COLUMN extra int")
                        c.execute("UPDATE a SET extra = id WHERE id % 50 = 0")
                    if step == 800:
                        # A large transaction (streamed while it runs, spilled on both sides).
                        c.execute("INSERT INTO b SELECT g, 'large' FROM generate_series(500000, 530000) g")
                    time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    writer = threading.Thread(target=workload)
    writer.start()
    try:
        time.sleep(6)
        rnd = random.Random(11)
        for round_ in range(4):
            w = rnd.choice(workers)
            w.kill()
            time.sleep(1.5)
            w.start()
            time.sleep(2)
            if round_ == 1:
                # The ingest dies; the standby takes over, and a new standby waits.
                ingest.kill()
                wait_for("the standby to take over", lambda: "took over the pipeline" in standby.log.read_text(),
                         timeout=60)
                ingest, standby = standby, ingest
                standby.start()
                time.sleep(2)
        time.sleep(4)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not errors, errors
    for r in [ingest, *workers]:
        assert r.alive(), f"{r.args[0]} exited {r.proc.returncode}: {r.tail()}"

    lake = source.lake()
    tables = [("a", ["id"]), ("b", ["id"]), ("c", ["id"])]
    lake_equals_source.last = ""
    try:
        wait_for("the lake to equal the source", lambda: lake_equals_source(source, lake, tables), timeout=240, every=2)
    except AssertionError:
        raise AssertionError(f"{lake_equals_source.last}\ningest: {ingest.tail()}\nw0: {workers[0].tail()}")
    for t, _ in tables:
        no_duplicates(lake, f"public.{t}__changelog")
    with psycopg.connect(ctl) as c:
        wait_for("the buffer to drain", lambda: c.execute("SELECT count(*) FROM philotes.changes").fetchone()[0] == 0,
                 timeout=60, every=0.5)
        tables_row = c.execute("SELECT name, stopped, changes_now FROM philotes.tables ORDER BY name").fetchall()
    assert [n for n, _, _ in tables_row] == ["public.a", "public.b", "public.c"], tables_row
    assert all(s is None for _, s, _ in tables_row), tables_row
    # The counters philotes_buffer_depth reads stayed exact through every kill -9.
    assert all(now == 0 for _, _, now in tables_row), tables_row
    for r in [ingest, standby, *workers]:
        assert r.stop() == 0, r.tail()


def dlq(ctl, *args):
    return subprocess.run([str(BINARY), "dlq", *args, "--buffer-url", ctl], capture_output=True, text=True, timeout=60)


def test_worker_dead_letter_stops_its_table_and_dlq_skip_lets_it_go_on(source, cluster, tmp_path):
    source.sql("CREATE TABLE prices (id int PRIMARY KEY, p numeric(6,2))")
    source.sql("CREATE TABLE other (id int PRIMARY KEY)")
    source.sql("INSERT INTO prices VALUES (1, 1.50)")
    ctl = control_db(cluster, f"{source.name}_ctl")
    common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
              "--flush-interval", "200ms"]
    ingest = Role(["ingest", *common], tmp_path / "ingest.log")
    worker = Role(["worker", "--worker-id", "w1", *common], tmp_path / "w1.log")
    try:
        wait_for("the copies", lambda: copied_tables(ctl) == 2, timeout=120)
        lake = source.lake()
        wait_for("the copy", lambda: lake_equals_source(source, lake, [("prices", ["id"])]), timeout=120, every=0.5)
        with source.conn.transaction():
            source.sql("INSERT INTO prices VALUES (2, 2.00)")
            source.sql("INSERT INTO prices VALUES (3, 'NaN')")
            source.sql("INSERT INTO prices VALUES (4, 4.00)")
        source.sql("INSERT INTO other VALUES (1)")
        # The table stops at the bad change; the other goes on.
        wait_for("the other table", lambda: lake_equals_source(source, lake, [("other", ["id"])]), timeout=120, every=0.5)

        def letters(*extra):
            out = dlq(ctl, "list", "--format", "json", *extra)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)["dead_letters"]
        (d,) = wait_for("the dead letter", letters, timeout=60, every=0.5)
        assert (d["table"], d["op"], d["column"], d["state"]) == ("public.prices", "I", "p", "open"), d
        assert d["row"] == {"id": "3", "p": "NaN"}, d
        with psycopg.connect(ctl) as c:
            (stopped,) = c.execute("SELECT stopped FROM philotes.tables WHERE name = 'public.prices'").fetchone()
        assert stopped and "cannot convert a value" in stopped and "column: p" in stopped, stopped
        # Nothing of the stopped transaction is in the lake, and what came before is.
        assert {r["id"] for r in lake.current_state("public.prices__changelog", ["id"]).values()} == {1}

        out = dlq(ctl, "skip", str(d["id"]), "--note", "NaN from the old importer")
        assert out.returncode == 0 and "will be left out of the lake" in out.stdout, out.stderr

        def ids():
            return {k[0]: r["p"] for k, r in lake.current_state("public.prices__changelog", ["id"]).items()}
        wait_for("the table to go on", lambda: set(ids()) == {1, 2, 4}, timeout=120, every=0.5)
        assert "as decided with `philotes dlq skip`" in worker.log.read_text()
        source.sql("UPDATE prices SET p = 5 WHERE id = 4")
        wait_for("a later change", lambda: float(ids()[4]) == 5.0, timeout=120, every=0.5)
        assert letters() == []
        (done,) = letters("--all")
        assert done["state"] == "skipped" and done["note"] == "NaN from the old importer", done
    finally:
        assert ingest.stop() == 0, ingest.tail()
        assert worker.stop() == 0, worker.tail()


def test_backpressure_holds_the_buffer_while_no_worker_runs(source, cluster, tmp_path):
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    ctl = control_db(cluster, f"{source.name}_ctl")
    common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
              "--flush-interval", "200ms"]
    ingest = Role(["ingest", "--buffer-high-rows", "2000", "--buffer-low-rows", "500", *common], tmp_path / "ingest.log")
    try:
        with psycopg.connect(ctl) as c:
            depth = lambda: c.execute("SELECT count(*) FROM philotes.changes").fetchone()[0]  # noqa: E731
            wait_for("ingest to stream", lambda: copied_tables(ctl) == 1, timeout=120)
            # The source drops a replication connection that says nothing for 2 s: holding the
            # stream must still answer it.
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute("ALTER SYSTEM SET wal_sender_timeout = '2s'")
                admin.execute("SELECT pg_reload_conf()")
            try:
                # No worker runs: 40 transactions of 250 rows each, 10,000 changes.
                for i in range(40):
                    source.sql(f"INSERT INTO t SELECT g, 'x' FROM generate_series({i * 250 + 1}, {(i + 1) * 250}) g")
                    time.sleep(0.15)
                wait_for("ingest to pause", lambda: "the buffer is full" in ingest.log.read_text(), timeout=60)
                time.sleep(8)
                held = depth()
                # It paused at the high mark (plus what arrived within its one-second look).
                assert 2000 <= held < 10_000, held
                assert "lost the source" not in ingest.log.read_text(), ingest.tail()
            finally:
                with psycopg.connect(cluster.url(), autocommit=True) as admin:
                    admin.execute("ALTER SYSTEM RESET wal_sender_timeout")
                    admin.execute("SELECT pg_reload_conf()")
            assert ingest.alive(), ingest.tail()
            worker = Role(["worker", "--worker-id", "w1", *common], tmp_path / "w1.log")
            try:
                wait_for("everything to land", lambda: lake_equals_source(source, source.lake(), [("t", ["id"])]),
                         timeout=180, every=1)
                assert "reads the slot again" in ingest.log.read_text()
                wait_for("the buffer to drain", lambda: depth() == 0, timeout=60)
            finally:
                assert worker.stop() == 0, worker.tail()
    finally:
        assert ingest.stop() == 0, ingest.tail()


def test_roles_refuse_bad_setups_with_the_way_out(source, cluster, tmp_path):
    source.sql("CREATE TABLE t (id int PRIMARY KEY)")
    ctl = control_db(cluster, f"{source.name}_ctl")

    def role(*args):
        return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=120)
    # No control database, an unreachable one: a clear error and a non-zero exit.
    out = role("worker", "--worker-id", "w1", "--data-dir", str(source.data_dir))
    assert out.returncode == 2 and "set --buffer-url or PHILOTES_BUFFER_URL" in out.stderr, out.stderr
    out = role("ingest", "--source", source.url, "--data-dir", str(source.data_dir),
               "--buffer-url", "postgres://x:hunter2@127.0.0.1:1/ctl?sslmode=disable")
    assert out.returncode != 0 and "cannot connect to the control database" in out.stderr, out.stderr
    assert "hunter2" not in out.stderr
    # A worker before any ingest (started together, as Kubernetes does): it waits, not ready.
    early = Role(["worker", "--worker-id", "w1", "--data-dir", str(source.data_dir), "--buffer-url", ctl,
                  "--metrics-addr", "127.0.0.1:0"], tmp_path / "early.log")
    wait_for("the worker to wait", lambda: "waiting for `philotes ingest`" in early.log.read_text(), timeout=60)
    assert early.alive()
    assert early.stop() == 0, early.tail()
    common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl]
    ingest = Role(["ingest", *common], tmp_path / "ingest.log")
    try:
        wait_for("ingest to register", lambda: ctl_value(
            ctl, "SELECT count(*) FROM philotes.pipelines WHERE lake IS NOT NULL") == 1, timeout=120)
        # A worker pointed at another lake is refused before it writes anything.
        other = tmp_path / "other-lake"
        out = role("worker", "--worker-id", "w1", "--data-dir", str(other), "--buffer-url", ctl)
        assert out.returncode == 2 and "give every role (ingest, worker) the same" in out.stderr, out.stderr
        assert not (other / "warehouse").exists()
        # A second pipeline's ingest may not claim this slot's buffer from another source.
        with psycopg.connect(cluster.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{source.name}_2"')
        try:
            out = role("ingest", "--source", cluster.url(f"{source.name}_2"), "--data-dir", str(tmp_path / "d2"),
                       "--buffer-url", ctl)
            assert out.returncode == 2 and "belongs to source" in out.stderr, out.stderr
        finally:
            with psycopg.connect(cluster.url(), autocommit=True) as c:
                c.execute(f'DROP DATABASE "{source.name}_2" WITH (FORCE)')
        assert ingest.alive(), ingest.tail()
        wait_for("the copy", lambda: copied_tables(ctl) == 1, timeout=120)
    finally:
        assert ingest.stop() == 0, ingest.tail()
    # `run` on tables ingest writes would miss what waits in the buffer: it leaves them alone.
    out = role("run", "--until-caught-up", "--source", source.url, "--data-dir", str(source.data_dir))
    assert out.returncode == 1 and "written by `philotes ingest` and `philotes worker`" in out.stderr, out.stderr


def test_prometheus_scrapes_ingest_and_a_worker_verify_checks_them_and_readyz_follows_the_buffer(source, tmp_path):
    from pgcluster import Cluster, free_port
    from test_telemetry import Prometheus, ready
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g")
    # The control database on a server of its own, so the test can stop it.
    control = Cluster()
    roles, prom = [], None
    try:
        ctl = control.url()
        common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
                  "--flush-interval", "200ms"]
        pi, pw = free_port(), free_port()
        ingest = Role(["ingest", "--metrics-addr", f"127.0.0.1:{pi}", *common], tmp_path / "ingest.log")
        worker = Role(["worker", "--worker-id", "w1", "--metrics-addr", f"127.0.0.1:{pw}", *common],
                      tmp_path / "w1.log")
        roles = [ingest, worker]
        wait_for("the copy", lambda: copied_tables(ctl) == 1, timeout=120)
        lake = source.lake()
        source.sql("INSERT INTO t SELECT g, 'w' || g FROM generate_series(501, 1500) g")
        source.sql("UPDATE t SET v = 'u' WHERE id <= 100")
        wait_for("the stream", lambda: lake_equals_source(source, lake, [("t", ["id"])]), timeout=120, every=0.5)

        base_w = f"http://127.0.0.1:{pw}"
        code, body = ready(base_w)
        assert code == 200 and body["checks"] == {"buffer": "ok", "lake": "ok"}, body
        code, body = ready(f"http://127.0.0.1:{pi}")
        assert code == 200 and body["checks"] == {"buffer": "ok", "lake": "ok", "source": "ok"}, body

        prom = Prometheus([f"127.0.0.1:{pi}", f"127.0.0.1:{pw}"])
        wait_for("both targets up", lambda: prom.targets_up() == ["up", "up"], timeout=60)
        # What KEDA scales workers on: one series per role, the same pipeline.
        depth = wait_for("philotes_buffer_depth of both roles",
                         lambda: (r := prom.query("philotes_buffer_depth")) and len(r) == 2 and r)
        assert {labels["pipeline"] for labels, _ in depth} == {"philotes"}, depth
        wait_for("a drained buffer", lambda: prom.query("sum(philotes_buffer_depth)") == [({}, 0.0)], timeout=60)
        (((_, lag),)) = wait_for("the lag", lambda: prom.query("philotes_replication_lag_bytes"))
        assert lag >= 0
        (((_, leases),)) = wait_for("the worker's leases", lambda: prom.query("philotes_worker_leases"))
        assert leases == 1
        committed = wait_for("committed rows", lambda: prom.query(
            'philotes_committed_rows_total{table="public.t"}'))
        assert committed[0][1] >= 1100, committed

        # verify, with the same flags plus --buffer-url, while both run.
        out = subprocess.run([str(BINARY), "verify", *common], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "public.t" in out.stdout and "1500" in out.stdout, out.stdout

        # The control database goes away: the worker says so on /readyz and comes back with it.
        control.stop_server()
        wait_for("/readyz 503", lambda: (r := ready(base_w))[0] == 503 and "buffer" in r[1]["checks"]
                 and r[1]["checks"]["buffer"] != "ok", timeout=60)
        assert worker.alive(), worker.tail()
        # Changes made meanwhile wait in the slot (ingest cannot buffer them).
        source.sql("INSERT INTO t SELECT g, 'o' || g FROM generate_series(2001, 2100) g")
        time.sleep(3)
        control.start_server()
        wait_for("/readyz 200", lambda: ready(base_w)[0] == 200, timeout=120)
        source.sql("INSERT INTO t SELECT g, 'x' || g FROM generate_series(1501, 1600) g")
        wait_for("the stream again", lambda: lake_equals_source(source, lake, [("t", ["id"])]), timeout=180, every=0.5)
        # Both outlived the outage.
        assert ingest.alive(), ingest.tail()
        assert worker.alive(), worker.tail()
        no_duplicates(lake, "public.t__changelog")
    finally:
        if prom:
            prom.stop()
        stop_roles(roles)
        control.stop()


def assert_not_answering(endpoint):
    """The object store is really down: a request to it gets no answer."""
    import boto3
    import botocore.config
    import botocore.exceptions
    probe = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="philotes", aws_secret_access_key="s3cr3t-key",
                         region_name="eu-central-1", config=botocore.config.Config(
                             connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        probe.head_bucket(Bucket="lake")


def buffer_report(ctl, roles, source=None, inserted=()):
    """What the buffer holds per transaction, the table rows, where each insert ended in the
    WAL and where the slot is, and the roles' logs (for a failure)."""
    with psycopg.connect(ctl) as c:
        per_lsn = c.execute("SELECT lsn, count(*) FROM philotes.changes GROUP BY lsn ORDER BY lsn").fetchall()
        tables = c.execute("SELECT name, buffered, watermark, snapshot_lsn FROM philotes.tables").fetchall()
    report = f"buffered per transaction: {per_lsn}\ntables: {tables}\n"
    if source is not None:
        (slot,) = source.sql("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'philotes'")[0]
        report += f"inserts ended at: {list(inserted)}\nslot confirmed: {slot}\n"
    # Debug lines of the stream (begin, commit, stream blocks, left-out changes) and warnings.
    for r in roles:
        lines = r.log.read_text().splitlines()
        report += "\n".join(line for line in lines if " DEBUG " not in line or "philotes_" in line)[-12000:] + "\n"
    return report


def test_ingest_drains_the_slot_while_the_object_store_is_down(source, cluster, s3, tmp_path):
    endpoint, client = s3
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 200) g")
    ctl = control_db(cluster, f"{source.name}_ctl")
    common = ["--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
              "--flush-interval", "200ms", "--warehouse", "s3://lake/warehouse", "--s3-endpoint", endpoint,
              "--s3-region", "eu-central-1", "--s3-access-key-id", "philotes", "--s3-path-style"]
    os.environ["PHILOTES_S3_SECRET_ACCESS_KEY"] = "s3cr3t-key"
    moto = None
    roles = []
    try:
        # (Debug lines of the stream and the applier: the report on a wrong count shows them.)
        ingest = Role(["ingest", *common], tmp_path / "ingest.log",
                      log_filter="info,philotes_pipeline::apply=debug,philotes_source_postgres::stream=debug")
        worker = Role(["worker", "--worker-id", "w1", *common], tmp_path / "w1.log")
        roles = [ingest, worker]
        wait_for("the copy", lambda: copied_tables(ctl) == 1, timeout=120)
        lake = source.lake(warehouse="s3://lake/warehouse", props={
            "s3.endpoint": endpoint, "s3.access-key-id": "philotes", "s3.secret-access-key": "s3cr3t-key",
            "s3.region": "eu-central-1"})
        wait_for("the lake", lambda: lake_equals_source(source, lake, [("t", ["id"])]), timeout=120, every=0.5)
        # The object store stops answering (frozen: it keeps its objects).
        moto = int(subprocess.check_output(["pgrep", "-f", f"moto_server -H 127.0.0.1 -p {endpoint.rsplit(':', 1)[1]}"]).split()[0])
        os.kill(moto, signal.SIGSTOP)
        assert_not_answering(endpoint)
        inserted = []
        for i in range(20):
            source.sql(f"INSERT INTO t SELECT g, 'w' FROM generate_series({1000 + i * 100}, {1099 + i * 100}) g")
            inserted.append(int(source.sql("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")[0][0]))
        (end,) = source.sql("SELECT pg_current_wal_insert_lsn()::text")[0]
        # Ingest drains the slot into the buffer all the same: the source's WAL is freed.
        wait_for("the slot to pass the inserts", lambda: source.sql(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = 'philotes'",
            (end,))[0][0], timeout=60)
        n = ctl_value(ctl, "SELECT count(*) FROM philotes.changes")
        assert n == 2000, buffer_report(ctl, [ingest, worker], source, inserted)
        time.sleep(3)
        assert ingest.alive() and worker.alive()
        os.kill(moto, signal.SIGCONT)
        moto = None
        wait_for("everything to land", lambda: lake_equals_source(source, lake, [("t", ["id"])]), timeout=300, every=1)
        wait_for("the buffer to drain", lambda: ctl_value(ctl, "SELECT count(*) FROM philotes.changes") == 0, timeout=60)
        no_duplicates(lake, "public.t__changelog")
    finally:
        if moto:
            os.kill(moto, signal.SIGCONT)
        os.environ.pop("PHILOTES_S3_SECRET_ACCESS_KEY", None)
        stop_roles(roles)


def test_ingest_stays_up_through_source_restarts_and_loses_nothing(cluster, tmp_path):
    """The source restarted twice under writes (once right after a large transaction): ingest
    stays up, reconnects and resumes; the lake equals the source with no change twice."""
    from conftest import Source
    from pgcluster import Cluster
    from test_telemetry import writer
    src_cluster = Cluster(settings={"logical_decoding_work_mem": "64kB"})
    src = Source(src_cluster, "restarts", tmp_path)
    ctl = control_db(cluster, "restarts_ctl")
    stop = threading.Event()
    stats = {"ok": 0, "failed": 0}
    roles = []
    try:
        src.sql("CREATE TABLE busy (id bigint PRIMARY KEY, v bigint, pad text)")
        src.sql("INSERT INTO busy SELECT g, 0, 'p' FROM generate_series(1, 600) g")
        common = ["--source", src.url, "--data-dir", str(src.data_dir), "--buffer-url", ctl, "--flush-interval", "300ms"]
        ingest = Role(["ingest", *common], tmp_path / "ingest.log")
        worker = Role(["worker", "--worker-id", "w1", *common], tmp_path / "w1.log")
        roles = [ingest, worker]
        wait_for("the copy", lambda: copied_tables(ctl) == 1, timeout=120)
        w = threading.Thread(target=writer, args=(src.url, stop, stats))
        w.start()
        for round_ in range(2):
            time.sleep(3)
            if round_ == 1:
                with psycopg.connect(src.url, autocommit=True) as c:
                    c.execute("INSERT INTO busy SELECT g, 7, repeat('L', 200) FROM generate_series(10001, 40000) g")
            src_cluster.stop_server()
            time.sleep(2)
            assert ingest.alive(), ingest.tail()
            src_cluster.start_server()
            wait_for("ingest to reconnect", lambda: ingest.log.read_text().count("reconnected to the source") == round_ + 1,
                     timeout=120)
        time.sleep(2)
        stop.set()
        w.join()
        assert stats["ok"] > 100, stats
        src.conn = psycopg.connect(src.url, autocommit=True)
        lake = src.lake()
        wait_for("the lake to equal the source", lambda: lake_equals_source(src, lake, [("busy", ["id"])]),
                 timeout=180, every=1)
        assert len(lake.current_state("public.busy__changelog", ["id"])) > 30000
        no_duplicates(lake, "public.busy__changelog")
        assert ingest.alive() and worker.alive()
    finally:
        stop.set()
        for r in roles:
            if r.alive():
                r.kill()
        src_cluster.stop()
