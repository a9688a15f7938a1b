"""The Dagster integration (integrations/dagster) against the real `philotes api`, managed ingest
and worker roles and a real PostgreSQL source — no imitation of the API anywhere.

Dagster lives in its own virtualenv (.venv-dagster, made by deployments/scripts/dagster-env.sh):
its pins (grpcio, protobuf, SQLAlchemy, pydantic, …) are not this virtualenv's. So this test
does the platform's side here — the source, the pipeline, the copy, rows arriving — and runs the
Dagster side there, with Dagster's own test tools (integrations/dagster/tests/test_live.py),
phase by phase, handing it what the API said in a JSON file.
"""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, stop_roles
from test_api import api, source_body, start_managed  # noqa: F401 (the `api` fixture)
from test_telemetry import wait_for

DAGSTER_VENV = Path(os.environ.get("PHILOTES_DAGSTER_VENV", ROOT / ".venv-dagster"))
INTEGRATION = ROOT / "integrations" / "dagster"
LIVE = INTEGRATION / "tests" / "test_live.py"
FIRST_PHASE = [
    "test_assets_are_the_tables_the_api_lists",
    "test_the_readme_example_loads_against_the_api",
    "test_freshness_is_what_the_api_says",
    "test_the_sensor_asks_once_per_move_and_never_for_an_unchanged_table",
    "test_a_wrong_or_revoked_key_says_what_to_do_and_never_shows_the_key",
    "test_an_api_that_does_not_answer_says_what_to_do",
]
AFTER_ROWS = ["test_after_rows_arrive_the_sensor_asks_for_exactly_the_moved_table"]
PAUSED = ["test_when_paused_the_freshness_check_fails_and_says_why"]


def dagster_pytest():
    """.venv-dagster's pytest, made by dagster-env.sh from exactly the files it holds now."""
    pytest_bin = DAGSTER_VENV / "bin" / "pytest"
    install = "run deployments/scripts/dagster-env.sh (it installs the pinned Dagster and integrations/dagster"
    if not pytest_bin.exists():
        pytest.fail(f"{pytest_bin} is missing: {install} into {DAGSTER_VENV})")
    # The same digest dagster-env.sh leaves in the virtualenv.
    want = hashlib.sha256((INTEGRATION / "requirements.lock").read_bytes()
                          + (INTEGRATION / "pyproject.toml").read_bytes()).hexdigest()
    stamp = DAGSTER_VENV / ".philotes-dagster"
    if not stamp.exists() or stamp.read_text().strip() != want:
        pytest.fail(f"{DAGSTER_VENV} is older than integrations/dagster/requirements.lock: {install} again)")
    return pytest_bin


def dagster_tests(names, platform, key, state):
    """Run `names` of test_live.py with .venv-dagster's pytest against the live API; every one
    must pass (none skipped), and the key must show nowhere in what they print."""
    pytest_bin = dagster_pytest()
    env = {**os.environ, "PHILOTES_API_URL": platform.url, "PHILOTES_API_KEY": key,
           "PHILOTES_DAGSTER_STATE": str(state), "PYTHONPATH": str(INTEGRATION),
           "DAGSTER_HOME": str(state / "dagster-home")}
    (state / "dagster-home").mkdir(exist_ok=True)
    # (A deprecation in Dagster's API fails the run: it would break at the next upgrade.)
    cmd = [str(pytest_bin), "-q", "-rA", "-p", "no:cacheprovider", "-W", "error::DeprecationWarning",
           *(f"{LIVE}::{n}" for n in names)]
    out = subprocess.run(cmd, cwd=INTEGRATION, env=env, capture_output=True, text=True, timeout=600, check=False)
    report = out.stdout[-12000:] + out.stderr[-4000:]
    assert out.returncode == 0, report
    assert f"{len(names)} passed" in out.stdout and "skipped" not in out.stdout, report
    assert key not in out.stdout + out.stderr
    # The Dagster side's own summary (and any warning), in this test's report.
    print(out.stdout[out.stdout.find("warnings summary"):out.stdout.find("= PASSES =")]
          if "warnings summary" in out.stdout else "")
    print(out.stdout[out.stdout.find("short test summary info"):])


def said(platform, key, **extra):
    """What the API says now: every pipeline and its status."""
    s, _, page = platform.call("GET", "/api/v1/pipelines", key=key)
    assert s == 200, page
    status = {}
    for p in page["items"]:
        s, _, status[str(p["id"])] = platform.call("GET", f"/api/v1/pipelines/{p['id']}/status", key=key)
        assert s == 200, status
    return {"pipelines": page["items"], "status": status, **extra}


def test_dagster_sees_the_tables_and_starts_a_run_when_one_moves(api, source, tmp_path):  # noqa: F811
    dagster_pytest()  # before anything starts: the Dagster side must be installed
    admin, operate, read = api.key("admin"), api.key("operate"), api.key("read")
    s, _, made = api.call("POST", "/api/v1/api-keys", body={"name": "revoked", "scope": "read"}, key=admin)
    assert s == 201 and api.call("DELETE", f"/api/v1/api-keys/{made['key']['id']}", key=admin)[0] == 204
    source.sql("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
    source.sql("CREATE TABLE customers (id int PRIMARY KEY, name text)")
    source.sql("CREATE SCHEMA sales")
    source.sql("CREATE TABLE sales.invoices (id int PRIMARY KEY, amount numeric)")
    source.sql("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g")
    source.sql("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g")
    source.sql("INSERT INTO sales.invoices SELECT g, g FROM generate_series(1, 20) g")
    s, _, src = api.call("POST", "/api/v1/sources", body=source_body(source, name="shop", user="postgres"), key=admin)
    assert s == 201, src
    s, _, p = api.call("POST", "/api/v1/pipelines", key=admin,
                       body={"name": "shop", "source_id": src["id"], "flush_interval": "200ms"})
    assert s == 201, p
    pid = p["id"]
    names = ["public.customers", "public.orders", "sales.invoices"]
    roles, _lake = start_managed(api, source, pid, operate, tmp_path)
    try:
        def tables():
            s, _, st = api.call("GET", f"/api/v1/pipelines/{pid}/status", key=read)
            assert s == 200, st
            return {t["name"]: t for t in st["tables"]}

        def copied():
            t = tables()
            return sorted(t) == names and all(x["state"] == "streaming" and x["lake_lsn"] and x["buffered_changes"] == 0
                                              for x in t.values()) and t
        before = wait_for("the copies", copied, timeout=180, every=0.5)
        state = tmp_path / "dagster"
        state.mkdir()
        (state / "expect.json").write_text(json.dumps(said(api, read, revoked_key=made["token"])))
        dagster_tests(FIRST_PHASE, api, read, state)
        # Nothing moved while Dagster looked.
        assert {n: t["lake_lsn"] for n, t in tables().items()} == {n: t["lake_lsn"] for n, t in before.items()}

        # Rows into one table (one transaction): its watermark moves, the others' stay.
        source.sql("INSERT INTO orders SELECT g, g FROM generate_series(501, 510) g")

        def orders_moved():
            t = tables()
            return (t["public.orders"]["lake_lsn"] != before["public.orders"]["lake_lsn"]
                    and t["public.orders"]["buffered_changes"] == 0 and t)
        after = wait_for("the orders watermark to move", orders_moved, timeout=120, every=0.3)
        assert after["public.orders"]["changes_in_lake"] == before["public.orders"]["changes_in_lake"] + 10
        for n in ("public.customers", "sales.invoices"):
            assert after[n]["lake_lsn"] == before[n]["lake_lsn"], (n, after[n], before[n])
        (state / "expect.json").write_text(json.dumps(said(api, read, moved=["public.orders"])))
        dagster_tests(AFTER_ROWS, api, read, state)
        # Paused, the pipeline no longer follows its source: the freshness check says so.
        assert api.call("POST", f"/api/v1/pipelines/{pid}/pause", key=operate)[0] == 200
        (state / "expect.json").write_text(json.dumps(said(api, read)))
        dagster_tests(PAUSED, api, read, state)
        for r in roles:
            assert r.alive(), r.tail()
    finally:
        stop_roles(roles)
