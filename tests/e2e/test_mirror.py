"""Mirror tables (docs/decisions/020-mirror-tables.md): beside each changelog
`<schema>.<table>__changelog`, the plain Iceberg table `<schema>.<table>` is the source table as
it is — read here by pyiceberg as any table, position deletes applied by pyiceberg itself, and
compared value by value with the source."""
import pytest

from compare import norm, source_rows

MIRROR_META = ("_cdc_lsn", "_cdc_ts")


def mirror_rows(lake, ident, key):
    rows = lake.table(ident).scan().to_arrow().to_pylist()
    out = {}
    for r in rows:
        k = tuple(r[c] for c in key)
        assert k not in out, f"{ident}: two rows for key {k}"
        out[k] = {c: norm(v) for c, v in r.items()}
    return out


def assert_mirror(src, lake, ident, query, key):
    want = source_rows(src, query, key)
    got = mirror_rows(lake, ident, key)
    missing, extra = sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"{ident}: missing keys {missing}, extra keys {extra}"
    for k, row in want.items():
        for c, v in row.items():
            assert got[k].get(c) == v, f"{ident} key {k} column {c}: mirror {str(got[k].get(c))[:80]!r} != source {str(v)[:80]!r}"
        assert got[k]["_cdc_lsn"] > 0 and got[k]["_cdc_ts"] is not None
    return len(want)


def big():
    # About 10 kB that does not compress: stored out of line (TOAST), so an UPDATE that leaves
    # it alone sends it as "unchanged".
    return "(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 300) g)"


def position_deletes(lake, ident):
    files = lake.table(ident).inspect.files().to_pylist()
    return sum(f["record_count"] for f in files if f["content"] == 1)


def test_the_mirror_is_the_source_table_through_updates_toast_key_changes_deletes_and_truncate(source):
    source.sql("CREATE TABLE items (id int PRIMARY KEY, name text, big text, price numeric(10,2), tags text[])")
    source.sql(f"INSERT INTO items SELECT g, 'n' || g, {big()}, g * 1.5, ARRAY['a', g::text] FROM generate_series(1, 300) g")
    source.run("--mirror")
    lake = source.lake()
    query = "SELECT * FROM items"
    assert assert_mirror(source, lake, "public.items", query, ["id"]) == 300
    columns = [f.name for f in lake.table("public.items").schema().fields]
    assert columns == ["id", "name", "big", "price", "tags", "_cdc_lsn", "_cdc_ts"]
    assert lake.table("public.items").properties["philotes.mirror-of"] == "public.items__changelog"

    # Updates that leave the TOASTed column alone (sent as unchanged), twice for some keys in
    # one step; deletes; inserts; a key change that also leaves it alone.
    source.sql("UPDATE items SET name = 'renamed ' || id WHERE id % 3 = 0")
    source.sql("UPDATE items SET price = price + 1 WHERE id % 6 = 0")
    source.sql("DELETE FROM items WHERE id % 10 = 1")
    source.sql(f"INSERT INTO items SELECT g, 'new ' || g, {big()}, 0, NULL FROM generate_series(301, 320) g")
    source.sql("UPDATE items SET id = id + 1000 WHERE id IN (4, 8)")
    source.sql("UPDATE items SET tags = ARRAY['key', 'moved'] WHERE id = 1004")
    source.run("--mirror")
    unchanged = [r for r in lake.changelog("public.items__changelog") if r["_cdc_unchanged"]]
    assert unchanged, "the test must exercise unchanged TOAST values"
    assert assert_mirror(source, lake, "public.items", query, ["id"]) == 290
    assert position_deletes(lake, "public.items") > 0, "rows are replaced through position deletes"
    summary = lake.summaries("public.items")[-1]
    assert "philotes.mirror-position" in summary and "philotes.watermark-lsn" in summary

    # Nothing new: no new snapshot.
    before = len(lake.table("public.items").snapshots())
    source.run("--mirror")
    assert len(lake.table("public.items").snapshots()) == before

    # A truncate, then rows again in the same step.
    source.sql("TRUNCATE items")
    source.sql(f"INSERT INTO items SELECT g, 'again ' || g, {big()}, 1, NULL FROM generate_series(1, 5) g")
    source.run("--mirror")
    assert assert_mirror(source, lake, "public.items", query, ["id"]) == 5
    assert position_deletes(lake, "public.items") == 0, "a truncate leaves no earlier file behind"


def test_the_mirror_follows_schema_changes_and_keyless_tables_have_none(source):
    source.sql("CREATE TABLE accounts (id bigint PRIMARY KEY, email text, score int)")
    source.sql("CREATE TABLE events (at timestamptz, what text)")
    source.sql("ALTER TABLE events REPLICA IDENTITY FULL")
    source.sql("INSERT INTO accounts SELECT g, 'a' || g || '@example.com', g FROM generate_series(1, 50) g")
    source.sql("INSERT INTO events VALUES (now(), 'boot')")
    source.run("--mirror")
    lake = source.lake()
    assert_mirror(source, lake, "public.accounts", "SELECT * FROM accounts", ["id"])
    source.sql("ALTER TABLE accounts ADD COLUMN plan text")
    source.sql("ALTER TABLE accounts RENAME COLUMN email TO login")
    source.sql("ALTER TABLE accounts ALTER COLUMN score TYPE bigint")
    source.sql("UPDATE accounts SET plan = 'pro', score = score * 1000000000 WHERE id <= 10")
    source.run("--mirror")
    columns = [f.name for f in lake.table("public.accounts").schema().fields]
    assert columns[:4] == ["id", "login", "score", "plan"], columns
    assert str(lake.table("public.accounts").schema().find_field("score").field_type) == "long"
    assert_mirror(source, lake, "public.accounts", "SELECT * FROM accounts", ["id"])
    # No key, no "current state per key": the changelog is the table to read.
    names = [t[1] for t in lake.catalog.list_tables("public")]
    assert "events__changelog" in names and "events" not in names


@pytest.mark.parametrize("off", [[], ["--mirror=false"]], ids=["default", "false"])
def test_mirrors_are_off_unless_asked_for(source, off):
    source.sql("CREATE TABLE plain (id int PRIMARY KEY)")
    source.sql("INSERT INTO plain VALUES (1)")
    source.run(*off)
    names = [t[1] for t in source.lake().catalog.list_tables("public")]
    assert names == ["plain__changelog"]


def test_a_table_already_named_like_the_mirror_is_left_alone_and_the_changelog_goes_on(source):
    """Someone else's `public.orders` is never written: the mirror step says what to do, the
    changelog is complete, and that table is as it was."""
    import pyarrow as pa
    from compare import source_rows as rows

    source.sql("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    source.sql("INSERT INTO orders SELECT g, g FROM generate_series(1, 20) g")
    source.run("--mirror=false")
    lake = source.lake()
    theirs = lake.catalog.create_table("public.orders", schema=pa.schema([("note", pa.string())]))
    theirs.append(pa.table({"note": ["mine"]}))
    source.sql("UPDATE orders SET total = 0 WHERE id = 1")
    _, err, _ = source.run("--mirror")
    assert "is not the mirror of public.orders__changelog" in err and "rename or drop it" in err, err[-2000:]
    assert lake.table("public.orders").scan().to_arrow().to_pylist() == [{"note": "mine"}]
    got = lake.current_state("public.orders__changelog", ["id"])
    want = rows(source, "SELECT * FROM orders", ["id"])
    assert {k: v["total"] for k, v in got.items()} == {k: v["total"] for k, v in want.items()}
