"""End-to-end: `philotes verify` compares the lake with the source at one LSN. Errors are planted
in the lake with pyiceberg (an independent writer), and it must find each; on a correct lake it
must pass while the source is busy."""
import datetime
import decimal
import json
import os
import shlex
import subprocess
import threading
import time

import pyarrow as pa
from pyiceberg.expressions import EqualTo

from conftest import BINARY
from test_replication import ALL_TYPES, insert_everything


def verify(source, *extra, fmt="json", timeout=600):
    cmd = [str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir),
           "--format", fmt, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    report = json.loads(p.stdout) if fmt == "json" and p.stdout.strip() else None
    return p.returncode, report, p


def by_table(report):
    return {t["table"]: t for t in report["tables"]}


def running(source, *extra):
    """`philotes run` in the background, once it is streaming (its slot is in use)."""
    proc = source.start("--flush-interval", "500ms", *extra)
    for _ in range(600):
        rows = source.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'philotes'")
        if rows and rows[0][0]:
            return proc
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    raise AssertionError("philotes run did not start streaming")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=60)


def append_changes(table, rows):
    """Append changelog rows with pyiceberg, filling the columns a row does not name with NULL."""
    schema = table.schema().as_arrow()
    full = [{f.name: r.get(f.name) for f in schema} for r in rows]
    table.append(pa.Table.from_pylist(full, schema=schema))


def test_verify_finds_planted_missing_extra_and_changed_rows(source):
    source.sql("CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), "
               "tags text[], note text)")
    source.sql("INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['a', g::text], "
               "CASE WHEN g % 2 = 0 THEN NULL ELSE 'n' END FROM generate_series(1, 100000) g")
    source.sql("CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b))")
    source.sql("INSERT INTO pairs SELECT g % 10, 'k' || g, g FROM generate_series(1, 500) g")
    source.run()
    source.sql("UPDATE items SET name = 'renamed' WHERE id <= 100")  # the stream path too
    proc = running(source)
    try:
        code, report, p = verify(source)
        assert code == 0, p.stderr
        tables = by_table(report)
        assert report["status"] == "match"
        assert tables["public.items"]["source_rows"] == tables["public.items"]["lake_rows"] == 100000
        assert tables["public.pairs"]["status"] == "match"
    finally:
        stop(proc)

    items = source.lake().table("public.items__changelog")
    last = max(r["_cdc_lsn"] for r in source.lake().changelog("public.items__changelog"))
    items.delete(EqualTo("id", 17))  # missing
    planted = dict(_cdc_lsn=last, _cdc_ts=datetime.datetime.now(datetime.timezone.utc))
    append_changes(items, [
        dict(id=1_000_000, name="ghost", _cdc_op="I", _cdc_seq=1_000_000, **planted),  # extra
        # a changed value; the empty string where the source has NULL; a list with a NULL more
        dict(id=23, name="renamed", price=None, tags=["a", "23"], note="n",
             _cdc_op="U", _cdc_seq=1_000_001, **planted),
        dict(id=30, name="renamed", price=decimal.Decimal("45.00"), tags=["a", "30"], note="",
             _cdc_op="U", _cdc_seq=1_000_002, **planted),
        dict(id=1000, name="item 1000", price=decimal.Decimal("1500.00"), tags=["a", "1000", None], note=None,
             _cdc_op="U", _cdc_seq=1_000_003, **planted),
    ])
    # Many changed rows, and a memory limit that holds fewer: the drill takes several rounds.
    append_changes(items, [
        dict(id=i, name="item %d" % i, price=decimal.Decimal(i) * decimal.Decimal("1.5") + 1, tags=["a", str(i)], note=None if i % 2 == 0 else "n",
             _cdc_op="U", _cdc_seq=2_000_000 + i, **planted)
        for i in range(1001, 61001)
    ])

    proc = running(source)
    try:
        code, report, p = verify(source, "--show", "3")
        assert code == 1, p.stderr
        t = by_table(report)["public.items"]
        assert t["status"] == "different"
        assert (t["source_rows"], t["lake_rows"]) == (100000, 100000)
        assert (t["missing"], t["extra"], t["different"]) == (1, 1, 60003), t
        assert t["rounds"] == 1 and t["differing_ranges"] > 30000
        assert t["first_missing"] == ["id=17"]
        assert t["first_extra"] == ["id=1000000"]
        assert t["first_different"] == [
            {"key": "id=23", "columns": ["price"]},
            {"key": "id=30", "columns": ["note"]},
            {"key": "id=1000", "columns": ["tags"]},
        ]
        assert by_table(report)["public.pairs"]["status"] == "match"

        code, report, p = verify(source, "public.items", "--memory-limit", "16MiB")
        assert code == 1, (p.stderr, json.dumps(report))
        t = by_table(report)["public.items"]
        assert list(by_table(report)) == ["public.items"]
        assert (t["missing"], t["extra"], t["different"]) == (1, 1, 60003), t
        assert t["rounds"] >= 2, t

        code, report, p = verify(source, "public.items", "--memory-limit", "16MiB", "--max-rounds", "1")
        t = by_table(report)["public.items"]
        assert code == 1 and t["complete"] is False and t["rounds"] == 1, t
        assert 0 < t["different"] < 60003, t

        code, _, p = verify(source, fmt="text")
        assert code == 1
        assert "DIFFERENT" in p.stdout and "missing from the lake: id=17" in p.stdout, p.stdout
        assert "id=23 (columns: price)" in p.stdout, p.stdout
    finally:
        stop(proc)


def test_verify_passes_on_a_correct_lake_under_concurrent_writes(source):
    for stmt in ALL_TYPES.split(";"):
        source.sql(stmt)
    for i in range(1, 6):
        insert_everything(source, i, null=(i % 2 == 0))
    source.sql("CREATE TABLE busy (id int PRIMARY KEY, n int, body text)")
    source.sql("INSERT INTO busy SELECT g, 0, repeat('x', g % 50) FROM generate_series(1, 20000) g")
    source.run()
    insert_everything(source, 6)
    source.sql("UPDATE everything SET t = 'changed' WHERE id = 1")  # the big value stays TOASTed
    proc = running(source)
    stop_writing = threading.Event()
    written = [0]

    def write():
        import psycopg
        with psycopg.connect(source.url, autocommit=True) as c:
            i = 0
            while not stop_writing.is_set():
                i += 1
                with c.transaction():
                    c.execute("UPDATE busy SET n = n + 1 WHERE id %% 97 = %s", (i % 97,))
                    c.execute("INSERT INTO busy VALUES (%s, 0, 'new') ON CONFLICT (id) DO NOTHING", (20000 + i,))
                    c.execute("DELETE FROM busy WHERE id = %s", (i * 7 % 20000 + 1,))
                written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(1)
        before = written[0]
        code, report, p = verify(source)
        during = written[0] - before
        assert code == 0, (p.stderr[-3000:], json.dumps(report, indent=1)[:3000])
        tables = by_table(report)
        assert tables["public.everything"]["source_rows"] == 6
        assert tables["public.busy"]["source_rows"] > 0
        assert during > 20, f"only {during} transactions ran while verify did"
    finally:
        stop_writing.set()
        writer.join()
        stop(proc)


def test_verify_says_what_it_cannot_verify(source):
    source.sql("CREATE TABLE keyed (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO keyed VALUES (1, 'a')")
    source.sql("CREATE TABLE keyless (v text)")
    source.sql("ALTER TABLE keyless REPLICA IDENTITY FULL")
    source.sql("INSERT INTO keyless VALUES ('a')")
    source.run()
    env = {k: v for k, v in os.environ.items() if k != "PHILOTES_SOURCE"}
    p = subprocess.run([str(BINARY), "verify", "--data-dir", str(source.data_dir)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "no source: set --source" in p.stderr, p.stderr
    # Nothing running (a cron-style `run --until-caught-up`): verify brings the lake up to its
    # verification point itself, so a change made since the last run is compared too.
    source.sql("INSERT INTO keyed VALUES (2, 'b')")
    code, report, p = verify(source)
    assert code == 2, p.stderr  # the keyless table cannot be verified
    assert "no pipeline is running: catching the lake up" in p.stderr, p.stderr
    tables = by_table(report)
    assert tables["public.keyed"]["status"] == "match" and tables["public.keyed"]["source_rows"] == 2, tables
    code, report, p = verify(source, "public.keyed")
    assert code == 0, p.stderr

    source.sql("ALTER TABLE keyed ADD COLUMN w text")  # no change to the table since
    proc = running(source)
    try:
        code, report, p = verify(source)
        assert code == 2, p.stderr
        tables = by_table(report)
        assert tables["public.keyed"]["status"] == "match"
        assert tables["public.keyed"]["columns_not_in_lake"] == ["w"]
        assert tables["public.keyless"]["status"] == "not_verified"
        assert "no primary key" in tables["public.keyless"]["reason"]
        # On a terminal: a progress line per table (drawn at once, then every 250 ms).
        cmd = [str(BINARY), "verify", "--source", source.url, "--data-dir", str(source.data_dir), "public.keyed"]
        tty = subprocess.run(["script", "-qec", shlex.join(cmd), "/dev/null"], capture_output=True, text=True, timeout=300)
        assert tty.returncode == 0, tty.stdout
        assert "verify public.keyed: summarising key ranges" in tty.stdout, tty.stdout
        assert "public.keyed" in tty.stdout and "match" in tty.stdout

        code, _, p = verify(source, "public.nope")
        assert code == 2 and "not in publication" in p.stderr, p.stderr
    finally:
        stop(proc)


def test_verify_refuses_a_table_whose_publication_filters_rows(source):
    source.sql("CREATE TABLE f (id int PRIMARY KEY, v text)")
    source.sql("CREATE TABLE g (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO f SELECT g, 'v' FROM generate_series(1, 10) g")
    source.sql("INSERT INTO g SELECT g, 'v' FROM generate_series(1, 10) g")
    source.sql("CREATE PUBLICATION pf FOR TABLE f WHERE (id > 5), g")
    source.run("--publication", "pf")
    proc = running(source, "--publication", "pf")
    try:
        code, report, p = verify(source, "--publication", "pf")
        assert code == 2, p.stderr
        tables = by_table(report)
        assert tables["public.f"]["status"] == "not_verified"
        assert "WHERE" in tables["public.f"]["reason"], tables["public.f"]
        assert tables["public.g"]["status"] == "match"
    finally:
        stop(proc)
