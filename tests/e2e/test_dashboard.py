"""The dashboard (web/) in a real browser: Playwright drives Debian's Chromium through the
scenarios in web/e2e/, against the real `philotes api` on a real control database and real
sources. This test starts everything, hands the addresses to the Playwright suite, and fails
with its report when a scenario fails."""
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from conftest import ROOT
from lake import Lake
from pgcluster import free_port
from test_api import api, make_user, source_body, start_managed  # noqa: F401 (the `api` fixture)
from test_telemetry import wait_for

WEB = ROOT / "web"
SERVER = WEB / ".next" / "standalone" / "server.js"


def dashboard(api_url, log):
    """The dashboard's standalone server (what its image runs) on a free port."""
    port = free_port()
    proc = subprocess.Popen(["node", str(SERVER)], cwd=SERVER.parent, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PORT": str(port), "HOSTNAME": "127.0.0.1",
                                 "PHILOTES_API_URL": api_url, "NEXT_TELEMETRY_DISABLED": "1"})
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, f"the dashboard exited {proc.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for("the dashboard", up, timeout=60)
    return proc, url


def insert_while(url, going):
    """Insert a row into items every 20 ms while `going` is set; counts them."""
    insert_while.rows = 0
    with psycopg.connect(url, autocommit=True) as c:
        n = 10_000_000
        while going.is_set():
            n += 1
            c.execute("INSERT INTO items VALUES (%s, 'new')", (n,))
            insert_while.rows += 1
            time.sleep(0.02)


def same(conn, lake):
    """The lake's items hold every source row once (only inserts happen: compare the keys)."""
    try:
        t = lake.table("public.items__changelog").scan(selected_fields=("id", "_cdc_op")).to_arrow()
    except Exception:  # not there yet
        return False
    ids = t.column("id").to_pylist()
    want = {r[0] for r in conn.execute("SELECT id FROM items").fetchall()}
    return len(ids) == len(set(ids)) and set(ids) == want and set(t.column("_cdc_op").to_pylist()) <= {"S", "I"}


def drop_slot(c, slot):
    try:
        c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        return True
    except psycopg.errors.ObjectInUse:  # its walsender has not noticed the end yet
        return False


def ready(url):
    """(status, body) of the dashboard's /readyz."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())["status"]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def built():
    if not SERVER.exists():
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True, timeout=600,
                       env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1"})
    assert shutil.which("chromium") or os.path.exists("/usr/bin/chromium"), "Debian's chromium is needed (test-env.sh)"


def test_the_dashboard_in_a_real_browser(built, api, source, tmp_path):  # noqa: F811
    from test_service import lake_equals_source
    password = "dashboard-Passw0rd-e2e"
    made = make_user(api, "ada", "admin", password)
    assert made.returncode == 0, made.stderr
    admin = api.key("admin")
    # `shop` runs for real under a managed ingest and worker; one of its values will not convert.
    source.sql("CREATE TABLE orders (id int PRIMARY KEY, v text)")
    source.sql("CREATE TABLE prices (id int PRIMARY KEY, p numeric(6,2))")
    source.sql("INSERT INTO orders SELECT g, 'v' FROM generate_series(1, 50) g")
    source.sql("INSERT INTO prices VALUES (1, 1.50)")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    assert s == 201, src
    s, _, shop = api.call("POST", "/api/v1/pipelines", key=admin,
                          body={"name": "shop", "source_id": src["id"], "flush_interval": "200ms"})
    assert s == 201, shop
    # A source nothing answers at: its pipeline needs a person.
    dead = source_body(source, name="gone", user="postgres", port=free_port())
    s, _, gone = api.call("POST", "/api/v1/sources", body=dead, key=admin)
    assert s == 201, gone
    s, _, broken = api.call("POST", "/api/v1/pipelines", body={"name": "broken", "source_id": gone["id"]}, key=admin)
    assert s == 201, broken
    assert api.call("POST", f"/api/v1/pipelines/{broken['id']}/start", key=admin)[0] == 200

    # For the sources page: a user who may not replicate, and a second database with a keyless table.
    source.sql("CREATE ROLE norep LOGIN")
    extra = f"{source.name}_extra"
    with psycopg.connect(source.cluster.url(), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{extra}"')
        c.execute(f'CREATE DATABASE "{extra}"')
    with psycopg.connect(source.cluster.url(extra), autocommit=True) as c:
        c.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        # Large enough that the wizard's pipeline is seen copying it (ingest copies it for
        # several seconds; the page looks every second while a table copies).
        c.execute("INSERT INTO items SELECT g, 'v' FROM generate_series(1, 2000000) g")
        c.execute("CREATE TABLE events (at timestamptz, what text)")
    host, port = source.cluster.url().split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)

    roles, lake = start_managed(api, source, shop["id"], admin, tmp_path)
    log = open(tmp_path / "dashboard.log", "w")
    servers = []
    try:
        tables = [("orders", ["id"]), ("prices", ["id"])]
        wait_for("the copies", lambda: lake_equals_source(source, lake, tables), timeout=180, every=0.5)
        with source.conn.transaction():
            source.sql("INSERT INTO prices VALUES (2, 2.00)")
            source.sql("INSERT INTO prices VALUES (3, 'NaN')")
        source.sql("INSERT INTO prices VALUES (4, 4.00)")
        wait_for("the dead letter", lambda: api.call("GET", f"/api/v1/pipelines/{shop['id']}/dead-letters", key=admin)[2]["items"],
                 timeout=120, every=0.5)
        # The source is mended; the browser skips the dead letter, and the update brings the row.
        source.sql("UPDATE prices SET p = 3.00 WHERE id = 3")

        up, url = dashboard(api.url, log)
        # A second dashboard whose API is not there.
        down, down_url = dashboard(f"http://127.0.0.1:{free_port()}", log)
        servers = [up, down]
        # Ready only when the API answers (Kubernetes' readiness probe), saying why not.
        assert ready(url) == (200, "ready")
        status, body = ready(down_url)
        assert status == 503 and "cannot reach philotes api" in body, body
        # Rows keep arriving in the table the wizard's pipeline copies, before, during and after.
        inserting = threading.Event()
        inserting.set()
        inserter = threading.Thread(target=insert_while, args=(source.cluster.url(extra), inserting), daemon=True)
        inserter.start()
        out = subprocess.run(
            ["npx", "playwright", "test"], cwd=WEB, capture_output=True, text=True, timeout=900,
            env={**os.environ, "DASHBOARD_URL": url, "E2E_DOWN_URL": down_url, "E2E_USER": "ada",
                 "E2E_PASSWORD": password, "E2E_API_URL": api.url, "E2E_API_KEY": admin,
                 "E2E_SHOP_ID": str(shop["id"]), "E2E_BROKEN_ID": str(broken["id"]),
                 "E2E_SOURCE_HOST": host, "E2E_SOURCE_PORT": port, "E2E_SOURCE_DB": source.name, "E2E_EXTRA_DB": extra,
                 "PLAYWRIGHT_HTML_OPEN": "never"})
        inserting.clear()
        inserter.join(timeout=30)
        report = out.stdout + out.stderr
        assert out.returncode == 0, report + "\n--- dashboard log:\n" + (tmp_path / "dashboard.log").read_text()[-4000:]
        assert " 9 passed" in report, report
        # What the browser did, the API recorded: the skip with its note, the resync, a verification.
        actions = [e["action"] for e in api.call("GET", "/api/v1/audit", key=admin)[2]["items"]]
        assert {"dead-letter.retry", "dead-letter.skip", "pipeline.resync", "pipeline.verify", "pipeline.pause"} <= set(actions), actions
        wait_for("the lake to equal the source", lambda: lake_equals_source(source, lake, tables), timeout=180, every=0.5)
        # The pipeline the wizard made holds the copy and every row inserted meanwhile.
        with psycopg.connect(source.cluster.url(extra), autocommit=True) as c:
            extra_lake = Lake(tmp_path / "data" / "philotes_extra")
            wait_for("the wizard's pipeline to hold every row", lambda: same(c, extra_lake), timeout=180, every=1)
        assert insert_while.rows > 100, insert_while.rows
        for r in roles:
            assert r.alive(), r.tail()
    finally:
        for p in servers:
            p.terminate()
            p.wait(timeout=30)
        log.close()
        for r in roles:
            r.stop()
        # The second database and its slot go (the cluster serves the rest of the suite).
        with psycopg.connect(source.cluster.url(), autocommit=True) as c:
            for (slot,) in c.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (extra,)).fetchall():
                wait_for("the slot to be free", lambda: drop_slot(c, slot), timeout=30, every=0.2)
            c.execute(f'DROP DATABASE IF EXISTS "{extra}" WITH (FORCE)')
