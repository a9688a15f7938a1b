"""End-to-end: `philotes sql` over a lake written by `philotes run`, checked against the source
and against pyiceberg's reading of the same lake (lake.py)."""
import base64
import csv
import datetime
import decimal
import io
import json
import math
import os
import subprocess
import uuid

from conftest import BINARY, run_philotes
from test_replication import ALL_TYPES, insert_everything


def sql(source, query, *extra, fmt="json", check=True):
    cmd = [str(BINARY), "sql", "--data-dir", str(source.data_dir), "--format", fmt, *extra, query]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"philotes sql exited {p.returncode}:\n{p.stderr[-4000:]}")
    if fmt == "json" and p.returncode == 0:
        return [json.loads(line, parse_float=decimal.Decimal) for line in p.stdout.splitlines() if line]
    return p


def plain(v):
    """A value from pyiceberg/pyarrow or from psycopg, as JSON output shows it."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, float) and math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, memoryview)):
        return bytes(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, decimal.Decimal):
        return v.normalize() if v == v else "NaN"
    return v


def from_json(v, like):
    """A JSON value read back into the type of `like` (the reference value)."""
    if v is None or like is None:
        return v
    if isinstance(like, datetime.datetime):
        return datetime.datetime.fromisoformat(v)
    if isinstance(like, datetime.date):
        return datetime.date.fromisoformat(v)
    if isinstance(like, datetime.time):
        return datetime.time.fromisoformat(v)
    if isinstance(like, bytes):
        try:
            return bytes.fromhex(v)
        except ValueError:
            return base64.b64decode(v)
    if isinstance(like, list):
        return [from_json(x, y) for x, y in zip(v, like)] + v[len(like):]
    if isinstance(like, dict):
        return {k: from_json(v.get(k), y) for k, y in like.items()}
    if isinstance(like, decimal.Decimal) and not isinstance(v, str):
        return decimal.Decimal(v).normalize()
    return v


def assert_sql_equals_reference(got_rows, want_rows, key):
    got = {tuple(r[k] for k in key): r for r in got_rows}
    want = {tuple(r[k] for k in key): r for r in want_rows}
    assert sorted(got) == sorted(want), f"keys differ: {sorted(set(got) ^ set(want))[:5]}"
    for k, w in want.items():
        for c, wv in w.items():
            wv = plain(wv)
            gv = from_json(got[k].get(c), wv)
            assert gv == wv, f"key {k} column {c}: philotes sql {got[k].get(c)!r} != reference {wv!r}"


def test_current_state_of_every_type_equals_pyiceberg_reading(source):
    for stmt in ALL_TYPES.split(";"):
        source.sql(stmt)
    insert_everything(source, 1)
    insert_everything(source, 2, null=True)
    source.run()
    insert_everything(source, 3)
    insert_everything(source, 4, null=True)
    source.sql("UPDATE everything SET t = 'changed' WHERE id = 1")  # big stays TOASTed
    source.sql("DELETE FROM everything WHERE id = 2")
    source.run()
    reference = list(source.lake().current_state("public.everything__changelog", ["id"]).values())
    assert len(reference) == 3
    got = sql(source, "SELECT * FROM public.everything")
    assert_sql_equals_reference(got, reference, ["id"])
    # Unqualified names resolve to the default schema, public.
    assert sql(source, "SELECT count(*) AS n FROM everything") == [{"n": 3}]
    row = [r for r in got if r["id"] == 1][0]
    assert row["t"] == "changed" and row["big"].startswith("toast-me ")
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def test_changelog_time_travel_and_formats(source):
    source.sql("CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric(12,2))")
    source.sql("INSERT INTO acct SELECT g, 'o' || g, g * 10 FROM generate_series(1, 50) g")
    source.run()
    source.sql("UPDATE acct SET balance = balance + 1 WHERE id <= 10")
    source.sql("DELETE FROM acct WHERE id > 45")
    # (the insert position: with synchronous_commit = off the write position may lag)
    (lsn,), = source.sql("SELECT pg_current_wal_insert_lsn()::text")
    (ts,), = source.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    then = {r[0]: (r[1], str(r[2])) for r in source.sql("SELECT id, owner, balance FROM acct")}
    source.sql("UPDATE acct SET owner = 'later' WHERE id <= 20")
    source.sql("TRUNCATE acct")
    source.sql("INSERT INTO acct VALUES (100, 'after truncate', 1)")
    source.run()
    now = sql(source, "SELECT id, owner, balance FROM public.acct")
    assert [(r["id"], r["owner"]) for r in now] == [(100, "after truncate")]
    for flag in (["--as-of-lsn", lsn], ["--as-of", ts]):
        past = sql(source, "SELECT id, owner, balance FROM public.acct", *flag)
        assert {r["id"]: (r["owner"], str(r["balance"])) for r in past} == then, flag
    changes = sql(source, "SELECT _cdc_op, count(*) AS n FROM public.acct__changelog GROUP BY _cdc_op ORDER BY _cdc_op")
    assert {r["_cdc_op"]: r["n"] for r in changes} == {"S": 50, "U": 30, "D": 5, "T": 1, "I": 1}
    p = sql(source, "SELECT id, owner FROM public.acct__changelog WHERE _cdc_op = 'D' ORDER BY id", fmt="csv")
    assert list(csv.reader(io.StringIO(p.stdout))) == [["id", "owner"]] + [[str(i), ""] for i in range(46, 51)]
    p = sql(source, "SELECT id, owner FROM public.acct", fmt="table")
    assert "after truncate" in p.stdout and "(1 row)" in p.stdout
    p = sql(source, "SELECT id FROM public.acct WHERE id < 0", fmt="csv")
    assert p.stdout == "id\n"
    # Only reading: the lake cannot be changed through philotes sql.
    p = sql(source, "DROP VIEW public.acct", fmt="table", check=False)
    assert p.returncode != 0 and "error" in p.stderr.lower()
    p = sql(source, "SELECT nope FROM public.acct", fmt="table", check=False)
    assert p.returncode != 0 and "nope" in p.stderr


def test_statements_from_standard_input(source):
    source.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    source.run()
    cmd = [str(BINARY), "sql", "--data-dir", str(source.data_dir), "--format", "csv"]
    p = subprocess.run(cmd, input="SELECT v FROM t\n WHERE id = 1;\nSELECT count(*) AS n FROM t;\n", capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "v\na\nn\n2\n"


def test_a_result_larger_than_the_memory_limit(source):
    source.sql("CREATE TABLE wide (id bigint PRIMARY KEY, pad text, n int)")
    source.sql("INSERT INTO wide SELECT g, md5(g::text) || repeat('x', 200), g % 7 FROM generate_series(1, 300000) g")
    source.run()
    source.sql("UPDATE wide SET n = -1 WHERE id % 1000 = 0")
    source.run()
    out = source.data_dir.parent / "sorted.csv"
    cmd = [str(BINARY), "sql", "--data-dir", str(source.data_dir), "--format", "csv", "--memory-limit", "32MiB",
           "SELECT id, pad, n FROM public.wide ORDER BY pad DESC"]
    with open(out, "w") as f:
        code, err, peak_kib = run_philotes(cmd, env={"PHILOTES_LOG": "warn"}, stdout=f)
    assert code == 0, err
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "pad", "n"] and len(rows) == 300001
    pads = [r[1] for r in rows[1:]]
    assert pads == sorted(pads, reverse=True)
    assert sum(1 for r in rows[1:] if r[2] == "-1") == 300
    print(f"\nphilotes sql over ~70 MB of rows with a 32 MiB limit: peak RSS {peak_kib / 1024:.0f} MiB")
