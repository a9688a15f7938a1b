"""The monitoring kit (deployments/monitoring/) checked by its ecosystem's own tools: promtool
checks and unit-tests the alert rules, amtool checks the Alertmanager example, every metric an
alert reads is one a real Philotes process serves, and every alert has its runbook section."""
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from conftest import ROOT
from pgcluster import free_port
from test_telemetry import Running, http_get, sample, wait_for

MONITORING = ROOT / "deployments" / "monitoring"


def rules():
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_checks_and_unit_tests_the_alert_rules():
    out = subprocess.run(["promtool", "check", "rules", str(MONITORING / "alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(["promtool", "test", "rules", "alerts.test.yml"], cwd=MONITORING,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    # Every alert is exercised by a test that expects it to fire.
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert fired == {r["alert"] for r in rules()}, fired ^ {r["alert"] for r in rules()}


def test_amtool_accepts_the_alertmanager_example():
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: deployments/scripts/test-env.sh installs prometheus-alertmanager"
    out = subprocess.run([amtool, "check-config", str(MONITORING / "alertmanager.example.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    assert "3 receivers" in out.stdout and "2 inhibit rules" in out.stdout, out.stdout


def test_every_alert_has_a_runbook_section():
    doc = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^### (\S+)$", doc, re.M))
    for r in rules():
        name = r["alert"]
        assert name in headings, f"docs/operations.md has no section for {name}"
        assert r["annotations"]["runbook_url"].endswith("docs/operations.md#" + name.lower()), r
        assert r["labels"]["severity"] in ("warning", "critical"), r
        assert r["annotations"]["summary"] and r["annotations"]["description"], r


def declared_metrics():
    """Every metric the code declares (docs/metrics.md, which a unit test of
    philotes-telemetry keeps equal to the registry)."""
    doc = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(philotes_[a-z_]+)` \|", doc, re.M))


def scraped_metrics(source, tmp_path):
    """The metric names a real `philotes run` serves while it copies, streams and commits."""
    source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, note text)")
    source.sql("INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 200) g")
    port = free_port()
    run = Running(source.philotes_cmd("--metrics-addr", f"127.0.0.1:{port}", "--flush-interval", "200ms",
                                      "--maintenance-interval", "1s"), tmp_path / "run.log")
    try:
        source.sql("INSERT INTO orders SELECT g, 'm' || g FROM generate_series(201, 300) g")

        def committed():
            run.alive()
            try:
                status, text = http_get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return None
            v = sample(text, "philotes_committed_rows_total", table="public.orders") if status == 200 else None
            return text if v is not None and v >= 300 else None
        text = wait_for("300 committed rows in /metrics", committed)
    finally:
        run.stop()
    return {re.sub(r"(_total|_bucket|_sum|_count)$", "", line.split("{")[0].split(" ")[0])
            for line in text.splitlines() if line.startswith("philotes_")}


def referenced(expr):
    return set(re.findall(r"\b(philotes_[a-z_]+)", expr))


def check_metrics(where, expr, scraped, declared):
    names = referenced(expr)
    assert names, (where, expr)
    for m in names:
        base = re.sub(r"_(bucket|sum|count|total)$", "", m)
        assert m in declared or base + "_total" in declared or base in declared, \
            f"{where}: {expr} reads {m}, which Philotes does not export"
        # What streaming always records must be in the real scrape under that very name.
        if m in CORE:
            assert base in scraped, f"{where}: {m} is not in a real scrape: {sorted(scraped)}"


# Recorded by every streaming run (the rest only on events: dead letters, retries, errors).
CORE = {"philotes_buffer_depth", "philotes_source_connected", "philotes_replication_lag_bytes",
        "philotes_replication_lag_seconds", "philotes_slot_retained_wal_bytes", "philotes_slot_wal_status",
        "philotes_ingested_rows_total", "philotes_committed_rows_total", "philotes_commits_total",
        "philotes_commit_duration_seconds_bucket", "philotes_table_stopped", "philotes_snapshot_in_progress"}


def test_every_metric_an_alert_or_a_dashboard_reads_is_exported(source, tmp_path):
    scraped = scraped_metrics(source, tmp_path)
    declared = declared_metrics()
    assert {re.sub(r"_bucket$", "", m) for m in CORE} <= declared, sorted(declared)
    for r in rules():
        check_metrics(r["alert"], r["expr"], scraped, declared)
    boards = dashboards()
    assert boards, "no dashboards in deployments/monitoring/grafana"
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids))
    for name, board in boards.items():
        queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        queries += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
        assert len(queries) > len(board["panels"]) / 2, name
        for q in queries:
            check_metrics(name, q, scraped, declared)
        # Every panel reads Prometheus through the dashboard's data source variable.
        for p in board["panels"]:
            assert p["datasource"]["uid"] == "${datasource}", (name, p["title"])


def dashboards():
    import json
    return {p.name: json.loads(p.read_text()) for p in sorted((MONITORING / "grafana").glob("*.json"))}
