"""Backups of the control database: deployments/scripts/backup-db.sh to a real S3 server (moto)
with a checksum and retention, and restore-db.sh into an empty database, compared table by table
with the original — which holds what a running platform holds: keys, users, and changes ingest
buffered that no worker has written yet."""
import os
import subprocess
from pathlib import Path

import psycopg

from conftest import BINARY, ROOT
from pgcluster import pg_bin
from test_s3 import s3  # noqa: F401  (the fixture)
from test_service import Role, control_db, copied_tables, wait_for

SCRIPTS = ROOT / "deployments" / "scripts"
AWS = Path(os.environ.get("PHILOTES_AWSCLI_VENV", ROOT / ".venv-awscli")) / "bin"


def fingerprint(url):
    """Per table of the `philotes` schema: its row count and a digest of its rows; and the
    values of its sequences."""
    out = {}
    with psycopg.connect(url) as c:
        tables = [r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'philotes' ORDER BY 1")]
        for t in tables:
            out[t] = c.execute(
                f"SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM philotes.{t} r").fetchone()
        for (s,) in c.execute("SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'philotes'").fetchall():
            out[f"sequence {s}"] = c.execute(f"SELECT last_value, is_called FROM philotes.{s}").fetchone()
    return out


def script(name, *args, env):
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300, env=env)


def test_backup_to_s3_and_restore_gives_the_same_control_database(source, cluster, s3, tmp_path):  # noqa: F811
    endpoint, client = s3
    ctl = control_db(cluster, f"{source.name}_ctl")
    # What a platform holds: a key, an admin, and buffered changes no worker has written yet.
    subprocess.run([str(BINARY), "api-key", "create", "--name", "ci", "--scope", "admin", "--buffer-url", ctl],
                   check=True, capture_output=True)
    subprocess.run([str(BINARY), "user", "create", "--username", "ada", "--role", "admin", "--buffer-url", ctl],
                   check=True, capture_output=True, env={**os.environ, "PHILOTES_USER_PASSWORD": "correct horse battery"})
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v text, b bytea)")
    ingest = Role(["ingest", "--source", source.url, "--data-dir", str(source.data_dir), "--buffer-url", ctl,
                   "--flush-interval", "200ms"], tmp_path / "ingest.log")
    try:
        wait_for("ingest to stream", lambda: copied_tables(ctl) == 1, timeout=120)
        source.sql("INSERT INTO t SELECT g, repeat('v', g % 50), decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g")
        with psycopg.connect(ctl) as c:
            wait_for("changes in the buffer", lambda: c.execute("SELECT count(*) FROM philotes.changes").fetchone()[0] == 3000,
                     timeout=60)
    finally:
        assert ingest.stop() == 0, ingest.tail()
    before = fingerprint(ctl)
    assert before["changes"][0] == 3000 and before["api_keys"][0] == 1 and before["users"][0] == 1, before

    env = {**os.environ, "PATH": f"{AWS}:{pg_bin()}:{os.environ['PATH']}", "AWS_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "philotes", "AWS_SECRET_ACCESS_KEY": "s3cr3t-key", "AWS_DEFAULT_REGION": "eu-central-1"}
    # A dump older than the retention, and an object that is no dump: only the first goes.
    for key in ("backups/philotes-control-20200101T000000Z.dump", "backups/philotes-control-20200101T000000Z.dump.sha256",
                "backups/notes.txt"):
        client.put_object(Bucket="lake", Key=key, Body=b"old")
    out = script("backup-db.sh", env={**env, "PHILOTES_BUFFER_URL": ctl, "PHILOTES_BACKUP_S3_URI": "s3://lake/backups",
                                      "PHILOTES_BACKUP_RETENTION_DAYS": "14"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "postgres://" not in out.stdout + out.stderr, "the URL (it may hold a password) was printed"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="lake", Prefix="backups/")["Contents"])
    dumps = [k for k in keys if k.endswith(".dump")]
    assert len(dumps) == 1 and dumps[0] + ".sha256" in keys and "backups/notes.txt" in keys, keys
    assert "20200101" not in " ".join(keys)
    assert "deleted s3://lake/backups/philotes-control-20200101T000000Z.dump " in out.stdout, out.stdout

    # Restore the newest into an empty database: the same rows, keys, users, buffered changes.
    restored = control_db(cluster, f"{source.name}_restored")
    out = script("restore-db.sh", "s3://lake/backups", "latest", env={**env, "PHILOTES_RESTORE_URL": restored})
    assert out.returncode == 0, out.stdout + out.stderr
    assert fingerprint(restored) == before
    # The restored database is one the binaries accept as it is.
    mig = subprocess.run([str(BINARY), "migrate", "--buffer-url", restored], capture_output=True, text=True)
    assert mig.returncode == 0 and "is up to date" in mig.stdout, mig.stdout + mig.stderr

    # A restore into a database that already has the schema is refused, and changes nothing.
    out = script("restore-db.sh", "s3://" + "lake/" + dumps[0], env={**env, "PHILOTES_RESTORE_URL": restored})
    assert out.returncode == 2 and "already has a philotes schema" in out.stderr, out.stderr
    assert fingerprint(restored) == before
    # A damaged dump is refused before anything is restored.
    body = client.get_object(Bucket="lake", Key=dumps[0])["Body"].read()
    client.put_object(Bucket="lake", Key="broken/" + dumps[0].split("/")[-1], Body=body[:-10] + b"0123456789")
    sha = client.get_object(Bucket="lake", Key=dumps[0] + ".sha256")["Body"].read()
    client.put_object(Bucket="lake", Key="broken/" + dumps[0].split("/")[-1] + ".sha256", Body=sha)
    empty = control_db(cluster, f"{source.name}_empty")
    out = script("restore-db.sh", "s3://lake/broken", "latest", env={**env, "PHILOTES_RESTORE_URL": empty})
    assert out.returncode == 2 and "does not match its checksum" in out.stderr, out.stderr
    with psycopg.connect(empty) as c:
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'philotes'").fetchone()[0] == 0

    # Bad settings: clear errors naming what to set.
    out = script("backup-db.sh", env={**env, "PHILOTES_BUFFER_URL": ctl, "PHILOTES_BACKUP_S3_URI": "lake/backups"})
    assert out.returncode == 2 and "PHILOTES_BACKUP_S3_URI" in out.stderr, out.stderr
    out = script("backup-db.sh", env={**env, "PHILOTES_BUFFER_URL": "", "PHILOTES_BACKUP_S3_URI": "s3://lake/b"})
    assert out.returncode == 2 and "PHILOTES_BUFFER_URL" in out.stderr, out.stderr
