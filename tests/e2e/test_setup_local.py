"""deployments/scripts/setup-local.sh --no-docker end to end: its own PostgreSQL with the sample
source, the platform (api, managed ingest, a worker), an admin, a key, the source and the
pipeline made through the API, the sample in the lake (read with pyiceberg), streaming, Ctrl-C
stopping all of it, and a second start finding everything where it was."""
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psycopg

from compare import assert_same
from conftest import BINARY, ROOT
from lake import Lake
from pgcluster import free_port
from test_telemetry import wait_for


class Db:
    def __init__(self, url):
        self.conn = psycopg.connect(url, autocommit=True)


def start(data, api_port, pg_port, log, dashboard_port=None):
    dashboard_port = dashboard_port or free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_")}, "PHILOTES_BIN": str(BINARY),
           "PHILOTES_API_LISTEN": f"127.0.0.1:{api_port}", "PHILOTES_LOCAL_PG_PORT": str(pg_port)}
    env["PHILOTES_DASHBOARD_PORT"] = str(dashboard_port)
    return subprocess.Popen(["bash", str(ROOT / "deployments" / "scripts" / "setup-local.sh"), "--no-docker", str(data)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


def ready_status(url):
    try:
        return urllib.request.urlopen(f"{url}/readyz", timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_setup_local_without_docker_runs_the_platform_with_a_replicating_sample(tmp_path):
    data, log = tmp_path / "local", tmp_path / "setup.log"
    api_port, pg_port = free_port(), free_port()
    p = start(data, api_port, pg_port, log)
    try:
        wait_for("setup-local to be ready", lambda: p.poll() is None and "setup-local: ready." in log.read_text(), timeout=300)
        out = log.read_text()
        for url in (f"http://127.0.0.1:{api_port}/api/v1/docs", f"http://127.0.0.1:{api_port}/api/v1/openapi.json"):
            assert url in out
            assert urllib.request.urlopen(url, timeout=10).status == 200
        # The dashboard (built by the suite's dashboard step) serves and reaches the API.
        if (ROOT / "web" / ".next" / "standalone" / "server.js").exists():
            dash = next(line for line in out.splitlines() if line.strip().startswith("dashboard"))
            url = dash.split()[1]
            assert url.startswith("http://127.0.0.1:"), dash
            wait_for("the dashboard", lambda: ready_status(url) == 200, timeout=60)
        # Every route but health wants a key; the key it made is an admin's.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/sources", timeout=10)
            raise AssertionError("the API answered without a key")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        key = (data / "platform" / "admin.key").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v1/sources", headers={"Authorization": f"Bearer {key}"})
        assert b'"shop"' in urllib.request.urlopen(req, timeout=10).read()
        # No secret in what it printed.
        for secret in (key, (data / "admin.password").read_text().strip(), (data / "replicator.password").read_text().strip()):
            assert secret not in out
        pg = f"postgres://postgres@127.0.0.1:{pg_port}"
        with psycopg.connect(f"{pg}/philotes") as c:
            assert c.execute("SELECT username, role FROM philotes.users").fetchall() == [("admin", "admin")]
        # The sample is in the lake, and changes stream.
        src = Db(f"{pg}/shop")
        lake = Lake(data / "platform" / "pipelines" / "philotes_shop")
        assert assert_same(src, lake, "shop.orders__changelog", "SELECT * FROM shop.orders", ["id"]) == 5000
        assert assert_same(src, lake, "shop.customers__changelog", "SELECT * FROM shop.customers", ["id"]) == 500
        src.conn.execute("UPDATE shop.orders SET status = 'paid' WHERE id <= 10")
        src.conn.execute("DELETE FROM shop.orders WHERE id > 4990")

        def caught_up():
            try:
                return assert_same(src, lake, "shop.orders__changelog", "SELECT * FROM shop.orders", ["id"]) == 4990
            except AssertionError:
                return False
        wait_for("the changes in the lake", caught_up, timeout=120, every=0.5)
        src.conn.close()
    finally:
        os.killpg(p.pid, signal.SIGINT)
        code = p.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    # Ctrl-C stopped the platform and the PostgreSQL it started.
    time.sleep(0.5)
    try:
        psycopg.connect(f"postgres://postgres@127.0.0.1:{pg_port}/postgres", connect_timeout=2).close()
        raise AssertionError("the local PostgreSQL still runs")
    except psycopg.OperationalError:
        pass

    # A second start finds its database, users and pipeline, and makes nothing twice.
    p = start(data, api_port, pg_port, tmp_path / "again.log")
    try:
        wait_for("setup-local to be ready again", lambda: p.poll() is None and "setup-local: ready." in (tmp_path / "again.log").read_text(),
                 timeout=300)
        again = (tmp_path / "again.log").read_text()
        assert "initdb" not in again and "made the admin" not in again and "added the source" not in again, again
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{pg_port}/philotes") as c:
            assert c.execute("SELECT count(*) FROM philotes.sources").fetchone()[0] == 1
    finally:
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(timeout=120) == 0
        if (data / "postgres.dir").exists():
            shutil.rmtree((data / "postgres.dir").read_text().strip(), ignore_errors=True)
