"""Preflight: a misconfigured source gets an error that says how to fix it, and secrets stay
out of every message."""
import subprocess
from pathlib import Path

import psycopg
import pytest

from conftest import BINARY, run_philotes
from certs import make_certs
from pgcluster import Cluster


def philotes(url, tmp_path, *args, env=None):
    cmd = [str(BINARY), "run", "--source", url, "--data-dir", str(tmp_path / "data"), "--until-caught-up", *args]
    return run_philotes(cmd, check=False, env=env, timeout=120)


@pytest.fixture
def replica_level_cluster():
    c = Cluster(settings={"wal_level": "replica"})
    yield c
    c.stop()


def test_wal_level_must_be_logical(replica_level_cluster, tmp_path):
    code, err, _ = philotes(replica_level_cluster.url(), tmp_path)
    assert code == 1
    assert "wal_level = replica" in err and "wal_level = logical" in err and "restart" in err


def test_replication_privilege_and_password_redaction(source, tmp_path):
    source.sql("CREATE ROLE app LOGIN PASSWORD 'pw-s3cret-123'")
    source.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO app")
    url = source.url.replace("postgres://postgres@", "postgres://app:pw-s3cret-123@")
    code, err, _ = philotes(url, tmp_path)
    assert code == 1 and 'ALTER ROLE "app" WITH REPLICATION' in err
    assert "pw-s3cret-123" not in err
    # An unreachable server: the message shows the URL without the password.
    dead = "postgres://app:pw-s3cret-123@127.0.0.1:1/nowhere?sslmode=disable"
    code, err, _ = philotes(dead, tmp_path)
    assert code == 1 and "cannot connect" in err and "app:***@127.0.0.1:1" in err
    assert "pw-s3cret-123" not in err
    # The same through the environment.
    code, err, _ = run_philotes([str(BINARY), "run", "--data-dir", str(tmp_path / "d")], check=False,
                                env={"PHILOTES_SOURCE": dead, "PHILOTES_UNTIL_CAUGHT_UP": "true"})
    assert code == 1 and "pw-s3cret-123" not in err


def test_not_enough_replication_slots(tmp_path):
    c = Cluster(settings={"max_replication_slots": "1"})
    try:
        code, err, _ = philotes(c.url(), tmp_path)
        assert code == 1 and "max_replication_slots" in err and "needs 2" in err
    finally:
        c.stop()


def test_missing_source_is_a_config_error(tmp_path):
    code, err, _ = run_philotes([str(BINARY), "run", "--data-dir", str(tmp_path)], check=False)
    assert code == 2 and "--source" in err and "PHILOTES_SOURCE" in err


@pytest.fixture
def tls_cluster(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs)

    def install(cluster):
        import os
        import pwd
        import shutil
        for name in ("server.pem", "server.key"):
            shutil.copy(certs / name, cluster.data / name)
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(cluster.data / name, pw.pw_uid, pw.pw_gid)
        os.chmod(cluster.data / "server.key", 0o600)

    c = Cluster(settings={"ssl": "on", "ssl_cert_file": "server.pem", "ssl_key_file": "server.key"}, before_start=install)
    yield c, certs / "ca.pem"
    c.stop()


def test_tls_verify_full(tls_cluster, tmp_path):
    c, ca = tls_cluster
    with psycopg.connect(c.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE secure (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO secure VALUES (1, 'a')")
    good = f"postgres://postgres@localhost:{c.port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    code, err, _ = philotes(good, tmp_path)
    assert code == 0, err
    with psycopg.connect(c.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO secure VALUES (2, 'b')")
        # Both the SQL connections and the replication connection were encrypted.
        code2, err2, _ = philotes(good, tmp_path)
        assert code2 == 0, err2
    from lake import Lake
    rows = Lake(tmp_path / "data").changelog("public.secure__changelog")
    assert [(r["_cdc_op"], r["id"]) for r in rows] == [("S", 1), ("I", 2)]
    # The certificate names `localhost`, not 127.0.0.1: verify-full refuses it.
    wrong_host = f"postgres://postgres@127.0.0.1:{c.port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    code, err, _ = philotes(wrong_host, tmp_path / "other")
    assert code == 1 and "cannot connect" in err
    # require encrypts without checking the certificate, as libpq does.
    code, err, _ = philotes(f"postgres://postgres@127.0.0.1:{c.port}/postgres?sslmode=require", tmp_path / "req", "--slot", "req_slot")
    assert code == 0, err
