"""An s3:// warehouse on a real S3-compatible server (moto in server mode) on this machine."""
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
import sys

import pytest

from compare import assert_same
from conftest import BINARY
from pgcluster import free_port


@pytest.fixture
def s3():
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    p = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="philotes", aws_secret_access_key="s3cr3t-key", region_name="eu-central-1")
    client.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    yield endpoint, client
    p.terminate()
    p.wait()


def test_s3_warehouse(source, s3):
    endpoint, client = s3
    source.sql("CREATE TABLE events (id int PRIMARY KEY, kind text, payload jsonb)")
    source.sql("INSERT INTO events SELECT g, 'k' || (g % 3), jsonb_build_object('n', g) FROM generate_series(1, 3000) g")
    args = [
        "--warehouse", "s3://lake/warehouse",
        "--s3-endpoint", endpoint,
        "--s3-region", "eu-central-1",
        "--s3-access-key-id", "philotes",
        "--s3-path-style",
    ]
    # The secret comes from the environment, and never shows up in the output.
    env = {"PHILOTES_S3_SECRET_ACCESS_KEY": "s3cr3t-key"}
    _, err, _ = source.run(*args, env=env)
    source.sql("DELETE FROM events WHERE id % 10 = 0")
    source.sql("UPDATE events SET kind = 'changed' WHERE id % 7 = 0")
    _, err2, _ = source.run(*args, env=env)
    assert "s3cr3t-key" not in err + err2
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="lake")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    lake = source.lake(
        warehouse="s3://lake/warehouse",
        props={
            "s3.endpoint": endpoint,
            "s3.access-key-id": "philotes",
            "s3.secret-access-key": "s3cr3t-key",
            "s3.region": "eu-central-1",
        },
    )
    n = assert_same(source, lake, "public.events__changelog", "SELECT id, kind, payload::text AS payload FROM events", ["id"])
    assert n == 2700

    # Maintenance on S3: compaction, expiry (deletes through S3) and orphan cleanup (lists the
    # bucket): an orphan of an interrupted write goes, everything the table needs stays.
    for i in range(4):
        source.sql(f"UPDATE events SET kind = 'm{i}' WHERE id = {i + 1}")
        source.run(*args, "--maintenance=false", env=env)
    client.put_object(Bucket="lake", Key="warehouse/public/events__changelog/data/orphan-of-a-crash.parquet", Body=b"x")
    cmd = [str(BINARY), "maintain", "--data-dir", str(source.data_dir), *args, "--snapshot-max-age", "0s",
           "--snapshot-keep-min", "2", "--orphan-min-age", "0s", "--format", "json"]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "s3cr3t-key" not in out.stdout + out.stderr
    (report,) = json.loads(out.stdout)["tables"]
    assert report["rewrite"]["files_in"] == 6 and report["rewrite"]["files_out"] == 1, report
    assert report["expiry"]["snapshots_expired"] == 5, report
    assert report["orphans"]["orphans_deleted"] >= 1, report
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="lake")["Contents"]}
    assert "warehouse/public/events__changelog/data/orphan-of-a-crash.parquet" not in keys
    tbl = lake.table("public.events__changelog")
    needed = {tbl.metadata_location, *(m.metadata_file for m in tbl.metadata.metadata_log)}
    for snap in tbl.metadata.snapshots:
        needed.add(snap.manifest_list)
        for m in snap.manifests(tbl.io):
            needed.add(m.manifest_path)
            needed |= {e.data_file.file_path for e in m.fetch_manifest_entry(tbl.io)}
    missing = {k for k in needed if k.removeprefix("s3://lake/") not in keys}
    assert not missing, sorted(missing)[:5]
    assert assert_same(source, lake, "public.events__changelog", "SELECT id, kind, payload::text AS payload FROM events", ["id"]) == 2700
