"""End-to-end: `philotes migrate` against a real PostgreSQL control database, and what it says
when the control database is missing, unreachable or not allowed to hold the schema."""
import os
import subprocess

import psycopg

from conftest import BINARY


def migrate(*args, env=None):
    return subprocess.run([str(BINARY), "migrate", *args], capture_output=True, text=True, timeout=120, env=env)


def test_migrate_creates_the_schema_once(cluster):
    with psycopg.connect(cluster.url(), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS control_e2e")
        c.execute("CREATE DATABASE control_e2e")
    url = cluster.url("control_e2e")
    out = migrate("--buffer-url", url)
    assert out.returncode == 0, out.stderr
    assert "migrated to version 10 (applied 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)" in out.stdout, out.stdout
    out = migrate("--buffer-url", url)
    assert out.returncode == 0, out.stderr
    assert "is up to date (version 10)" in out.stdout, out.stdout
    with psycopg.connect(url) as c:
        tables = {r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'philotes'")}
        assert tables == {"schema_migrations", "pipelines", "tables", "changes", "relations", "dead_letters",
                          "api_keys", "sources", "audit_log", "idempotency_keys", "pipeline_specs",
                          "users", "sessions", "login_failures", "verify_runs", "pipeline_history", "commits"}, tables
        assert c.execute("SELECT version, name FROM philotes.schema_migrations").fetchall() == [(1, "control"), (2, "roles"), (3, "api"), (4, "pipelines"), (5, "users"), (6, "verify"), (7, "history"), (8, "table_progress"), (9, "buffered_now"), (10, "commits")]


def test_migrate_says_what_is_wrong(cluster, tmp_path):
    out = migrate()
    assert out.returncode == 2, out.stderr
    assert "no control database: set --buffer-url or PHILOTES_BUFFER_URL" in out.stderr, out.stderr

    # Nothing listens there; the password is never printed.
    out = migrate("--buffer-url", "postgres://philotes:hunter2@127.0.0.1:1/control?sslmode=disable")
    assert out.returncode != 0
    assert "cannot connect to the control database (--buffer-url)" in out.stderr, out.stderr
    assert "hunter2" not in out.stderr + out.stdout

    # A database that does not exist.
    out = migrate("--buffer-url", cluster.url("no_such_database"))
    assert out.returncode != 0
    assert "no_such_database" in out.stderr and "does not exist" in out.stderr, out.stderr

    # A role that may not create the schema: told what to grant; nothing is created.
    with psycopg.connect(cluster.url(), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS control_locked")
        c.execute("CREATE DATABASE control_locked")
        c.execute("DROP ROLE IF EXISTS control_plain")
        c.execute("CREATE ROLE control_plain LOGIN")
        c.execute("REVOKE CREATE ON DATABASE control_locked FROM PUBLIC")
    url = f"postgres://control_plain@127.0.0.1:{cluster.port}/control_locked?sslmode=disable"
    out = migrate("--buffer-url", url)
    assert out.returncode == 2, out.stderr
    assert "CREATE SCHEMA philotes AUTHORIZATION" in out.stderr, out.stderr
    with psycopg.connect(cluster.url("control_locked")) as c:
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'philotes'").fetchone() == (0,)
    # The variable works as the flag does.
    out = migrate(env={**os.environ, "PHILOTES_BUFFER_URL": cluster.url("control_locked")})
    assert out.returncode == 0, out.stderr
