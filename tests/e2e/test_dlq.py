"""End-to-end: `philotes dlq` on the dead letters of `philotes run` — list, skip one change,
retry — against a real PostgreSQL, read back with pyiceberg."""
import json
import subprocess

from compare import assert_same
from conftest import BINARY


def dlq(source, *args):
    return subprocess.run([str(BINARY), "dlq", *args, "--data-dir", str(source.data_dir)],
                          capture_output=True, text=True, timeout=60)


def open_letters(source, *extra):
    out = dlq(source, "list", "--format", "json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["dead_letters"]


def test_dlq_lists_skips_exactly_one_change_and_retries(source):
    source.sql("CREATE TABLE prices (id int PRIMARY KEY, p numeric(6,2))")
    source.sql("CREATE TABLE other (id int PRIMARY KEY)")
    source.sql("INSERT INTO prices VALUES (1, 1.50)")
    source.run()
    assert dlq(source, "list").stdout.strip() == "no open dead letters"
    # One transaction: a good row, a value no decimal can hold, another good row, and a second
    # bad value of the same column (a skip must leave out exactly one change).
    with source.conn.transaction():
        source.sql("INSERT INTO prices VALUES (2, 2.00)")
        source.sql("INSERT INTO prices VALUES (3, 'NaN')")
        source.sql("INSERT INTO prices VALUES (4, 4.00)")
    source.sql("INSERT INTO other VALUES (1)")
    for _ in range(2):  # every start fails on it again, and counts it once more
        code, err, _ = source.run(check=False)
        assert code == 1 and "public.prices" in err
    (d,) = open_letters(source)
    assert (d["table"], d["op"], d["column"], d["position"], d["failures"], d["state"]) == \
        ("public.prices", "I", "p", 1, 2, "open"), d
    assert d["row"] == {"id": "3", "p": "NaN"}, d
    text = dlq(source, "list").stdout
    assert f"{d['id']}  public.prices  lsn {d['lsn']}" in text and "NaN" in text, text
    assert open_letters(source, "--table", "public.other") == []

    out = dlq(source, "skip", "999")
    assert out.returncode != 0 and "no dead letter 999" in out.stderr, out.stderr
    out = dlq(source, "skip", str(d["id"]), "--note", "NaN price from the old importer")
    assert out.returncode == 0 and "will be left out of the lake" in out.stdout, out.stderr

    code, err, _ = source.run()
    assert "as decided with `philotes dlq skip`" in err, err[-2000:]
    lake = source.lake()
    assert assert_same(source, lake, "public.prices__changelog", "SELECT * FROM prices WHERE id <> 3", ["id"]) == 3
    assert {r["id"] for r in lake.current_state("public.prices__changelog", ["id"]).values()} == {1, 2, 4}
    assert assert_same(source, lake, "public.other__changelog", "SELECT * FROM other", ["id"]) == 1
    assert open_letters(source) == []
    (done,) = open_letters(source, "--all")
    assert done["state"] == "skipped" and done["note"] == "NaN price from the old importer", done
    source.sql("UPDATE prices SET p = 5 WHERE id = 4")
    source.run()
    assert assert_same(source, source.lake(), "public.prices__changelog", "SELECT * FROM prices WHERE id <> 3", ["id"]) == 3

    # Retry: recorded; the WAL still holds the bad value, so it fails again and reopens.
    source.sql("INSERT INTO prices VALUES (5, 'NaN')")
    code, err, _ = source.run(check=False)
    assert code == 1
    (d2,) = open_letters(source)
    assert d2["row"] == {"id": "5", "p": "NaN"} and d2["position"] == 0, d2
    out = dlq(source, "retry", "--table", "public.prices")
    assert out.returncode == 0 and "philotes resync public.prices" in out.stdout, out.stderr
    assert open_letters(source) == []
    assert {x["state"] for x in open_letters(source, "--all")} == {"skipped", "retried"}
    code, err, _ = source.run(check=False)
    assert code == 1
    (again,) = open_letters(source)
    assert again["id"] == d2["id"] and again["failures"] == 2, again
    out = dlq(source, "retry")
    assert out.returncode != 0, out.stdout

    # The way out for a value wrong on the source: fix it there, copy the table again.
    source.sql("UPDATE prices SET p = 0 WHERE id IN (3, 5)")
    source.resync("public.prices")
    assert assert_same(source, source.lake(), "public.prices__changelog", "SELECT * FROM prices", ["id"]) == 5


def test_dlq_without_a_data_dir_says_where_to_point_it(tmp_path):
    out = subprocess.run([str(BINARY), "dlq", "list", "--data-dir", str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "point --data-dir at the one `philotes run` uses" in out.stderr, out.stderr
