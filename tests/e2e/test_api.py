"""`philotes api` over real HTTP against a real control database and real sources: keys and
scopes, sources with their test and tables, bad input that changes nothing, and no secret in
any answer, in the database or in the log."""
import base64
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import datetime

import psycopg
import pytest

from conftest import BINARY, ROOT, stop_roles
from pgcluster import Cluster, free_port
from test_service import Role, control_db
from test_telemetry import wait_for

PLANTED = "pl4nted-Source-Passw0rd"
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()


class Api:
    def __init__(self, url, ctl, role):
        self.url = url
        self.ctl = ctl
        self.role = role

    def call(self, method, path, body=None, key=None, headers=None, raw=None):
        """(status, headers, parsed body or text) of one request."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = dict(headers or {})
        if data is not None and raw is None:
            h.setdefault("Content-Type", "application/json")
        if key:
            h["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, hdrs, text = r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            status, hdrs, text = e.code, e.headers, e.read().decode()
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        return status, hdrs, parsed

    def key(self, scope, name=None):
        out = subprocess.run(
            [str(BINARY), "api-key", "create", "--scope", scope, "--name", name or f"{scope}-key", "--buffer-url", self.ctl],
            capture_output=True, text=True, timeout=60, check=True)
        assert "shown this once" in out.stderr
        return out.stdout.strip()

    def db(self, query, params=None):
        with psycopg.connect(self.ctl) as c:
            return c.execute(query, params).fetchall()


@pytest.fixture
def api(cluster, tmp_path, request):
    ctl = control_db(cluster, f"api_{request.node.name[:40]}_ctl")
    port = free_port()
    env_key = os.environ.get("PHILOTES_ENCRYPTION_KEY")
    os.environ["PHILOTES_ENCRYPTION_KEY"] = ENCRYPTION_KEY
    # (History sampled every second, so a test sees several samples.)
    role = Role(["api", "--listen", f"127.0.0.1:{port}", "--buffer-url", ctl, "--metrics-addr", "off",
                 "--history-interval", "1s"], tmp_path / "api.log")
    if env_key is None:
        os.environ.pop("PHILOTES_ENCRYPTION_KEY")
    a = Api(f"http://127.0.0.1:{port}", ctl, role)

    def up():
        assert role.alive(), role.tail()
        try:
            return a.call("GET", "/healthz")[0] == 200
        except OSError:
            return False
    wait_for("the API", up, timeout=60)
    yield a
    assert role.stop() == 0, role.tail()
    assert PLANTED not in (tmp_path / "api.log").read_text()


def problem(status, hdrs, body, code):
    assert status == code, (status, body)
    assert hdrs["Content-Type"] == "application/problem+json", hdrs["Content-Type"]
    assert body["status"] == code and body["title"] and body["detail"] and body["type"].startswith("https://")
    return body


def source_body(source, name="prod", **kw):
    host, port = source.cluster.url().split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return {"name": name, "host": host, "port": int(port), "database": source.name, "user": "rep",
            "password": PLANTED, "sslmode": "disable", **kw}


def test_keys_and_scopes_decide_who_may_do_what(api):
    admin, read, operate = api.key("admin"), api.key("read"), api.key("operate")
    # Health and the contract need no key; everything else does.
    assert api.call("GET", "/healthz")[0] == 200
    assert api.call("GET", "/readyz")[0] == 200
    status, _, spec = api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
    checked_in = json.loads((ROOT / "docs" / "api" / "openapi.json").read_text())
    assert spec == checked_in
    # The docs page (no key either): every operation of the contract with its scope, no script.
    status, h, page = api.call("GET", "/api/v1/docs")
    assert status == 200 and h["Content-Type"].startswith("text/html"), h
    import html.parser

    class Rows(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cells, self.scripts = [], None, 0

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.cells = []
            elif tag == "td" and self.cells is not None:
                self.cells.append("")
            elif tag == "script":
                self.scripts += 1

        def handle_endtag(self, tag):
            if tag == "tr" and self.cells:
                self.rows.append(self.cells)
                self.cells = None

        def handle_data(self, data):
            if self.cells:
                self.cells[-1] += data
    rows = Rows()
    rows.feed(page)
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert {(r[0], r[1]) for r in rows.rows} == ops and len(rows.rows) == len(ops) and rows.scripts == 0
    scopes = {(r[0], r[1]): r[2] for r in rows.rows}
    assert scopes[("GET", "/healthz")] == "none" and scopes[("POST", "/api/v1/sources")] == "admin"
    assert scopes[("POST", "/api/v1/pipelines/{id}/pause")] == "operate" and scopes[("GET", "/api/v1/sources")] == "read"
    for method, path in [("GET", "/api/v1/version"), ("GET", "/api/v1/sources"), ("POST", "/api/v1/sources"),
                         ("GET", "/api/v1/api-keys"), ("GET", "/api/v1/audit")]:
        s, h, b = api.call(method, path, body={} if method == "POST" else None)
        problem(s, h, b, 401)
        assert h["WWW-Authenticate"].startswith("Bearer")
    problem(*api.call("GET", "/api/v1/sources", key="phk_000000000000_nope"), 401)
    problem(*api.call("GET", "/api/v1/sources", key="not-a-key"), 401)
    problem(*api.call("GET", "/api/v1/sources", key=admin[:-1] + ("A" if admin[-1] != "A" else "B")), 401)
    # read sees, but may not change or test; operate may test, not change; admin may all.
    assert api.call("GET", "/api/v1/sources", key=read)[0] == 200
    assert api.call("GET", "/api/v1/version", key=read)[2]["api"] == "v1"
    b = problem(*api.call("POST", "/api/v1/sources", body={}, key=read), 403)
    assert "`admin`" in b["detail"] and "`read`" in b["detail"]
    problem(*api.call("GET", "/api/v1/api-keys", key=operate), 403)
    problem(*api.call("GET", "/api/v1/audit", key=read), 403)
    problem(*api.call("POST", "/api/v1/sources/1/test", key=read), 403)
    problem(*api.call("POST", "/api/v1/sources/1/test", key=operate), 404)
    # A key made through the API works at once; revoked, it is refused.
    s, _, made = api.call("POST", "/api/v1/api-keys", body={"name": "ci", "scope": "read"}, key=admin)
    assert s == 201 and made["token"].startswith("phk_") and made["key"]["scope"] == "read"
    assert api.call("GET", "/api/v1/sources", key=made["token"])[0] == 200
    keys = api.call("GET", "/api/v1/api-keys", key=admin)[2]["items"]
    assert all("token" not in k and "secret" not in json.dumps(k) for k in keys)
    listed = {k["id"]: k for k in keys}
    assert listed[made["key"]["id"]]["last_used_at"] is not None
    assert api.call("DELETE", f"/api/v1/api-keys/{made['key']['id']}", key=admin,
                    headers={"X-Forwarded-For": "203.0.113.9"})[0] == 204
    problem(*api.call("GET", "/api/v1/sources", key=made["token"]), 401)
    problem(*api.call("DELETE", "/api/v1/api-keys/000000000000", key=admin), 404)
    # (No proxy is trusted by default: a forwarded address from anyone is not believed.)
    # Only hashes are stored.
    tokens = [admin, read, operate, made["token"]]
    dump = json.dumps(api.db("SELECT * FROM philotes.api_keys"), default=str)
    assert not any(t.split("_", 2)[2] in dump for t in tokens)
    # Unknown paths and methods answer in the same form.
    problem(*api.call("GET", "/api/v1/nothing", key=admin), 404)
    problem(*api.call("PUT", "/api/v1/sources", body={}, key=admin), 405)
    audit = api.call("GET", "/api/v1/audit", key=admin)[2]["items"]
    assert [e["action"] for e in audit[:2]] == ["api-key.revoke", "api-key.create"]
    assert audit[0]["actor"].startswith("key:") and audit[0]["remote"] == "127.0.0.1"


def test_a_source_from_create_to_delete(api, source):
    admin, operate = api.key("admin"), api.key("operate")
    source.sql(f"CREATE ROLE rep LOGIN REPLICATION PASSWORD '{PLANTED}'")
    source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)")
    source.sql("CREATE TABLE events (at timestamptz, what text)")
    source.sql("INSERT INTO orders SELECT g, g FROM generate_series(1, 1000) g")
    source.sql("ANALYZE orders")
    s, h, created = api.call("POST", "/api/v1/sources", body=source_body(source), key=admin,
                             headers={"Idempotency-Key": "create-prod-1"})
    assert s == 201, created
    assert created["has_password"] is True and "password" not in created
    sid = created["id"]
    # The same create again is answered the same, and makes nothing new.
    s2, h2, again = api.call("POST", "/api/v1/sources", body=source_body(source), key=admin,
                             headers={"Idempotency-Key": "create-prod-1"})
    assert (s2, again) == (201, created) and h2["Idempotent-Replayed"] == "true"
    b = problem(*api.call("POST", "/api/v1/sources", body=source_body(source, name="other"), key=admin,
                          headers={"Idempotency-Key": "create-prod-1"}), 409)
    assert "Idempotency-Key was used for a different request" in b["detail"]
    problem(*api.call("POST", "/api/v1/sources", body=source_body(source), key=admin), 409)
    assert api.db("SELECT count(*) FROM philotes.sources") == [(1,)]
    # The password is sealed at rest.
    (sealed,) = api.db("SELECT password_enc FROM philotes.sources")[0]
    assert PLANTED.encode() not in bytes(sealed)
    assert PLANTED not in json.dumps(api.db("SELECT * FROM philotes.audit_log"), default=str)
    # The test runs run's checks with the stored password.
    s, _, test = api.call("POST", f"/api/v1/sources/{sid}/test", key=operate)
    assert s == 200 and test["ok"] is True, test
    assert [c["name"] for c in test["checks"]] == ["connect", "version", "wal_level", "replication_privilege",
                                                   "replication_slots", "wal_senders"]
    # Its tables, with what replication needs to know.
    s, _, tables = api.call("GET", f"/api/v1/sources/{sid}/tables", key=operate)
    assert s == 200
    by_name = {t["name"]: t for t in tables}
    assert by_name["orders"]["has_primary_key"] and "problem" not in by_name["orders"]
    assert by_name["orders"]["estimated_rows"] == 1000 and by_name["orders"]["total_bytes"] > 0
    assert "REPLICA IDENTITY FULL" in by_name["events"]["problem"]
    assert by_name["events"]["fix"].endswith("REPLICA IDENTITY FULL") and "events" in by_name["events"]["fix"]
    assert "fix" not in by_name["orders"]
    # A wrong password is a failed `connect` check, not an error of the API.
    source.sql("ALTER ROLE rep NOLOGIN")
    s, _, test = api.call("POST", f"/api/v1/sources/{sid}/test", key=operate)
    assert s == 200 and test["ok"] is False and test["checks"][0]["name"] == "connect"
    assert "cannot connect" in test["checks"][0]["message"]
    b = problem(*api.call("GET", f"/api/v1/sources/{sid}/tables", key=operate), 409)
    assert "cannot connect" in b["detail"] and PLANTED not in b["detail"]
    source.sql("ALTER ROLE rep LOGIN")
    # Update: only what is sent changes.
    s, _, updated = api.call("PATCH", f"/api/v1/sources/{sid}", body={"sslmode": "prefer"}, key=admin)
    assert s == 200 and updated["sslmode"] == "prefer" and updated["host"] == created["host"]
    s, _, updated = api.call("PATCH", f"/api/v1/sources/{sid}", body={"password": None}, key=admin)
    assert updated["has_password"] is False
    assert api.call("GET", f"/api/v1/sources/{sid}", key=admin)[2]["has_password"] is False
    assert api.call("DELETE", f"/api/v1/sources/{sid}", key=admin)[0] == 204
    problem(*api.call("GET", f"/api/v1/sources/{sid}", key=admin), 404)
    problem(*api.call("DELETE", f"/api/v1/sources/{sid}", key=admin), 404)
    actions = [e["action"] for e in api.call("GET", "/api/v1/audit", key=admin)[2]["items"]]
    assert actions[:4] == ["source.delete", "source.update", "source.update", "source.create"]


def test_a_source_with_wal_level_replica_is_told_the_fix(api, tmp_path):
    c = Cluster(settings={"wal_level": "replica"})
    try:
        admin = api.key("admin")
        host, port = c.url().split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
        body = {"name": "replica", "host": host, "port": int(port), "database": "postgres", "user": "postgres",
                "sslmode": "disable"}
        s, _, created = api.call("POST", "/api/v1/sources", body=body, key=admin)
        assert s == 201 and created["has_password"] is False
        s, _, test = api.call("POST", f"/api/v1/sources/{created['id']}/test", key=admin)
        assert s == 200 and test["ok"] is False
        failed = [ch for ch in test["checks"] if not ch["ok"]]
        assert [ch["name"] for ch in failed] == ["wal_level"]
        assert "wal_level = replica" in failed[0]["message"] and "wal_level = logical" in failed[0]["message"]
        assert "restart" in failed[0]["message"]
        # The statement that fixes it, on its own (the dashboard offers it to copy).
        assert failed[0]["fix"] == "ALTER SYSTEM SET wal_level = logical", failed[0]
        assert all("fix" not in ch for ch in test["checks"] if ch["ok"]), test
    finally:
        c.stop()


def test_bad_input_gets_a_problem_and_changes_nothing(api, source):
    admin = api.key("admin")
    before = api.db("SELECT count(*) FROM philotes.audit_log")
    good = source_body(source)

    def bad(body=None, raw=None, headers=None, path="/api/v1/sources", method="POST"):
        return api.call(method, path, body=body, raw=raw, key=admin, headers=headers)

    b = problem(*bad({**good, "extra": 1}), 422)
    assert "unknown field `extra`" in b["errors"][0]["message"]
    b = problem(*bad({**good, "port": "5432"}), 422)
    assert b["errors"][0]["field"] == "port"
    b = problem(*bad({**good, "port": 70000}), 422)
    assert b["errors"][0]["field"] == "port"
    b = problem(*bad({k: v for k, v in good.items() if k != "host"}), 422)
    assert "missing field `host`" in b["errors"][0]["message"]
    b = problem(*bad({**good, "name": "Bad Name!", "database": ""}), 422)
    assert {e["field"] for e in b["errors"]} == {"name", "database"}
    b = problem(*bad({**good, "sslmode": "sometimes"}), 422)
    assert b["errors"][0]["field"] == "sslmode"
    problem(*bad(raw=b'{"name": ', headers={"Content-Type": "application/json"}), 400)
    problem(*bad(raw=json.dumps(good).encode(), headers={"Content-Type": "text/plain"}), 415)
    problem(*bad(raw=json.dumps({**good, "host": "h" * 2_000_000}).encode(), headers={"Content-Type": "application/json"}), 413)
    problem(*bad(raw=b"[1, 2]", headers={"Content-Type": "application/json"}), 422)
    problem(*bad(method="GET", path="/api/v1/sources?limit=0"), 422)
    problem(*bad(method="GET", path="/api/v1/sources?limit=ten"), 422)
    problem(*bad(method="GET", path="/api/v1/sources?colour=red"), 422)
    problem(*bad(method="GET", path="/api/v1/sources/abc"), 404)
    problem(*bad(method="PATCH", path="/api/v1/sources/1", body={"name": "renamed"}), 422)
    problem(*bad(method="PATCH", path="/api/v1/sources/1", body={"port": 1}), 404)
    assert api.db("SELECT count(*) FROM philotes.sources") == [(0,)]
    assert api.db("SELECT count(*) FROM philotes.audit_log") == before


def test_lists_are_paginated(api, source):
    admin = api.key("admin")
    for i in range(5):
        assert api.call("POST", "/api/v1/sources", body=source_body(source, name=f"s{i}"), key=admin)[0] == 201
    seen, after = [], None
    while True:
        s, _, page = api.call("GET", "/api/v1/sources?limit=2" + (f"&after={after}" if after else ""), key=admin)
        assert s == 200 and len(page["items"]) <= 2
        seen += [x["name"] for x in page["items"]]
        after = page["next"]
        if not after:
            break
    assert seen == [f"s{i}" for i in range(5)]
    s, _, audit = api.call("GET", "/api/v1/audit?limit=3", key=admin)
    assert len(audit["items"]) == 3 and audit["next"]
    rest = api.call("GET", f"/api/v1/audit?after={audit['next']}", key=admin)[2]["items"]
    assert len(audit["items"]) + len(rest) == 6 and rest[-1]["action"] == "api-key.create"


def test_api_refuses_to_start_without_what_it_needs(cluster, tmp_path):
    ctl = control_db(cluster, "api_refuses_ctl")
    env = {k: v for k, v in os.environ.items() if k != "PHILOTES_ENCRYPTION_KEY"}
    out = subprocess.run([str(BINARY), "api", "--buffer-url", ctl, "--listen", "127.0.0.1:0", "--metrics-addr", "off"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "PHILOTES_ENCRYPTION_KEY" in out.stderr and "openssl rand -base64 32" in out.stderr
    out = subprocess.run([str(BINARY), "api", "--buffer-url", ctl, "--listen", "127.0.0.1:0", "--metrics-addr", "off"],
                         capture_output=True, text=True, timeout=60, env={**env, "PHILOTES_ENCRYPTION_KEY": "short"})
    assert out.returncode == 2 and "32 bytes" in out.stderr
    out = subprocess.run([str(BINARY), "api", "--listen", "127.0.0.1:0", "--metrics-addr", "off"],
                         capture_output=True, text=True, timeout=60,
                         env={**{k: v for k, v in env.items() if not k.startswith("PHILOTES_BUFFER_URL")},
                              "PHILOTES_ENCRYPTION_KEY": ENCRYPTION_KEY})
    assert out.returncode == 2 and "--buffer-url" in out.stderr
    out = subprocess.run([str(BINARY), "api", "--buffer-url", ctl, "--listen", "127.0.0.1:0", "--metrics-addr", "off",
                          "--trusted-proxies", "10.0.0.0/33"], capture_output=True, text=True, timeout=60,
                         env={**env, "PHILOTES_ENCRYPTION_KEY": ENCRYPTION_KEY})
    assert out.returncode == 2 and "10.0.0.0/33" in out.stderr and "is not an address or a network" in out.stderr
    # The URL from a file (a mounted secret) works, and the key from a file too.
    url_file, key_file = tmp_path / "url", tmp_path / "key"
    url_file.write_text(ctl + "\n")
    key_file.write_text(ENCRYPTION_KEY + "\n")
    port = free_port()
    p = subprocess.Popen([str(BINARY), "api", "--listen", f"127.0.0.1:{port}", "--metrics-addr", "off",
                          "--encryption-key-file", str(key_file)], stderr=open(tmp_path / "api.log", "w"),
                         env={**env, "PHILOTES_BUFFER_URL_FILE": str(url_file),
                              "PHILOTES_API_TRUSTED_PROXIES": "127.0.0.0/8"})
    try:
        wait_for("the API", lambda: _ready(port) or p.poll() is not None, timeout=60)
        assert p.poll() is None, (tmp_path / "api.log").read_text()
        # Behind a trusted proxy (the dashboard, an ingress), "from where" is the client it
        # forwards for: the right-most address that is not a trusted proxy.
        api = Api(f"http://127.0.0.1:{port}", ctl, None)
        admin = api.key("admin")
        s, _, made = api.call("POST", "/api/v1/api-keys", body={"name": "ci", "scope": "read"}, key=admin,
                              headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.2"})
        assert s == 201, made
        (entry,) = [e for e in api.call("GET", "/api/v1/audit", key=admin)[2]["items"] if e["action"] == "api-key.create"
                    and e["actor"].startswith("key:")]
        assert entry["remote"] == "203.0.113.9", entry
        bad = subprocess.run([str(BINARY), "api-key", "create", "--scope", "root", "--name", "x", "--buffer-url", ctl],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "read, operate or admin" in bad.stderr
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0


def _ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_contract(api, tmp_path):
    """Property-based requests from the served contract (valid and invalid, with and without
    the key, and sequences that create then use sources): no 5xx, every answer as documented."""
    admin = api.key("admin")
    schemathesis = ROOT / ".venv" / "bin" / "schemathesis"
    out = subprocess.run(
        [str(schemathesis), "run", f"{api.url}/api/v1/openapi.json", "-H", f"Authorization: Bearer {admin}",
         "--checks", "all", "--max-examples", "40", "--seed", "20261203", "--request-timeout", "30",
         "--report", "junit", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "passed" in out.stdout and "generated" in out.stdout
    assert api.role.alive()


def test_pipelines_through_the_api_run_side_by_side_pause_resume_stop_and_delete(api, cluster, tmp_path):
    """Two sources, two pipelines, one managed ingest and one managed worker: created, started,
    paused and resumed through the API (no restart of either role), then stopped and deleted."""
    from conftest import Source
    from test_service import lake_equals_source, no_duplicates
    admin, operate, read = api.key("admin"), api.key("operate"), api.key("read")
    sources = {n: Source(cluster, f"api_life_{n}", tmp_path / n) for n in ("a", "b")}
    roles = []
    try:
        ids = {}
        for n, src in sources.items():
            src.sql("CREATE TABLE orders (id bigint PRIMARY KEY, v text)")
            src.sql("INSERT INTO orders SELECT g, 'first' FROM generate_series(1, 500) g")
            body = source_body(src, name=f"src-{n}", user="postgres")
            s, _, created = api.call("POST", "/api/v1/sources", body=body, key=admin)
            assert s == 201, created
            s, _, p = api.call("POST", "/api/v1/pipelines", key=admin, body={
                "name": f"shop-{n}", "source_id": created["id"], "flush_interval": "200ms",
                "destination": {"s3_secret_access_key": PLANTED}})
            assert s == 201, p
            assert p["state"] == "stopped" and p["slot"] == f"philotes_shop_{n}"
            assert p["destination"]["has_s3_secret_access_key"] is True and PLANTED not in json.dumps(p)
            ids[n] = p["id"]
        b = problem(*api.call("POST", "/api/v1/pipelines", key=admin, body={"name": "x", "source_id": 999999}), 404)
        assert "source 999999" in b["detail"]
        problem(*api.call("POST", f"/api/v1/pipelines/{ids['a']}/start", key=read), 403)
        problem(*api.call("DELETE", f"/api/v1/sources/{created['id']}", key=admin), 409)
        # The roles run whatever is defined; nothing is defined as running yet.
        data = tmp_path / "data"
        os.environ["PHILOTES_ENCRYPTION_KEY"] = ENCRYPTION_KEY
        try:
            common = ["--managed", "--buffer-url", api.ctl, "--data-dir", str(data)]
            metrics = {"ingest": free_port(), "w1": free_port()}
            roles.append(Role(["ingest", *common, "--metrics-addr", f"127.0.0.1:{metrics['ingest']}"], tmp_path / "ingest.log"))
            roles.append(Role(["worker", "--worker-id", "w1", *common, "--metrics-addr", f"127.0.0.1:{metrics['w1']}"],
                              tmp_path / "w1.log"))
        finally:
            os.environ.pop("PHILOTES_ENCRYPTION_KEY")
        lakes = {}
        for n, src in sources.items():
            s, _, p = api.call("POST", f"/api/v1/pipelines/{ids[n]}/start", key=operate)
            assert s == 200 and p["state"] == "running"
            src.data_dir = data / f"philotes_shop_{n}"
        for n, src in sources.items():
            wait_for(f"pipeline {n}'s catalog", lambda: (src.data_dir / "catalog.db").exists(), timeout=120)
            lakes[n] = src.lake()
            wait_for(f"pipeline {n}", lambda: lake_equals_source(src, lakes[n], [("orders", ["id"])]), timeout=180, every=0.5)
        def status(n):
            s, _, st = api.call("GET", f"/api/v1/pipelines/{ids[n]}/status", key=read)
            assert s == 200, st
            return st
        wait_for("the worker to join", lambda: status("a")["workers"] == ["w1"], timeout=60)

        def series(role, metric):
            """{pipeline: value} of a gauge as the role serves it."""
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics[role]}/metrics", timeout=10) as r:
                text = r.read().decode()
            out = {}
            for line in text.splitlines():
                if line.startswith(metric + "{"):
                    labels, value = line.rsplit(" ", 1)
                    out[labels.split('pipeline="', 1)[1].split('"', 1)[0]] = float(value)
            return out
        # One process, two pipelines: each with its own series.
        wait_for("both pipelines' series", lambda: series("ingest", "philotes_source_connected")
                 == {"philotes_shop_a": 1.0, "philotes_shop_b": 1.0}, timeout=30)
        wait_for("both pipelines' leases", lambda: series("w1", "philotes_worker_leases")
                 == {"philotes_shop_a": 1.0, "philotes_shop_b": 1.0}, timeout=30)
        st = status("a")
        assert st["state"] == "running", st
        assert st["slot"]["active"] is True and [t["state"] for t in st["tables"]] == ["streaming"], st
        # Paused: a reads nothing new while b goes on; resumed: a catches up.
        assert api.call("POST", f"/api/v1/pipelines/{ids['a']}/pause", key=operate)[2]["state"] == "paused"
        wait_for("ingest to pause", lambda: "the pipeline is paused" in (tmp_path / "ingest.log").read_text(), timeout=30)
        for n, src in sources.items():
            src.sql("INSERT INTO orders SELECT g, 'second' FROM generate_series(1001, 1300) g")
        wait_for("pipeline b", lambda: lake_equals_source(sources["b"], lakes["b"], [("orders", ["id"])]), timeout=120, every=0.5)
        (confirmed_a,) = sources["a"].sql(
            "SELECT confirmed_flush_lsn < pg_current_wal_insert_lsn() FROM pg_replication_slots WHERE slot_name = 'philotes_shop_a'")[0]
        assert confirmed_a and not lake_equals_source(sources["a"], lakes["a"], [("orders", ["id"])])
        # An action on a pipeline already in its state is a no-op, not an error.
        assert api.call("POST", f"/api/v1/pipelines/{ids['b']}/resume", key=operate)[2]["state"] == "running"
        assert api.call("POST", f"/api/v1/pipelines/{ids['a']}/resume", key=operate)[2]["state"] == "running"
        wait_for("pipeline a to catch up", lambda: lake_equals_source(sources["a"], lakes["a"], [("orders", ["id"])]), timeout=120, every=0.5)
        for n in sources:
            no_duplicates(lakes[n], "public.orders__changelog")
        # Stopped: the roles let go of it (its slot is kept); deleted: the slot goes too.
        problem(*api.call("DELETE", f"/api/v1/pipelines/{ids['a']}", key=admin), 409)
        assert api.call("POST", f"/api/v1/pipelines/{ids['a']}/stop", key=operate)[2]["state"] == "stopped"
        b = problem(*api.call("POST", f"/api/v1/pipelines/{ids['a']}/resume", key=operate), 409)
        assert "stopped" in b["detail"]
        problem(*api.call("POST", f"/api/v1/pipelines/{ids['a']}/verify", body={"tables": []}, key=operate), 409)
        # Ingest and the workers notice the stop each on its own poll (every 2 s, then at a
        # transaction boundary), so the worker may let go after the slot does.
        wait_for("a's slot to be let go", lambda: status("a")["slot"]["active"] is False, timeout=60)
        wait_for("the worker to let go of a", lambda: status("a")["workers"] == [], timeout=60)
        # Let go of, a's gauges go (a scaler summing the buffer depth no longer counts it); b's stay.
        wait_for("a's series to go", lambda: set(series("ingest", "philotes_source_connected")) == {"philotes_shop_b"}
                 and set(series("w1", "philotes_worker_leases")) == {"philotes_shop_b"}
                 and set(series("w1", "philotes_buffer_depth")) <= {"philotes_shop_b"}, timeout=30)

        def deleted():
            s, _, _ = api.call("DELETE", f"/api/v1/pipelines/{ids['a']}", key=admin)
            return s == 204
        wait_for("the delete", deleted, timeout=30, every=1)
        assert sources["a"].sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'philotes_shop_a'") == [(0,)]
        problem(*api.call("GET", f"/api/v1/pipelines/{ids['a']}", key=read), 404)
        assert api.db("SELECT count(*) FROM philotes.tables WHERE pipeline = 'philotes_shop_a'") == [(0,)]
        # The lake keeps a's tables; b runs on.
        assert lake_equals_source(sources["a"], lakes["a"], [("orders", ["id"])])
        sources["b"].sql("INSERT INTO orders VALUES (5000, 'third')")
        wait_for("pipeline b", lambda: lake_equals_source(sources["b"], lakes["b"], [("orders", ["id"])]), timeout=120, every=0.5)
        # History: b streamed 301 changes (the copy goes to the lake directly); the rates
        # between samples add up to exactly that, into the buffer and into the lake, and the
        # newest sample has an empty buffer and no lag.
        def streamed():
            samples = api.call("GET", f"/api/v1/pipelines/{ids['b']}/history?hours=1", key=read)[2]
            total = {"lake": 0.0, "buffered": 0.0}
            for before, now in zip(samples, samples[1:]):
                dt = (datetime.fromisoformat(now["at"].replace("Z", "+00:00"))
                      - datetime.fromisoformat(before["at"].replace("Z", "+00:00"))).total_seconds()
                total["lake"] += now["lake_changes_per_second"] * dt
                total["buffered"] += now["buffered_changes_per_second"] * dt
            last = samples[-1] if samples else {}
            done = round(total["lake"]) == 301 and last.get("buffer_depth") == 0
            return (samples, total) if done else None
        samples, total = wait_for("the history to show b's changes", streamed, timeout=60, every=1)
        assert round(total["buffered"]) == 301, (total, samples)
        assert samples[0]["lake_changes_per_second"] is None and samples[-1]["lag_seconds"] == 0, samples
        assert any(x["buffer_depth"] > 0 or x["lake_changes_per_second"] for x in samples[1:]), samples
        # The status counts the same: 500 rows copied, 301 changes streamed and in the lake.
        sources["b"].sql("ANALYZE orders")
        st = status("b")
        (t,) = st["tables"]
        assert (t["rows_copied"], t["changes_streamed"], t["changes_in_lake"]) == (500, 301, 301), t
        assert t["source_rows_estimate"] == 801 and t["copy_started_at"] and t["last_commit_at"], t
        assert t["lag_seconds"] == 0 and st["lag_seconds"] == 0 and st["last_commit_at"] == t["last_commit_at"], st
        problem(*api.call("GET", f"/api/v1/pipelines/{ids['b']}/history?hours=0", key=read), 422)
        problem(*api.call("GET", f"/api/v1/pipelines/{ids['b']}/history?days=1", key=read), 422)
        problem(*api.call("GET", "/api/v1/pipelines/999999/history", key=read), 404)
        assert api.call("GET", f"/api/v1/pipelines/{ids['b']}/history")[0] == 401
        # Verify through the API: the managed ingest that streams the pipeline runs `philotes
        # verify` and keeps the report. A second managed ingest stands by for b and never claims
        # b's verifications (before, any managed ingest could).
        os.environ["PHILOTES_ENCRYPTION_KEY"] = ENCRYPTION_KEY
        try:
            roles.append(Role(["ingest", "--managed", "--buffer-url", api.ctl, "--data-dir", str(data),
                               "--metrics-addr", "off"], tmp_path / "standby.log"))
        finally:
            os.environ.pop("PHILOTES_ENCRYPTION_KEY")
        wait_for("the standby", lambda: "standing by" in (tmp_path / "standby.log").read_text(), timeout=60)
        problem(*api.call("POST", f"/api/v1/pipelines/{ids['b']}/verify", body={"tables": []}, key=read), 403)
        problem(*api.call("POST", f"/api/v1/pipelines/{ids['b']}/verify", body={"tables": ["public.nope"]}, key=operate), 404)
        s, h, run = api.call("POST", f"/api/v1/pipelines/{ids['b']}/verify", body={"tables": ["public.orders"]}, key=operate)
        assert s == 202 and run["state"] == "pending" and h["Location"].endswith(f"/verify-runs/{run['id']}"), run

        def verified():
            r = api.call("GET", f"/api/v1/pipelines/{ids['b']}/verify-runs/{run['id']}", key=read)[2]
            return r if r["state"] in ("done", "failed") else None
        finished = wait_for("the verification", verified, timeout=300, every=1)
        assert finished["state"] == "done" and finished["outcome"] == "match", finished
        assert finished["report"]["tables"][0]["table"] == "public.orders", finished["report"]
        runs = api.call("GET", f"/api/v1/pipelines/{ids['b']}/verify-runs?limit=1", key=read)[2]
        assert [r["id"] for r in runs["items"]] == [run["id"]] and runs["next"] is None, runs
        assert "verifying the pipeline" not in (tmp_path / "standby.log").read_text()
        assert "verifying the pipeline" in (tmp_path / "ingest.log").read_text()
        actions = [e["action"] for e in api.call("GET", "/api/v1/audit?limit=20", key=admin)[2]["items"]]
        for a in ("pipeline.create", "pipeline.start", "pipeline.pause", "pipeline.resume", "pipeline.stop", "pipeline.delete",
                  "pipeline.verify"):
            assert a in actions, actions
        for r in roles:
            assert r.alive(), r.tail()
            assert PLANTED not in r.log.read_text()
    finally:
        stop_roles(roles)
        for src in sources.values():
            src.close()


def managed_roles(api, tmp_path, data):
    """A managed ingest and worker over the API's control database."""
    os.environ["PHILOTES_ENCRYPTION_KEY"] = ENCRYPTION_KEY
    try:
        common = ["--managed", "--buffer-url", api.ctl, "--data-dir", str(data), "--metrics-addr", "off"]
        return [Role(["ingest", *common], tmp_path / "ingest.log"),
                Role(["worker", "--worker-id", "w1", *common], tmp_path / "w1.log")]
    finally:
        os.environ.pop("PHILOTES_ENCRYPTION_KEY")


def start_managed(api, source, pid, key, tmp_path):
    """Start pipeline `pid` (slot philotes_shop) under a managed ingest and worker: the roles,
    and the lake once its catalog exists."""
    data = tmp_path / "data"
    roles = managed_roles(api, tmp_path, data)
    try:
        assert api.call("POST", f"/api/v1/pipelines/{pid}/start", key=key)[0] == 200
        source.data_dir = data / "philotes_shop"
        wait_for("the catalog", lambda: (source.data_dir / "catalog.db").exists(), timeout=120)
        return roles, source.lake()
    except BaseException:
        for r in roles:
            r.stop()
        raise


def test_dead_letters_and_resync_through_the_api(api, source, tmp_path):
    from test_service import lake_equals_source
    admin, operate, read = api.key("admin"), api.key("operate"), api.key("read")
    source.sql("CREATE TABLE prices (id int PRIMARY KEY, p numeric(6,2))")
    source.sql("CREATE TABLE other (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO prices VALUES (1, 1.50)")
    source.sql("INSERT INTO other SELECT g, 'v' FROM generate_series(1, 100) g")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    assert s == 201
    s, _, p = api.call("POST", "/api/v1/pipelines", key=admin,
                       body={"name": "shop", "source_id": src["id"], "flush_interval": "200ms"})
    assert s == 201
    pid = p["id"]
    roles, lake = start_managed(api, source, pid, operate, tmp_path)
    try:
        wait_for("the copies", lambda: lake_equals_source(source, lake, [("prices", ["id"]), ("other", ["id"])]),
                 timeout=180, every=0.5)
        with source.conn.transaction():
            source.sql("INSERT INTO prices VALUES (2, 2.00)")
            source.sql("INSERT INTO prices VALUES (3, 'NaN')")
        source.sql("INSERT INTO prices VALUES (4, 4.00)")

        def letters():
            s, _, body = api.call("GET", f"/api/v1/pipelines/{pid}/dead-letters", key=read)
            assert s == 200, body
            return body["items"]
        (d,) = wait_for("the dead letter", letters, timeout=120, every=0.5)
        assert (d["table"], d["op"], d["column"], d["state"]) == ("public.prices", "I", "p", "open"), d
        st = api.call("GET", f"/api/v1/pipelines/{pid}/status", key=read)[2]
        by_name = {t["name"]: t for t in st["tables"]}
        assert by_name["public.prices"]["state"] == "stopped" and "cannot convert" in by_name["public.prices"]["stopped_reason"]
        # `philotes dlq --pipeline` reads the same through the API.
        out = cli(api, "dlq", "list", "--pipeline", str(pid), "--format", "json", key=read)
        assert out.returncode == 0, out.stderr
        (listed,) = json.loads(out.stdout)["dead_letters"]
        assert (listed["id"], listed["table"], listed["column"]) == (d["id"], "public.prices", "p"), listed
        out = cli(api, "dlq", "skip", str(d["id"]), "--pipeline", str(pid), key=read)
        assert out.returncode != 0 and "scope `operate`" in out.stderr, out.stderr
        problem(*api.call("POST", f"/api/v1/pipelines/{pid}/dead-letters/{d['id']}/skip", body={}, key=read), 403)
        problem(*api.call("POST", f"/api/v1/pipelines/{pid}/dead-letters/999999/skip", body={}, key=operate), 404)
        s, _, decided = api.call("POST", f"/api/v1/pipelines/{pid}/dead-letters/{d['id']}/skip",
                                 body={"note": "NaN from the old importer"}, key=operate)
        assert s == 200 and decided["state"] == "skipped" and decided["note"] == "NaN from the old importer", decided
        problem(*api.call("POST", f"/api/v1/pipelines/{pid}/dead-letters/{d['id']}/retry", body={}, key=operate), 409)
        out = cli(api, "dlq", "list", "--pipeline", str(pid), key=read)
        assert out.stdout.strip() == "no open dead letters", out.stdout + out.stderr
        out = cli(api, "dlq", "list", "--all", "--pipeline", str(pid), key=read)
        assert "skipped" in out.stdout and "NaN from the old importer" in out.stdout, out.stdout

        def prices():
            return {k[0] for k in lake.current_state("public.prices__changelog", ["id"])}
        wait_for("the table to go on", lambda: prices() == {1, 2, 4}, timeout=120, every=0.5)
        # Resync: the table is copied again from the source (3, now valid, comes with it).
        source.sql("UPDATE prices SET p = 3.00 WHERE id = 3")
        b = problem(*api.call("POST", f"/api/v1/pipelines/{pid}/resync", body={"tables": ["public.nope"]}, key=operate), 404)
        assert "public.nope" in b["detail"]
        s, _, started = api.call("POST", f"/api/v1/pipelines/{pid}/resync", body={"tables": ["public.prices"]}, key=operate)
        assert s == 202 and started["tables"] == ["public.prices"], started
        wait_for("the resync", lambda: lake_equals_source(source, lake, [("prices", ["id"]), ("other", ["id"])]),
                 timeout=180, every=0.5)
        snapshots = [r for r in lake.changelog("public.prices__changelog") if r["_cdc_op"] == "S"]
        assert {r["id"] for r in snapshots} >= {1, 2, 3, 4}, snapshots
        # Recent commits, newest first: both copies of prices (the resync's holds its 4 rows),
        # the copy of other, and the streamed changes in between.
        s, _, commits = api.call("GET", f"/api/v1/pipelines/{pid}/commits", key=read)
        assert s == 200, commits
        seen = [(c["table"], c["kind"]) for c in commits]
        assert seen.count(("public.prices", "copy")) == 2 and ("public.other", "copy") in seen, seen
        assert ("public.prices", "stream") in seen, seen
        resync_copy = next(c for c in commits if c["table"] == "public.prices" and c["kind"] == "copy")
        assert resync_copy["rows"] == 4 and resync_copy["watermark"].count("/") == 1, resync_copy
        assert [c["at"] for c in commits] == sorted((c["at"] for c in commits), reverse=True)
        assert all(c["seconds"] is not None and c["seconds"] >= 0 for c in commits if c["kind"] == "stream"), commits
        problem(*api.call("GET", "/api/v1/pipelines/999999/commits", key=read), 404)
        actions = [e["action"] for e in api.call("GET", "/api/v1/audit", key=admin)[2]["items"]]
        assert "dead-letter.skip" in actions and "pipeline.resync" in actions
        for r in roles:
            assert r.alive(), r.tail()
    finally:
        stop_roles(roles)


def test_a_pipeline_definition_changes_while_it_runs(api, source, tmp_path):
    """PATCH: a table joins (copied, then streamed) and leaves (its lake table stays as it
    was) through the publication; where the tables are cannot change once written; a refused
    change changes nothing, in the definition or on the source."""
    from test_service import lake_equals_source, no_duplicates
    admin, read = api.key("admin"), api.key("read")
    for t in ("orders", "items"):
        source.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
        source.sql(f"INSERT INTO {t} SELECT g, 'first' FROM generate_series(1, 200) g")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    body = {"name": "shop", "source_id": src["id"], "tables": ["public.orders"], "flush_interval": "200ms"}
    s, _, p = api.call("POST", "/api/v1/pipelines", key=admin, body=body, headers={"Idempotency-Key": "shop-1"})
    assert s == 201, p
    pid = p["id"]
    # Sent again (the answer was lost, say): the first answer, no second pipeline.
    s, h, again = api.call("POST", "/api/v1/pipelines", key=admin, body=body, headers={"Idempotency-Key": "shop-1"})
    assert s == 201 and again == p and h["Idempotent-Replayed"] == "true" and h["Location"] == f"/api/v1/pipelines/{pid}"
    problem(*api.call("POST", "/api/v1/pipelines", key=admin, body={**body, "name": "shop2"},
                      headers={"Idempotency-Key": "shop-1"}), 409)
    assert api.db("SELECT count(*) FROM philotes.pipeline_specs") == [(1,)]
    # Before it ever ran, anything may change (the publication does not exist yet).
    s, _, p = api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin,
                       body={"namespace": "before", "destination": {"s3_region": "eu-central"}})
    assert s == 200 and p["namespace"] == "before" and p["destination"]["s3_region"] == "eu-central", p
    s, _, p = api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin,
                       body={"namespace": None, "destination": {"s3_region": None, "s3_secret_access_key": PLANTED}})
    assert s == 200 and p["namespace"] is None and p["destination"]["s3_region"] is None, p
    assert p["destination"]["has_s3_secret_access_key"] is True and PLANTED not in json.dumps(p)
    problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=read, body={"name": "x"}), 403)
    problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin, body={"slot": "other"}), 422)
    problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin, body={"flush_interval": "0s"}), 422)
    problem(*api.call("PATCH", "/api/v1/pipelines/999999", key=admin, body={"name": "x"}), 404)
    roles, lake = start_managed(api, source, pid, admin, tmp_path)
    try:
        wait_for("orders", lambda: lake_equals_source(source, lake, [("orders", ["id"])]), timeout=180, every=0.5)
        assert ("public", "items__changelog") not in lake.catalog.list_tables("public")
        spec_before = api.db("SELECT tables, updated_at FROM philotes.pipeline_specs WHERE id = %s", (pid,))
        # Refused: a table the source does not have (nothing changes, here or on the source)...
        b = problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin,
                              body={"tables": ["public.orders", "public.nope"], "flush_rows": 10}), 422)
        assert b["errors"][0]["field"] == "tables" and "nope" in b["errors"][0]["message"], b
        # ...and where the tables are, once written.
        b = problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin, body={"namespace": "elsewhere"}), 409)
        assert "namespace" in b["detail"] and "new pipeline" in b["detail"], b
        b = problem(*api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin,
                              body={"destination": {"warehouse": "file:///tmp/elsewhere"}}), 409)
        assert "destination.warehouse" in b["detail"], b
        assert api.db("SELECT tables, updated_at FROM philotes.pipeline_specs WHERE id = %s", (pid,)) == spec_before
        # Setting what is already set changes nothing (the running pipeline is not restarted).
        s, _, same = api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin,
                              body={"flush_interval": "200ms", "tables": ["public.orders"]})
        assert s == 200 and same["flush_interval"] == "200ms", same
        assert api.db("SELECT tables, updated_at FROM philotes.pipeline_specs WHERE id = %s", (pid,)) == spec_before
        assert source.sql("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'philotes_shop'") == [("public.orders",)]
        # A table joins, through the CLI: copied, then streamed; orders streams on.
        out = cli(api, "pipeline", "update", str(pid), "--tables", "public.orders,public.items", "--flush-interval", "300ms", key=admin)
        assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr
        assert sorted(source.sql("SELECT tablename FROM pg_publication_tables WHERE pubname = 'philotes_shop'")) == [("items",), ("orders",)]
        source.sql("INSERT INTO orders SELECT g, 'second' FROM generate_series(201, 300) g")
        source.sql("INSERT INTO items SELECT g, 'second' FROM generate_series(201, 300) g")
        wait_for("items to join", lambda: lake_equals_source(source, lake, [("orders", ["id"]), ("items", ["id"])]),
                 timeout=180, every=0.5)
        p = api.call("GET", f"/api/v1/pipelines/{pid}", key=read)[2]
        assert p["tables"] == ["public.orders", "public.items"] and p["flush_interval"] == "300ms", p
        # A table leaves: its lake table stays as it was; the other goes on.
        s, _, p = api.call("PATCH", f"/api/v1/pipelines/{pid}", key=admin, body={"tables": ["public.items"]})
        assert s == 200, p
        source.sql("INSERT INTO items VALUES (999, 'third')")
        wait_for("items", lambda: lake_equals_source(source, lake, [("items", ["id"])]), timeout=120, every=0.5)
        source.sql("INSERT INTO orders VALUES (999, 'not replicated')")
        source.sql("INSERT INTO items VALUES (1000, 'third')")
        wait_for("items", lambda: lake_equals_source(source, lake, [("items", ["id"])]), timeout=120, every=0.5)
        orders = {r[0] for r in lake.current_state("public.orders__changelog", ["id"])}
        assert orders == set(range(1, 301)), sorted(orders - set(range(1, 301)))
        for t in ("orders", "items"):
            no_duplicates(lake, f"public.{t}__changelog")
        changed = [e["detail"]["changed"] for e in api.call("GET", "/api/v1/audit", key=admin)[2]["items"]
                   if e["action"] == "pipeline.update"]
        assert ["tables"] in changed and ["tables", "flush_interval"] in changed, changed
        for r in roles:
            assert r.alive(), r.tail()
    finally:
        stop_roles(roles)
    # A FOR ALL TABLES publication takes no list.
    s, _, q = api.call("POST", "/api/v1/pipelines", key=admin, body={"name": "all", "source_id": src["id"]})
    source.sql("CREATE PUBLICATION philotes_all FOR ALL TABLES")
    b = problem(*api.call("PATCH", f"/api/v1/pipelines/{q['id']}", key=admin, body={"tables": ["public.items"]}), 409)
    assert "FOR ALL TABLES" in b["detail"], b


def make_user(api, username, role, password):
    out = subprocess.run([str(BINARY), "user", "create", "--username", username, "--role", role, "--buffer-url", api.ctl],
                         input=password + "\n", capture_output=True, text=True, timeout=60)
    return out


def session_headers(cookie, csrf=None):
    h = {"Cookie": cookie}
    if csrf:
        h["X-CSRF-Token"] = csrf
    return h


def test_people_log_in_with_a_cookie_guarded_against_csrf_and_guessing(api, source):
    password = "correct horse battery staple"
    assert make_user(api, "ada", "operator", password).returncode == 0
    assert make_user(api, "vic", "viewer", password).returncode == 0
    out = make_user(api, "bob", "admin", "short")
    assert out.returncode == 2 and "12 to 1024 characters" in out.stderr
    out = make_user(api, "ada", "admin", password)
    assert out.returncode == 2 and "exists already" in out.stderr
    assert make_user(api, "x", "root", password).returncode == 2
    (stored,) = api.db("SELECT password_hash FROM philotes.users WHERE username = 'ada'")[0]
    assert stored.startswith("$argon2id$") and password not in stored
    admin = api.key("admin")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    s, _, p = api.call("POST", "/api/v1/pipelines", body={"name": "shop", "source_id": src["id"]}, key=admin)
    pid = p["id"]

    problem(*api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": "wrong password!"}), 401)
    problem(*api.call("POST", "/api/v1/auth/login", body={"username": "nobody", "password": password}), 401)
    s, h, session = api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": password})
    assert s == 200 and session["role"] == "operator" and session["csrf_token"], session
    cookie_header = h["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie_header, cookie_header
    cookie = cookie_header.split(";", 1)[0]
    token = cookie.split("=", 1)[1]
    assert api.db("SELECT count(*) FROM philotes.sessions WHERE id_sha256 = sha256(%s::bytea)", (token.encode(),)) == [(1,)]
    me = api.call("GET", "/api/v1/auth/me", headers=session_headers(cookie))[2]
    # A page loaded after the login reads the session's CSRF token here; a key gets none.
    assert me == {"actor": "user:ada", "scope": "operate", "csrf_token": session["csrf_token"]}
    assert "csrf_token" not in api.call("GET", "/api/v1/auth/me", key=admin)[2]
    assert api.call("GET", f"/api/v1/pipelines/{pid}", headers=session_headers(cookie))[0] == 200
    # A change with the cookie alone (what a forged cross-site form sends) is refused.
    b = problem(*api.call("POST", f"/api/v1/pipelines/{pid}/start", headers=session_headers(cookie)), 403)
    assert "X-CSRF-Token" in b["detail"]
    problem(*api.call("POST", f"/api/v1/pipelines/{pid}/start", headers=session_headers(cookie, "not-the-token")), 403)
    s, _, started = api.call("POST", f"/api/v1/pipelines/{pid}/start", headers=session_headers(cookie, session["csrf_token"]))
    assert s == 200 and started["state"] == "running"
    assert api.call("POST", f"/api/v1/pipelines/{pid}/stop", headers=session_headers(cookie, session["csrf_token"]))[0] == 200
    # An operator may not change definitions; a viewer may not operate.
    problem(*api.call("DELETE", f"/api/v1/pipelines/{pid}", headers=session_headers(cookie, session["csrf_token"])), 403)
    s, h, vs = api.call("POST", "/api/v1/auth/login", body={"username": "vic", "password": password})
    vcookie = h["Set-Cookie"].split(";", 1)[0]
    problem(*api.call("POST", f"/api/v1/pipelines/{pid}/start", headers=session_headers(vcookie, vs["csrf_token"])), 403)
    assert api.call("GET", "/api/v1/sources", headers=session_headers(vcookie))[0] == 200
    audit = api.call("GET", "/api/v1/audit", key=admin)[2]["items"]
    assert any(e["action"] == "pipeline.start" and e["actor"] == "user:ada" for e in audit)
    # Logged out: the cookie is worth nothing.
    s, h, _ = api.call("POST", "/api/v1/auth/logout", headers=session_headers(cookie, session["csrf_token"]))
    assert s == 204 and "Max-Age=0" in h["Set-Cookie"]
    problem(*api.call("GET", "/api/v1/auth/me", headers=session_headers(cookie)), 401)
    # Guessing: five wrong passwords and the right one is refused too, for a while.
    for _ in range(4):
        problem(*api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": "guess guess guess"}), 401)
    s, h, b = api.call("POST", "/api/v1/auth/login", body={"username": "ada", "password": password})
    problem(s, h, b, 429)
    assert int(h["Retry-After"]) > 0
    # Another user is not locked out by ada's guesser (below the per-address limit).
    assert api.call("POST", "/api/v1/auth/login", body={"username": "vic", "password": password})[0] == 200
    assert password not in api.role.log.read_text()


def test_admins_manage_people_through_the_api_and_the_last_admin_stays(api):
    password, other = "correct horse battery staple", "another long passphrase"
    assert make_user(api, "root", "admin", password).returncode == 0
    admin, read = api.key("admin"), api.key("read")
    body = {"username": "ops", "role": "operator", "password": password}
    s, h, ops = api.call("POST", "/api/v1/users", key=admin, body=body, headers={"Idempotency-Key": "ops-1"})
    assert s == 201 and h["Location"] == f"/api/v1/users/{ops['id']}" and ops["role"] == "operator", ops
    s, h, again = api.call("POST", "/api/v1/users", key=admin, body=body, headers={"Idempotency-Key": "ops-1"})
    assert s == 201 and again == ops and h["Idempotent-Replayed"] == "true"
    import hashlib
    dump = json.dumps(api.db("SELECT * FROM philotes.idempotency_keys"), default=str)
    assert password not in dump
    # (Nor an unsalted hash of the body, which holds the password.)
    raw = json.dumps(body).encode()
    assert hashlib.sha256(b"users\n" + raw).hexdigest() not in dump.replace("\\x", "")
    problem(*api.call("POST", "/api/v1/users", key=admin, body={**body, "role": "viewer"},
                      headers={"Idempotency-Key": "ops-1"}), 409)
    assert "password" not in json.dumps(ops) and "hash" not in json.dumps(ops)
    users_before = api.db("SELECT id, username, role, password_hash, disabled_at FROM philotes.users ORDER BY id")
    # Refused, and nothing changes.
    problem(*api.call("POST", "/api/v1/users", key=read, body={"username": "x", "role": "viewer", "password": password}), 403)
    problem(*api.call("POST", "/api/v1/users", key=admin, body={"username": "ops", "role": "viewer", "password": password}), 409)
    b = problem(*api.call("POST", "/api/v1/users", key=admin, body={"username": "eve", "role": "viewer", "password": "short"}), 422)
    assert b["errors"][0]["field"] == "password", b
    problem(*api.call("POST", "/api/v1/users", key=admin, body={"username": "eve", "role": "root", "password": password}), 422)
    problem(*api.call("PATCH", f"/api/v1/users/{ops['id']}", key=admin, body={"is_admin": True}), 422)
    problem(*api.call("PATCH", "/api/v1/users/999999", key=admin, body={"role": "admin"}), 404)
    problem(*api.call("GET", "/api/v1/users", key=read), 403)
    assert api.db("SELECT id, username, role, password_hash, disabled_at FROM philotes.users ORDER BY id") == users_before
    listed = api.call("GET", "/api/v1/users", key=admin)[2]["items"]
    assert [(u["username"], u["role"]) for u in listed] == [("root", "admin"), ("ops", "operator")]

    def login(username, pw):
        s, h, body = api.call("POST", "/api/v1/auth/login", body={"username": username, "password": pw})
        return (h["Set-Cookie"].split(";", 1)[0], body["csrf_token"]) if s == 200 else s
    cookie, csrf = login("ops", password)
    # A new role applies to the next request; a new password or disabling ends the sessions.
    assert api.call("PATCH", f"/api/v1/users/{ops['id']}", key=admin, body={"role": "viewer"})[0] == 200
    assert api.call("GET", "/api/v1/auth/me", headers=session_headers(cookie))[2]["scope"] == "read"
    s, _, u = api.call("PATCH", f"/api/v1/users/{ops['id']}", key=admin, body={"password": other})
    assert s == 200 and u["role"] == "viewer"
    problem(*api.call("GET", "/api/v1/auth/me", headers=session_headers(cookie)), 401)
    assert login("ops", password) == 401
    cookie, csrf = login("ops", other)
    assert api.call("PATCH", f"/api/v1/users/{ops['id']}", key=admin, body={"disabled": True})[2]["disabled_at"]
    problem(*api.call("GET", "/api/v1/auth/me", headers=session_headers(cookie)), 401)
    assert login("ops", other) == 401
    assert api.call("PATCH", f"/api/v1/users/{ops['id']}", key=admin, body={"disabled": False})[2]["disabled_at"] is None
    # One's own password, with the current one: the other sessions end, this one goes on.
    first, first_csrf = login("ops", other)
    second, second_csrf = login("ops", other)
    b = problem(*api.call("POST", "/api/v1/auth/password", headers=session_headers(first, first_csrf),
                          body={"current_password": "not it at all", "new_password": password}), 422)
    assert b["errors"][0]["field"] == "current_password"
    problem(*api.call("POST", "/api/v1/auth/password", headers=session_headers(first),
                      body={"current_password": other, "new_password": password}), 403)
    assert api.call("POST", "/api/v1/auth/password", headers=session_headers(first, first_csrf),
                    body={"current_password": other, "new_password": password})[0] == 204
    assert api.call("GET", "/api/v1/auth/me", headers=session_headers(first))[0] == 200
    problem(*api.call("GET", "/api/v1/auth/me", headers=session_headers(second)), 401)
    problem(*api.call("POST", "/api/v1/auth/password", key=admin,
                      body={"current_password": other, "new_password": password}), 409)
    # The last admin cannot be demoted, disabled or deleted.
    (root_id,) = api.db("SELECT id FROM philotes.users WHERE username = 'root'")[0]
    for method, body in (("PATCH", {"role": "operator"}), ("PATCH", {"disabled": True}), ("DELETE", None)):
        b = problem(*api.call(method, f"/api/v1/users/{root_id}", key=admin, body=body), 409)
        assert "last admin" in b["detail"]
    assert api.db("SELECT role, disabled_at FROM philotes.users WHERE id = %s", (root_id,)) == [("admin", None)]
    # The CLI, over the API: a second admin, then the first may go.
    out = cli(api, "user", "create", "--username", "ada", "--role", "admin", key=admin, env={"PHILOTES_USER_PASSWORD": password})
    assert out.returncode == 0 and "ada" in out.stdout and "admin" in out.stdout, out.stdout + out.stderr
    out = cli(api, "user", "update", "root", "--role", "viewer", key=admin)
    assert out.returncode == 0 and "viewer" in out.stdout, out.stdout + out.stderr
    out = cli(api, "user", "update", "ada", "--disable", key=admin)
    assert out.returncode != 0 and "last admin" in out.stderr, out.stdout + out.stderr
    out = cli(api, "user", "delete", "ops", key=admin)
    assert out.returncode == 0 and "deleted" in out.stdout, out.stderr
    out = cli(api, "user", "delete", "nobody", key=admin)
    assert out.returncode != 0 and "no user nobody" in out.stderr, out.stderr
    out = cli(api, "user", "list", key=admin)
    assert [line.split()[1:3] for line in out.stdout.splitlines()[1:]] == [["root", "viewer"], ["ada", "admin"]], out.stdout
    # API keys from the CLI, over the API.
    out = cli(api, "api-key", "create", "--name", "grafana", "--scope", "read", key=admin)
    assert out.returncode == 0 and "shown this once" in out.stderr, out.stderr
    token = out.stdout.strip()
    assert api.call("GET", "/api/v1/version", key=token)[0] == 200
    out = cli(api, "api-key", "list", "-o", "json", key=admin)
    (made,) = [k for k in json.loads(out.stdout) if k["name"] == "grafana"]
    assert made["scope"] == "read" and made["created_by"].startswith("key:") and "token" not in made
    out = cli(api, "api-key", "revoke", made["id"], key=admin)
    assert out.returncode == 0 and "revoked" in out.stdout, out.stderr
    problem(*api.call("GET", "/api/v1/version", key=token), 401)
    actions = [e["action"] for e in api.call("GET", "/api/v1/audit?limit=500", key=admin)[2]["items"]]
    for a in ("user.create", "user.update", "user.delete", "user.password", "api-key.create", "api-key.revoke"):
        assert a in actions, (a, actions)
    log = api.role.log.read_text()
    assert password not in log and other not in log


def cli(api, *args, key=None, env=None, input=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_API")}
    e.update({"PHILOTES_API_URL": api.url, "PHILOTES_CLI_CONFIG": "/nonexistent"})
    if key:
        e["PHILOTES_API_KEY"] = key
    e.update(env or {})
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=120, env=e, input=input)


def test_the_cli_drives_the_api_for_people_and_scripts(api, source, tmp_path):
    admin, read = api.key("admin"), api.key("read")
    source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, v text)")
    source.sql("CREATE TABLE events (at timestamptz, what text)")
    host, port = source.cluster.url().split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    out = cli(api, "source", "create", "--name", "shop", "--host", host, "--port", port, "--database", source.name,
              "--user", "postgres", "--sslmode", "disable", key=admin, env={"PHILOTES_SOURCE_PASSWORD": PLANTED})
    assert out.returncode == 0 and "source 1 (shop) added" in out.stdout, out.stderr
    out = cli(api, "source", "list", key=read)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "HOST", "PORT", "DATABASE", "USER", "PASSWORD", "SSLMODE"]
    assert row.split()[:2] == ["1", "shop"] and "set" in row.split() and PLANTED not in out.stdout
    out = cli(api, "source", "list", "-o", "json", key=read)
    assert json.loads(out.stdout)[0]["name"] == "shop"
    out = cli(api, "source", "test", "1", key=admin)
    assert out.returncode == 0 and "wal_level" in out.stdout and "NO" not in out.stdout, out.stdout + out.stderr
    out = cli(api, "source", "tables", "1", key=read)
    assert "public.orders" in out.stdout and "REPLICA IDENTITY FULL" in out.stdout, out.stdout
    # Refusals print the API's words and exit non-zero.
    out = cli(api, "source", "create", "--name", "Bad Name", "--host", host, "--database", "d", "--user", "u", key=admin)
    assert out.returncode != 0 and "name: 1 to 63 characters" in out.stderr, out.stderr
    out = cli(api, "source", "delete", "1", key=read)
    assert out.returncode != 0 and "scope `admin`" in out.stderr, out.stderr
    out = cli(api, "source", "list")
    assert out.returncode == 2 and "PHILOTES_API_KEY" in out.stderr, out.stderr
    out = cli(api, "source", "list", key=read, env={"PHILOTES_API_URL": "http://127.0.0.1:1"})
    assert out.returncode != 0 and "is `philotes api` running there?" in out.stderr, out.stderr
    # The key and URL from the CLI's config file.
    config = tmp_path / "cli.toml"
    config.write_text(f'api_url = "{api.url}"\napi_key = "{admin}"\n')
    e = {k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_API")}
    out = subprocess.run([str(BINARY), "pipeline", "create", "--name", "shop", "--source", "1", "--tables", "public.orders",
                          "--flush-interval", "500ms"], capture_output=True, text=True, timeout=60,
                         env={**e, "PHILOTES_CLI_CONFIG": str(config)})
    assert out.returncode == 0 and "philotes_shop" in out.stdout and "stopped" in out.stdout, out.stderr
    out = cli(api, "pipeline", "list", "-o", "json", key=read)
    (p,) = json.loads(out.stdout)
    assert p["tables"] == ["public.orders"] and p["flush_interval"] == "500ms"
    assert "running" in cli(api, "pipeline", "start", str(p["id"]), key=admin).stdout
    out = cli(api, "pipeline", "status", str(p["id"]), key=read)
    assert out.returncode == 0 and "state running" in out.stdout, out.stdout + out.stderr
    out = cli(api, "pipeline", "history", str(p["id"]), key=read)
    assert out.returncode == 0 and "BUFFERED/S" in out.stdout, out.stdout + out.stderr
    # A config file the CLI cannot read is refused without quoting it (it holds the key).
    bad = tmp_path / "bad.toml"
    bad.write_text("api_key = phk_000000000000_unquotedsecret\n")
    e = {k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_")}
    out = subprocess.run([str(BINARY), "pipeline", "list"], capture_output=True, text=True, timeout=60,
                         env={**e, "PHILOTES_CLI_CONFIG": str(bad)})
    assert out.returncode != 0 and "not valid TOML" in out.stderr, out.stderr
    assert "unquotedsecret" not in out.stderr + out.stdout
    assert "stopped" in cli(api, "pipeline", "stop", str(p["id"]), key=admin).stdout
    out = cli(api, "pipeline", "delete", str(p["id"]), key=admin)
    assert out.returncode == 0 and "deleted" in out.stdout, out.stderr
    assert cli(api, "pipeline", "list", "-o", "json", key=read).stdout.strip() == "[]"


def test_the_platform_script_runs_api_ingest_and_a_worker_on_one_machine(cluster, source, tmp_path):
    """The README's "run the platform": the script, a key it made, a source and a pipeline
    added with the CLI, rows in the lake."""
    from test_service import lake_equals_source
    ctl = control_db(cluster, "platform_script_ctl")
    port = free_port()
    data = tmp_path / "platform"
    log = open(tmp_path / "platform.log", "w")
    script = subprocess.Popen(["bash", str(ROOT / "deployments" / "scripts" / "platform.sh"), ctl, str(data)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("PHILOTES_")},
                                   "PHILOTES_BIN": str(BINARY), "PHILOTES_API_LISTEN": f"127.0.0.1:{port}"})
    try:
        api = Api(f"http://127.0.0.1:{port}", ctl, None)
        wait_for("the platform", lambda: script.poll() is None and _ready(port), timeout=120)
        assert oct((data / "encryption.key").stat().st_mode)[-3:] == "600"
        key = (data / "admin.key").read_text().strip()
        source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, v text)")
        source.sql("INSERT INTO orders SELECT g, 'v' FROM generate_series(1, 300) g")
        host, pg_port = source.cluster.url().split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
        assert cli(api, "source", "create", "--name", "shop", "--host", host, "--port", pg_port, "--database", source.name,
                   "--user", "postgres", "--sslmode", "disable", key=key).returncode == 0
        out = cli(api, "pipeline", "create", "--name", "shop", "--source", "1", key=key)
        assert out.returncode == 0, out.stderr
        assert cli(api, "pipeline", "start", "1", key=key).returncode == 0
        source.data_dir = data / "pipelines" / "philotes_shop"
        wait_for("the catalog", lambda: (source.data_dir / "catalog.db").exists(), timeout=120)
        lake = source.lake()
        source.sql("INSERT INTO orders VALUES (1000, 'streamed')")
        wait_for("the lake", lambda: lake_equals_source(source, lake, [("orders", ["id"])]), timeout=180, every=0.5)
    finally:
        os.killpg(script.pid, signal.SIGTERM)
        code = script.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "platform.log").read_text()[-3000:]
    assert "platform: running" in (tmp_path / "platform.log").read_text()
