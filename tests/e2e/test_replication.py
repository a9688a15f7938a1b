"""End-to-end: real PostgreSQL → `philotes run` → Iceberg, read back by pyiceberg."""
import json
import os
import random
import threading
import time

import psycopg
import pyarrow.parquet as pq

from compare import assert_same


def test_snapshot_then_stream(source):
    source.sql("CREATE TABLE orders (id bigint PRIMARY KEY, customer text, total numeric(12,2), placed timestamptz)")
    source.sql("INSERT INTO orders SELECT g, 'c' || (g % 7), g * 1.25, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 5000) g")
    source.run()
    lake = source.lake()
    q = "SELECT * FROM orders"
    assert assert_same(source, lake, "public.orders__changelog", q, ["id"]) == 5000
    rows = lake.changelog("public.orders__changelog")
    assert {r["_cdc_op"] for r in rows} == {"S"}
    snap_lsn = rows[0]["_cdc_lsn"]
    assert all(r["_cdc_lsn"] == snap_lsn for r in rows)
    assert sorted(r["_cdc_seq"] for r in rows) == list(range(5000))

    source.sql("UPDATE orders SET total = total + 1 WHERE id <= 100")
    source.sql("DELETE FROM orders WHERE id BETWEEN 101 AND 150")
    source.sql("UPDATE orders SET id = id + 100000 WHERE id BETWEEN 151 AND 160")  # key changes
    source.sql("INSERT INTO orders VALUES (900001, 'ünïcødé ✓', -0.01, now())")
    source.run()
    assert assert_same(source, lake, "public.orders__changelog", q, ["id"]) == 5000 - 50 + 1
    rows = lake.changelog("public.orders__changelog")
    streamed = [r for r in rows if r["_cdc_op"] != "S"]
    ops = [r["_cdc_op"] for r in streamed]
    assert ops.count("U") == 100 + 10 and ops.count("D") == 50 + 10 and ops.count("I") == 1
    # A key change is a D of the old key followed by a U of the new one, in one transaction.
    key_change = [r for r in streamed if r["id"] in (151, 100151)]
    assert [(r["_cdc_op"], r["id"]) for r in key_change] == [("D", 151), ("U", 100151)]
    assert key_change[0]["_cdc_lsn"] == key_change[1]["_cdc_lsn"]
    assert key_change[0]["_cdc_seq"] < key_change[1]["_cdc_seq"]
    # Streamed rows carry the commit LSN (after the snapshot) and a source commit time.
    assert all(r["_cdc_lsn"] > snap_lsn for r in streamed)
    assert len({(r["_cdc_lsn"], r["_cdc_seq"]) for r in rows if r["_cdc_op"] != "S"}) == len(streamed)
    # Every Philotes commit records its watermark in the snapshot summary.
    summaries = lake.summaries("public.orders__changelog")
    assert all("philotes.watermark-lsn" in s for s in summaries)
    # A run with nothing new writes nothing and changes nothing.
    source.run()
    assert len(lake.changelog("public.orders__changelog")) == len(rows)


ALL_TYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE everything (
  id int PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
  n10 numeric(10,2), n38 numeric(38,10), nbig numeric(50,5), nfree numeric,
  b boolean, t text, vc varchar(20), c char(3), nm name, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, u uuid,
  j json, jb jsonb, m mood, dom posint,
  ai int[], at text[], an numeric(6,2)[], ats timestamptz[], ab bool[],
  big text
)"""


def insert_everything(src, i, null=False):
    if null:
        src.sql("INSERT INTO everything (id) VALUES (%s)", (i,))
        return
    src.sql(
        """INSERT INTO everything VALUES (%s,
        -32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity',
        -99999999.99, 1234567890123456789012345678.0123456789, -12345678901234567890123456789012345678901234.12345, 0.000000000000000000001,
        true, E'tab\\there\\nnewline \\\\ back ☃ 日本語', 'x', 'ab', 'nm', '\\x00ff7f'::bytea,
        '0001-01-01', '23:59:59.999999', '2262-04-11 23:47:16.854775', '1900-01-01 00:00:00.000001+05:30',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50]}', '{"z": null, "a": "ü"}', 'happy', 7,
        '{1,NULL,-3}', '{"a,b","NULL",NULL,"q\\"uote",""}', '{1.50,-2.25}', '{"2024-01-01 00:00:00+00"}', '{t,f}',
        repeat('toast-me ', 50000))""",
        (i,),
    )


EVERYTHING_Q = """SELECT id, i2, i4, i8, f4, f8, n10, n38, nbig::text AS nbig, nfree::text AS nfree,
  b, t, vc, c, nm::text AS nm, by, d, tm, ts, tstz, u, j::text AS j, jb::text AS jb, m::text AS m, dom,
  ai, at, an, ats, ab, big FROM everything"""


def test_every_type_round_trips(source):
    for stmt in ALL_TYPES.split(";"):
        source.sql(stmt)
    insert_everything(source, 1)
    insert_everything(source, 2, null=True)
    source.run()  # snapshot path (COPY binary format, ::text for the rest)
    insert_everything(source, 3)
    insert_everything(source, 4, null=True)
    source.run()  # streaming path (pgoutput text format)
    lake = source.lake()
    assert assert_same(source, lake, "public.everything__changelog", EVERYTHING_Q, ["id"]) == 4


MORE_TYPES = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE more (id int PRIMARY KEY, d posint, iv interval, m money, ip inet, net cidr,
  mac macaddr, b bit(4), vb varbit, x xml, tv tsvector, r int4range, tr tstzrange, h hstore,
  tt timetz, mo mood, pt point, u_arr uuid[], txt_arr text[], grid int[][])
"""
MORE_VALUES = (
    "%s, 5, '1 year 2 mons 3 days 04:05:06.789', '1234.56', '10.1.2.3/16', '10.1.0.0/16', "
    "'08:00:2b:01:02:03', B'1010', B'10111', '<a x=\"1\">t&amp;</a>', 'fat:1 rat:2', '[1,10)', "
    "'[2024-01-01 00:00:00+00,2024-02-01 00:00:00+00)', 'a=>1, \"b c\"=>NULL', '04:05:06.5+02:30', 'happy', "
    "'(1.5,-2)', ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL], ARRAY['x', NULL, 'with \"quote\"', 'com,ma', ''], '{{1,2},{3,NULL}}'"
)
# Types kept in PostgreSQL's text form compare as text; the domain as its base type.
MORE_Q = (
    "SELECT id, d, iv::text, m::text, ip::text, net::text, mac::text, b::text, vb::text, x::text, "
    "tv::text, r::text, tr::text, h::text, tt::text, mo::text, pt::text, u_arr, txt_arr, grid::text FROM more"
)


def test_text_form_types_round_trip(source):
    for stmt in MORE_TYPES.split(";"):
        if stmt.strip():
            source.sql(stmt)
    source.sql(f"INSERT INTO more VALUES ({MORE_VALUES % 1})")
    source.sql("INSERT INTO more (id) VALUES (2)")
    source.run()  # the copy
    source.sql(f"INSERT INTO more VALUES ({MORE_VALUES % 3})")
    source.sql("UPDATE more SET iv = '-1 day', m = '-0.01', r = 'empty' WHERE id = 1")
    source.run()  # the stream
    lake = source.lake()
    schema = schema_of(lake, "public.more__changelog")
    assert schema["d"] == "int" and schema["iv"] == "string" and schema["u_arr"] == "list<uuid>", schema
    assert schema["grid"] == "string", "a multi-dimensional array keeps its text form"
    assert assert_same(source, lake, "public.more__changelog", MORE_Q, ["id"]) == 3


def test_infinite_dates_and_timestamps_map_to_the_ends_of_the_calendar(source):
    import datetime as dt
    source.sql("CREATE TABLE ends (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)")
    source.sql("INSERT INTO ends VALUES (1, 'infinity', 'infinity', 'infinity'), (2, '-infinity', '-infinity', '-infinity')")
    source.run()  # the copy (binary)
    source.sql("INSERT INTO ends VALUES (3, 'infinity', '-infinity', 'infinity'), (4, '-infinity', 'infinity', '-infinity')")
    source.run()  # the stream (text)
    rows = {r["id"]: r for r in source.lake().changelog("public.ends__changelog")}
    hi_d, lo_d = dt.date(9999, 12, 31), dt.date(1, 1, 1)
    hi, lo = dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(1, 1, 1)
    utc = dt.timezone.utc
    assert (rows[1]["d"], rows[1]["ts"], rows[1]["tz"]) == (hi_d, hi, hi.replace(tzinfo=utc))
    assert (rows[2]["d"], rows[2]["ts"], rows[2]["tz"]) == (lo_d, lo, lo.replace(tzinfo=utc))
    assert (rows[3]["d"], rows[3]["ts"], rows[3]["tz"]) == (hi_d, lo, hi.replace(tzinfo=utc))
    assert (rows[4]["d"], rows[4]["ts"], rows[4]["tz"]) == (lo_d, hi, lo.replace(tzinfo=utc))


def test_composite_types_become_structs(source):
    source.sql("CREATE TYPE pair AS (a int, b text, tags text[])")
    source.sql("CREATE TYPE wrap AS (p pair, n numeric(5,2))")
    source.sql("CREATE TABLE comp (id int PRIMARY KEY, p pair, w wrap, ps pair[])")
    rows = [
        "(1, ROW(1, 'x, \"y\" (z)', ARRAY['t1', NULL])::pair, ROW(ROW(2, '', NULL)::pair, 1.50)::wrap, "
        "ARRAY[ROW(3, 'q', NULL)::pair, NULL])",
        "(2, NULL, ROW(NULL, NULL)::wrap, NULL)",
        "(3, ROW(NULL, NULL, NULL)::pair, NULL, '{}')",
        "(4, ROW(-4, 'back\\slash', '{}')::pair, ROW(NULL, -999.99)::wrap, ARRAY[ROW(5, NULL, ARRAY['a,b'])::pair])",
    ]
    source.sql(f"INSERT INTO comp VALUES {rows[0]}, {rows[1]}")
    source.run()  # the copy
    source.sql(f"INSERT INTO comp VALUES {rows[2]}, {rows[3]}")
    source.sql("UPDATE comp SET p = ROW(10, 'updated', NULL)::pair WHERE id = 2")
    source.run()  # the stream
    lake = source.lake()
    schema = schema_of(lake, "public.comp__changelog")
    assert schema["p"].startswith("struct<") and schema["ps"].startswith("list<struct<"), schema
    state = lake.current_state("public.comp__changelog", ["id"])
    from decimal import Decimal
    exact = lambda t: None if t is None else json.loads(t, parse_float=Decimal)  # noqa: E731
    want = {
        r[0]: tuple(exact(v) for v in r[1:])
        for r in source.sql("SELECT id, to_jsonb(p)::text, to_jsonb(w)::text, to_jsonb(ps)::text FROM comp")
    }
    assert set(state) == {(i,) for i in want}
    for i, (p, w, ps) in want.items():
        got = state[(i,)]
        assert (got["p"], got["w"]) == (p, w), (i, got, (p, w))
    # pyiceberg 0.12 reads a NULL list<struct> back as [] (the Parquet files hold NULL), so the
    # list column is checked on the data files themselves with pyarrow.
    files = [f.file.file_path for f in lake.table("public.comp__changelog").scan().plan_files()]
    last = {}
    for f in files:
        for r in pq.read_table(f.removeprefix("file://")).to_pylist():
            key = (r["_cdc_lsn"], r["_cdc_seq"])
            if r["id"] not in last or key > last[r["id"]][0]:
                last[r["id"]] = (key, r["ps"])
    assert {i: v for i, (_, v) in last.items()} == {i: ps for i, (_, _, ps) in want.items()}


def test_bc_dates_keep_their_day_number(source):
    source.sql("CREATE TABLE history (id int PRIMARY KEY, d date, ts timestamp)")
    source.sql("INSERT INTO history VALUES (1, '0044-03-15 BC', '0044-03-15 12:00:00 BC')")
    source.run()
    source.sql("INSERT INTO history VALUES (2, '0044-03-15 BC', '0044-03-15 12:00:00 BC')")
    source.run()
    # Python's date has no year 0, so read the raw day numbers: 0044-03-15 BC is astronomical
    # year -43, day -735661 since 1970-01-01 (PostgreSQL agrees: see the query below).
    want = source.sql("SELECT ('0044-03-15 BC'::date - '1970-01-01'::date)")[0][0]
    t = source.lake().table("public.history__changelog").scan(selected_fields=("id", "d", "ts")).to_arrow()
    assert t.column("d").cast("int32").to_pylist() == [want, want]
    assert t.column("ts").cast("int64").to_pylist() == [want * 86_400_000_000 + 12 * 3_600_000_000] * 2


def test_unchanged_toast_is_recorded_not_nulled(source):
    source.sql("CREATE TABLE docs (id int PRIMARY KEY, title text, body text, meta jsonb)")
    # Random text does not compress, so PostgreSQL stores it out of line (TOAST).
    big = os.urandom(150000).hex()
    source.sql("INSERT INTO docs VALUES (1, 'first', %s, %s)", (big, json.dumps({"k": os.urandom(50000).hex()})))
    source.run()
    source.sql("UPDATE docs SET title = 'renamed' WHERE id = 1")  # body and meta stay TOASTed
    source.run()
    lake = source.lake()
    last = lake.changelog("public.docs__changelog")[-1]
    assert last["_cdc_op"] == "U" and last["title"] == "renamed"
    assert sorted(last["_cdc_unchanged"]) == ["body", "meta"]
    assert last["body"] is None  # not resent by PostgreSQL; the reader carries it forward
    assert_same(source, lake, "public.docs__changelog", "SELECT id, title, body, meta::text AS meta FROM docs", ["id"])
    # A chain of updates that leave the big columns alone, and a key change that does too.
    source.sql("UPDATE docs SET title = 'second' WHERE id = 1")
    source.sql("UPDATE docs SET title = 'third' WHERE id = 1")
    source.sql("UPDATE docs SET id = 2 WHERE id = 1")
    source.run()
    assert_same(source, lake, "public.docs__changelog", "SELECT id, title, body, meta::text AS meta FROM docs", ["id"])
    # Under REPLICA IDENTITY FULL the old row carries the value, so it is written out in full.
    source.sql("ALTER TABLE docs REPLICA IDENTITY FULL")
    source.sql("UPDATE docs SET title = 'again' WHERE id = 2")
    source.run()
    last = lake.changelog("public.docs__changelog")[-1]
    assert last["_cdc_unchanged"] is None and last["body"] == big


def test_truncate_several_tables_and_schemas(source):
    source.sql("CREATE SCHEMA sales")
    source.sql("CREATE TABLE sales.items (sku text PRIMARY KEY, qty int)")
    source.sql("CREATE TABLE public.notes (id int PRIMARY KEY, body text)")
    source.sql("INSERT INTO sales.items SELECT 'sku' || g, g FROM generate_series(1, 100) g")
    source.sql("INSERT INTO public.notes SELECT g, 'n' || g FROM generate_series(1, 10) g")
    source.run()
    source.sql("TRUNCATE sales.items")
    source.sql("INSERT INTO sales.items VALUES ('after', 1)")
    source.sql("UPDATE public.notes SET body = 'changed' WHERE id = 3")
    source.run()
    lake = source.lake()
    assert assert_same(source, lake, "sales.items__changelog", "SELECT * FROM sales.items", ["sku"]) == 1
    assert assert_same(source, lake, "public.notes__changelog", "SELECT * FROM public.notes", ["id"]) == 10
    ops = [r["_cdc_op"] for r in lake.changelog("sales.items__changelog")]
    assert ops.count("T") == 1 and ops[-2:] == ["T", "I"]


def test_namespace_mapping_and_config_file(source, tmp_path):
    source.sql("CREATE SCHEMA app")
    source.sql("CREATE TABLE app.users (id int PRIMARY KEY, email text)")
    source.sql("INSERT INTO app.users VALUES (1, 'a@example.com')")
    cfg = tmp_path / "philotes.toml"
    cfg.write_text('namespace = "from_file"\nslot = "file_slot"\nflush_interval = "200ms"\n')
    # The flag beats the file for namespace; the file's slot is used.
    source.run("--config", str(cfg), "--namespace", "lake")
    lake = source.lake()
    assert assert_same(source, lake, "lake.app__users__changelog", "SELECT * FROM app.users", ["id"]) == 1
    assert source.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'file_slot'") == [(1,)]
    # An unknown key in the file is an error that names it.
    cfg.write_text('slott = "x"\n')
    code, err, _ = source.run("--config", str(cfg), check=False)
    assert code == 2 and "slott" in err


def test_table_without_key_is_stopped_with_the_fix_and_others_go_on(source):
    source.sql("CREATE TABLE keyed (id int PRIMARY KEY, v text)")
    source.sql("CREATE TABLE nokey (v text)")
    source.sql("INSERT INTO keyed VALUES (1, 'a')")
    source.sql("INSERT INTO nokey VALUES ('a')")
    code, err, _ = source.run(check=False)
    assert code == 1
    assert "public.nokey" in err and "ALTER TABLE \"public\".\"nokey\" REPLICA IDENTITY FULL" in err
    lake = source.lake()
    assert assert_same(source, lake, "public.keyed__changelog", "SELECT * FROM keyed", ["id"]) == 1
    # After the fix the table is copied and replicated.
    source.sql("ALTER TABLE nokey REPLICA IDENTITY FULL")
    source.sql("INSERT INTO keyed VALUES (2, 'b')")
    source.run()
    assert len(lake.changelog("public.nokey__changelog")) == 1
    assert assert_same(source, lake, "public.keyed__changelog", "SELECT * FROM keyed", ["id"]) == 2


def test_unconvertible_value_goes_to_dead_letter_and_keeps_position(source):
    source.sql("CREATE TABLE prices (id int PRIMARY KEY, p numeric(6,2))")
    source.sql("CREATE TABLE other (id int PRIMARY KEY)")
    source.sql("INSERT INTO prices VALUES (1, 1.50)")
    source.run()
    source.sql("INSERT INTO prices VALUES (2, 'NaN')")  # no decimal value can hold NaN
    source.sql("INSERT INTO other VALUES (1)")
    code, err, _ = source.run(check=False)
    assert code == 1
    assert "public.prices" in err and "column: p" in err and "lsn: " in err
    dead = [json.loads(line) for line in (source.data_dir / "dead-letter.jsonl").read_text().splitlines()]
    assert dead[-1]["table"] == "public.prices" and dead[-1]["row"]["p"] == "NaN" and dead[-1]["op"] == "I"
    lake = source.lake()
    assert assert_same(source, lake, "public.other__changelog", "SELECT * FROM other", ["id"]) == 1
    # The slot was not confirmed past the failed change: it is still in the WAL.
    assert slot_backlog(source) > 0
    code, err, _ = source.run(check=False)  # still stopped, still not lost
    assert code == 1 and "public.prices" in err
    # Fixed on the source, the table is mended by copying it again.
    source.sql("UPDATE prices SET p = 2.25 WHERE id = 2")
    source.resync("public.prices")
    assert assert_same(source, source.lake(), "public.prices__changelog", "SELECT * FROM prices", ["id"]) == 2
    source.run()


def test_unconvertible_value_in_the_initial_copy_goes_to_dead_letter(source):
    # The copy reads int and timestamptz in binary; the dead-letter file still shows the row as text.
    source.sql("CREATE TABLE events (id int PRIMARY KEY, at timestamptz, p numeric(6,2), note text)")
    source.sql("CREATE TABLE other (id int PRIMARY KEY)")
    source.sql("INSERT INTO events VALUES (1, '2024-05-06 07:08:09.5+00', 1, 'fine'), (2, 'infinity', 'NaN', 'tab\there')")
    source.sql("INSERT INTO other VALUES (1)")
    code, err, _ = source.run(check=False)
    assert code == 1
    assert "public.events" in err and "column: p" in err and "NaN" in err
    dead = [json.loads(line) for line in (source.data_dir / "dead-letter.jsonl").read_text().splitlines()]
    assert dead[-1]["op"] == "S" and dead[-1]["table"] == "public.events"
    assert dead[-1]["row"] == {"id": "2", "at": "infinity", "p": "NaN", "note": "tab\there"}
    lake = source.lake()
    assert assert_same(source, lake, "public.other__changelog", "SELECT * FROM other", ["id"]) == 1
    # Nothing of the failed copy was committed.
    assert len(lake.changelog("public.events__changelog")) == 0


def writer_load(url, stop, seed, counter):
    try:
        _writer_load(url, stop, seed, counter)
    except Exception as e:  # reported by the test: a dead writer would make the test weak
        counter.append(e)


def _writer_load(url, stop, seed, counter):
    rnd = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as c:
        while not stop.is_set():
            with c.transaction():
                for _ in range(rnd.randint(1, 20)):
                    k = rnd.randint(1, 3000)
                    action = rnd.random()
                    if action < 0.5:
                        c.execute("INSERT INTO churn VALUES (%s, %s, now()) ON CONFLICT (id) DO UPDATE SET v = churn.v || 'x', at = now()", (k, "v"))
                    elif action < 0.8:
                        c.execute("UPDATE churn SET v = left(v, 10) || %s WHERE id = %s", (str(rnd.random()), k))
                    elif action < 0.97:
                        c.execute("DELETE FROM churn WHERE id = %s", (k,))
                    else:
                        c.execute(
                            "UPDATE churn SET id = id + 100000 WHERE id = %s AND NOT EXISTS (SELECT 1 FROM churn WHERE id = %s)",
                            (k, k + 100000),
                        )
            counter[0] += 1


def test_kill_9_during_snapshot_and_stream_loses_and_doubles_nothing(source):
    source.sql("CREATE TABLE churn (id bigint PRIMARY KEY, v text, at timestamptz)")
    source.sql("CREATE TABLE bulk (id bigint PRIMARY KEY, pad text)")
    source.sql("INSERT INTO churn SELECT g, 'v' || g, now() FROM generate_series(1, 2000) g")
    source.sql("INSERT INTO bulk SELECT g, repeat('p', 100) FROM generate_series(1, 200000) g")
    stop = threading.Event()
    counter = [0]
    writer = threading.Thread(target=writer_load, args=(source.url, stop, 7, counter))
    writer.start()
    rnd = random.Random(11)
    kills = 0
    try:
        for i in range(6):
            p = source.start("--flush-interval", "300ms", "--batch-rows", "2000")
            # Early kills land in the initial copy, later ones in the stream.
            time.sleep(0.3 + rnd.random() * (0.8 if i < 2 else 2.5))
            p.kill()
            p.wait()
            kills += 1
    finally:
        stop.set()
        writer.join()
    assert len(counter) == 1, f"the load generator failed: {counter[1:]}"
    assert kills == 6 and counter[0] > 50
    print(f"\n{counter[0]} source transactions under 6 kill -9s")
    source.run()
    lake = source.lake()
    assert_same(source, lake, "public.churn__changelog", "SELECT * FROM churn", ["id"])
    assert assert_same(source, lake, "public.bulk__changelog", "SELECT * FROM bulk", ["id"]) == 200000
    for ident in ("public.churn__changelog", "public.bulk__changelog"):
        rows = lake.changelog(ident)
        snap = [r for r in rows if r["_cdc_op"] == "S"]
        assert len({r["_cdc_lsn"] for r in snap}) == 1, f"{ident}: more than one initial copy committed"
        streamed = [(r["_cdc_lsn"], r["_cdc_seq"]) for r in rows if r["_cdc_op"] != "S"]
        assert len(streamed) == len(set(streamed)), f"{ident}: a change was written twice"


def test_one_million_row_transaction_with_bounded_memory(source):
    source.sql("CREATE TABLE big (id bigint PRIMARY KEY, a int, b text, c timestamptz)")
    source.run()
    source.sql("INSERT INTO big SELECT g, g % 1000, md5(g::text), now() FROM generate_series(1, 1000000) g")
    code, err, peak_kib = source.run()
    lake = source.lake()
    t = lake.table("public.big__changelog").scan(selected_fields=("id", "_cdc_op", "_cdc_lsn")).to_arrow()
    assert t.num_rows == 1_000_000
    assert len(set(t.column("_cdc_lsn").to_pylist())) == 1
    assert sorted(t.column("id").to_pylist()) == list(range(1, 1_000_001))
    print(f"\nphilotes peak RSS for a 1,000,000-row transaction: {peak_kib / 1024:.0f} MiB")
    assert 0 < peak_kib < 512 * 1024, f"peak RSS {peak_kib} KiB: memory is not bounded"


def slot_backlog(source):
    return source.sql(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('philotes', NULL, NULL, "
        "'proto_version', '1', 'publication_names', 'philotes')"
    )[0][0]


def schema_of(lake, ident):
    """{name: iceberg type as text} of the table's current schema."""
    return {f.name: str(f.field_type) for f in lake.table(ident).schema().fields}


def test_schema_evolution_follows_the_source_in_order(source):
    source.sql("CREATE TABLE evolving (id int PRIMARY KEY, a text, n numeric(6,2), r real, v varchar(5), gone text, code text)")
    source.sql("CREATE TABLE steady (id int PRIMARY KEY)")
    source.sql("INSERT INTO evolving VALUES (1, 'x', 1.25, 1.5, 'abc', 'g1', '7')")
    source.run()
    # The changes happen while Philotes streams: the stream's Relation messages show them.
    p = source.start("--flush-interval", "200ms")
    time.sleep(3)
    source.sql("INSERT INTO evolving VALUES (2, 'before', 2.5, 2.5, 'de', 'g2', '8')")
    source.sql("ALTER TABLE evolving ADD COLUMN b int")
    source.sql("INSERT INTO evolving VALUES (3, 'after add', 3.5, 3.5, 'fg', 'g3', '9', 3)")
    source.sql("ALTER TABLE evolving ADD COLUMN d text NOT NULL DEFAULT 'dflt'")
    source.sql("INSERT INTO evolving VALUES (4, 'with d', 4.5, 4.5, 'hi', 'g4', '12', 4, 'own')")
    source.sql("ALTER TABLE evolving RENAME COLUMN a TO alpha")
    source.sql("UPDATE evolving SET alpha = 'renamed' WHERE id = 1")
    source.sql("ALTER TABLE evolving ALTER COLUMN id TYPE bigint, ALTER COLUMN r TYPE double precision, "
               "ALTER COLUMN v TYPE varchar(50), ALTER COLUMN n TYPE numeric(12,2)")
    source.sql("INSERT INTO evolving (id, alpha, n, r, v, gone, code) "
               "VALUES (5000000000, 'big', 1234567890.12, 1e300, repeat('v', 40), 'g5', '10')")
    source.sql("ALTER TABLE evolving DROP COLUMN gone")
    source.sql("ALTER TABLE evolving ALTER COLUMN code TYPE int USING code::int")  # text -> int: no promotion
    source.sql("INSERT INTO evolving (id, alpha, code) VALUES (6, 'after drop', 11)")
    source.sql("UPDATE evolving SET b = 42 WHERE id = 2")
    source.sql("INSERT INTO steady VALUES (1)")
    time.sleep(3)
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert "table stopped" not in err and "schema change: renamed column a to alpha" in err, err[-3000:]
    source.run()  # whatever the stop left, drain it
    lake = source.lake()
    ident = "public.evolving__changelog"
    assert assert_same(source, lake, ident, "SELECT * FROM evolving", ["id"]) == 6
    assert assert_same(source, lake, "public.steady__changelog", "SELECT * FROM steady", ["id"]) == 1
    schema = schema_of(lake, ident)
    assert schema["id"] == "long" and schema["r"] == "double" and schema["n"] == "decimal(12, 2)", schema
    assert "a" not in schema and schema["alpha"] == "string" and schema["b"] == "int"
    assert schema["gone"] == "string", "a dropped column stays, with its history"
    assert schema["code"] == "int"
    kept = [name for name in schema if name.startswith("code__before_")]
    assert len(kept) == 1 and schema[kept[0]] == "string", schema
    rows = lake.changelog(ident)
    # History reads under the new names: the snapshot row of id 1 has its value in `alpha`.
    alphas = [r["alpha"] for r in rows if r["id"] == 1]
    assert alphas[0] == "x" and alphas[-1] == "renamed", alphas
    assert [r["gone"] for r in rows if r["id"] == 2][0] == "g2"
    assert all(r["gone"] is None for r in rows if r["id"] == 6)
    assert [r[kept[0]] for r in rows if r["id"] == 2][0] == "8"
    # text -> int was applied by rewriting the table, which the stream does not carry: the table
    # was copied again (a truncate marker, then every row), so unchanged rows have `code` too.
    # ADD COLUMN … DEFAULT likewise (older rows hold the default, unsent). How many copies that
    # takes depends on how far the catalog is ahead of the stream when Philotes sees the change.
    recopy = [i for i, r in enumerate(rows) if r["_cdc_op"] == "T"]
    assert recopy, [(r["id"], r["_cdc_op"]) for r in rows]
    assert {r["id"] for r in rows[recopy[-1] + 1:] if r["_cdc_op"] == "S"} == {1, 2, 3, 4, 5000000000, 6}


def test_schema_changed_while_philotes_was_down(source):
    source.sql("CREATE TABLE t (id int PRIMARY KEY, a text, w int)")
    source.sql("INSERT INTO t VALUES (1, 'x', 1)")
    source.run()
    source.sql("INSERT INTO t VALUES (2, 'y', 2)")
    source.sql("ALTER TABLE t RENAME COLUMN a TO b")
    source.sql("ALTER TABLE t ALTER COLUMN w TYPE bigint")
    source.sql("ALTER TABLE t ADD COLUMN c date DEFAULT '2020-02-02'")  # older rows hold it, unsent
    source.sql("ALTER TABLE t ADD COLUMN r float8 DEFAULT random()")  # volatile: PostgreSQL rewrites the table
    source.sql("INSERT INTO t VALUES (3, 'z', 3000000000, '2024-01-02', 0.5)")
    # Restarted: the lake follows the source's shape now, and the replayed older changes
    # (made under the old names) land in the same fields.
    source.run()
    lake = source.lake()
    assert assert_same(source, lake, "public.t__changelog", "SELECT * FROM t", ["id"]) == 3
    schema = schema_of(lake, "public.t__changelog")
    assert schema["b"] == "string" and schema["w"] == "long" and "a" not in schema, schema


def test_tables_join_and_leave_the_publication_while_streaming(source):
    args = ["--publication", "pub_some", "--tables", "public.first,public.doomed"]
    source.sql("CREATE TABLE first (id int PRIMARY KEY, v text)")
    source.sql("CREATE TABLE doomed (id int PRIMARY KEY)")
    source.sql("INSERT INTO first VALUES (1, 'a')")
    source.run(*args)
    p = source.start(*args, "--flush-interval", "200ms")
    time.sleep(3)
    # Joins, then changes: its first change makes Philotes copy it at once.
    source.sql("CREATE TABLE second (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO second SELECT g, 'before' FROM generate_series(1, 100) g")
    source.sql("ALTER PUBLICATION pub_some ADD TABLE second")
    source.sql("INSERT INTO second VALUES (101, 'after')")
    source.sql("UPDATE second SET v = 'changed' WHERE id = 1")
    time.sleep(2)  # second is taken in before third joins
    # Joins without a change after: found by looking at the publication again.
    source.sql("CREATE TABLE third (id int PRIMARY KEY)")
    source.sql("INSERT INTO third SELECT generate_series(1, 10)")
    source.sql("ALTER PUBLICATION pub_some ADD TABLE third")
    # Leaves: its last change before leaving is still applied; later ones are not its concern.
    source.sql("INSERT INTO first VALUES (2, 'last')")
    source.sql("ALTER PUBLICATION pub_some DROP TABLE first")
    source.sql("INSERT INTO doomed VALUES (1)")
    source.sql("DROP TABLE doomed")
    (after_leaving,) = source.sql("SELECT pg_current_wal_insert_lsn()")[0]
    source.sql("INSERT INTO first VALUES (3, 'not replicated')")
    deadline = time.time() + 60
    lake = source.lake()
    while time.time() < deadline:
        time.sleep(1)
        try:
            if len(lake.changelog("public.third__changelog")) == 10:
                break
        except Exception:  # not created yet
            pass
    time.sleep(1)
    p.terminate()
    _, err = p.communicate(timeout=60)
    assert err.count("left the publication (removed or dropped)") == 2, err[-3000:]
    assert "table stopped" not in err, err[-3000:]
    assert assert_same(source, lake, "public.second__changelog", "SELECT * FROM second", ["id"]) == 101
    assert assert_same(source, lake, "public.third__changelog", "SELECT * FROM third", ["id"]) == 10
    assert [r["id"] for r in lake.changelog("public.first__changelog")] == [1, 2]
    assert [r["id"] for r in lake.changelog("public.doomed__changelog")] == [1]
    # The tables that left hold nothing back: the slot was confirmed past their last changes.
    (moved,) = source.sql(f"SELECT confirmed_flush_lsn >= '{after_leaving}' FROM pg_replication_slots WHERE slot_name = 'philotes'")[0]
    assert moved


def test_an_invalidated_slot_says_so_and_resync_recovers(source):
    source.sql("CREATE TABLE kept (id int PRIMARY KEY, v text)")
    source.sql("INSERT INTO kept VALUES (1, 'a'), (2, 'b')")
    source.run()
    source.sql("UPDATE kept SET v = 'changed while down' WHERE id = 1")
    source.sql("DELETE FROM kept WHERE id = 2")
    source.sql("INSERT INTO kept VALUES (3, 'c')")
    # The source removes WAL the slot still needs: max_slot_wal_keep_size, 80 MB of WAL, checkpoints.
    source.sql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    source.sql("SELECT pg_reload_conf()")
    try:
        lost = False
        for _ in range(5):
            source.sql("SELECT pg_logical_emit_message(false, 'filler', repeat('x', 1000000)) FROM generate_series(1, 40)")
            source.sql("SELECT pg_switch_wal()")
            source.sql("CHECKPOINT")
            (status,) = source.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'philotes'")[0]
            if status == "lost":
                lost = True
                break
        assert lost, status
    finally:
        source.sql("ALTER SYSTEM RESET max_slot_wal_keep_size")
        source.sql("SELECT pg_reload_conf()")
    code, err, _ = source.run(check=False)
    assert code != 0 and "invalidated" in err and "philotes resync" in err, err[-2000:]
    source.resync()
    lake = source.lake()
    assert assert_same(source, lake, "public.kept__changelog", "SELECT * FROM kept", ["id"]) == 2
    ops = [r["_cdc_op"] for r in lake.changelog("public.kept__changelog")]
    assert ops == ["S", "S", "T", "S", "S"], ops  # the first copy, then a truncate marker and the new copy
    source.sql("INSERT INTO kept VALUES (4, 'd')")
    source.run()  # and streaming goes on with the new slot
    assert assert_same(source, lake, "public.kept__changelog", "SELECT * FROM kept", ["id"]) == 3


def test_a_dropped_slot_stops_tables_until_resync(source):
    source.sql("CREATE TABLE a (id int PRIMARY KEY)")
    source.sql("CREATE TABLE b (id int PRIMARY KEY)")
    source.sql("INSERT INTO a VALUES (1)")
    source.sql("INSERT INTO b VALUES (1)")
    source.run()
    source.sql("SELECT pg_drop_replication_slot('philotes')")
    source.sql("INSERT INTO a VALUES (2)")  # made while no slot existed: never streamed
    source.sql("INSERT INTO b VALUES (2)")
    code, err, _ = source.run(check=False)
    assert code == 1 and "philotes resync public.a" in err and "philotes resync public.b" in err, err[-2000:]
    code, err, _ = source.resync("public.a", check=False)  # exits 1: b still waits
    assert code == 1 and "error: table public.b is stopped" in err and "error: table public.a" not in err
    lake = source.lake()
    assert assert_same(source, lake, "public.a__changelog", "SELECT * FROM a", ["id"]) == 2
    code, err, _ = source.run(check=False)  # later runs still keep b apart (recorded in the table)
    assert code == 1 and "error: table public.b is stopped" in err and "error: table public.a" not in err
    source.resync("public.b")
    assert assert_same(source, lake, "public.b__changelog", "SELECT * FROM b", ["id"]) == 2


def test_heartbeats_move_a_quiet_slot(source):
    source.sql("CREATE TABLE quiet (id int PRIMARY KEY)")
    source.run()
    (before,) = source.sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'philotes'")[0]
    p = source.start("--flush-interval", "1s")
    time.sleep(14)  # one heartbeat every 10 s, nothing else writes
    p.terminate()
    _, err = p.communicate(timeout=60)
    (moved,) = source.sql(f"SELECT confirmed_flush_lsn > '{before}' FROM pg_replication_slots WHERE slot_name = 'philotes'")[0]
    assert moved, err[-2000:]
    assert "slot status" in err and "retained_wal_bytes" in err


def test_a_partitioned_table_is_replicated_as_its_root(source):
    source.sql("CREATE TABLE events (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    source.sql("CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    source.sql("CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    source.sql("INSERT INTO events VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b')")
    source.run()
    source.sql("INSERT INTO events VALUES (3, '2024-06-01', 'c')")
    source.sql("UPDATE events SET v = 'b2' WHERE id = 2")
    source.sql("UPDATE events SET at = '2025-02-01' WHERE id = 1")  # moves to the other partition
    source.sql("DELETE FROM events WHERE id = 3")
    source.run()
    lake = source.lake()
    assert assert_same(source, lake, "public.events__changelog", "SELECT * FROM events", ["id", "at"]) == 2
    names = {t[-1] for t in lake.catalog.list_tables("public")}
    assert names == {"events__changelog"}, names


def test_replica_identity_using_index(source):
    source.sql("CREATE TABLE accounts (code text NOT NULL, n int, v text)")
    source.sql("CREATE UNIQUE INDEX accounts_code ON accounts (code)")
    source.sql("ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_code")
    source.sql("INSERT INTO accounts VALUES ('a', 1, 'x'), ('b', 2, 'y'), ('c', 3, 'z')")
    source.run()
    source.sql("UPDATE accounts SET v = 'y2' WHERE code = 'b'")
    source.sql("UPDATE accounts SET code = 'a2' WHERE code = 'a'")  # the identity itself changes
    source.sql("DELETE FROM accounts WHERE code = 'c'")
    source.run()
    lake = source.lake()
    assert assert_same(source, lake, "public.accounts__changelog", "SELECT * FROM accounts", ["code"]) == 2
    ops = [(r["code"], r["_cdc_op"]) for r in lake.changelog("public.accounts__changelog")][3:]
    assert ops == [("b", "U"), ("a", "D"), ("a2", "U"), ("c", "D")], ops


def test_a_flush_interval_longer_than_the_publication_poll_still_commits(source):
    source.sql("CREATE TABLE slow (id int PRIMARY KEY)")
    source.run()
    p = source.start("--flush-interval", "12s")  # Philotes looks at the publication every 10 s
    try:
        time.sleep(2)
        source.sql("INSERT INTO slow VALUES (1)")
        lake = source.lake()
        deadline = time.time() + 45
        while time.time() < deadline and len(lake.changelog("public.slow__changelog")) == 0:
            time.sleep(1)
        assert len(lake.changelog("public.slow__changelog")) == 1, "committed while running"
    finally:
        p.terminate()
        p.communicate(timeout=60)


def test_publication_for_listed_tables(source):
    source.sql("CREATE TABLE wanted (id int PRIMARY KEY)")
    source.sql("CREATE TABLE unwanted (id int PRIMARY KEY)")
    source.sql("INSERT INTO wanted VALUES (1)")
    source.sql("INSERT INTO unwanted VALUES (1)")
    source.run("--publication", "only_wanted", "--tables", "public.wanted")
    assert source.sql("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'only_wanted'") == [("public", "wanted")]
    tables = source.lake().catalog.list_tables("public")
    assert tables == [("public", "wanted__changelog")]


def spill_files(source):
    d = source.data_dir / "spill"
    return sorted(d.glob("*.spill")) if d.exists() else []


def wait_for(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_large_transaction_arrives_while_it_runs_and_only_its_committed_part_lands(source):
    # Small enough that every transaction below is streamed while it runs (protocol 2).
    source.sql(f'ALTER DATABASE "{source.name}" SET logical_decoding_work_mem = \'64kB\'')
    source.sql("CREATE TABLE big (id bigint PRIMARY KEY, v text, doc jsonb)")
    source.sql("INSERT INTO big VALUES (0, 'before', '{}')")
    source.run()
    p = source.start("--flush-interval", "300ms")
    writer = psycopg.connect(source.url)
    try:
        writer.execute("INSERT INTO big SELECT g, md5(g::text), jsonb_build_object('g', g) FROM generate_series(1, 20000) g")
        wait_for("the running transaction to reach the spill file", lambda: spill_files(source))
        time.sleep(1)
        # Nothing of a running transaction is in the lake.
        assert list(source.lake().current_state("public.big__changelog", ["id"])) == [(0,)]
        # kill -9 while it is half-arrived: the next run drops the partial file and the source
        # sends the transaction again from its start.
        p.kill()
        p.wait()
        p = source.start("--flush-interval", "300ms")
        writer.execute("SAVEPOINT s")
        writer.execute("INSERT INTO big SELECT g, 'rolled back', NULL FROM generate_series(100001, 105000) g")
        writer.execute("UPDATE big SET v = 'rolled back too' WHERE id <= 100")
        writer.execute("ROLLBACK TO SAVEPOINT s")
        writer.execute("UPDATE big SET v = 'kept' WHERE id BETWEEN 50 AND 150")
        writer.execute("DELETE FROM big WHERE id BETWEEN 1000 AND 1099")
        writer.execute("INSERT INTO big SELECT g, 'after savepoint', NULL FROM generate_series(200001, 203000) g")
        wait_for("the source to stream the new blocks", lambda: spill_files(source))
        writer.commit()
        # A large transaction that rolls back leaves nothing.
        with psycopg.connect(source.url) as aborted:
            aborted.execute("INSERT INTO big SELECT g, 'aborted', NULL FROM generate_series(300001, 320000) g")
            aborted.execute("UPDATE big SET v = 'aborted' WHERE id <= 5000")
            aborted.rollback()
        expected = source.sql("SELECT count(*) FROM big")[0][0]
        wait_for("the committed transaction in the lake", lambda: len(source.lake().current_state("public.big__changelog", ["id"])) == expected)
    finally:
        writer.close()
        p.terminate()
        p.wait()
    source.run()
    lake = source.lake()
    assert assert_same(source, lake, "public.big__changelog", "SELECT id, v, doc::text AS doc FROM big", ["id"]) == 20001 - 100 + 3000
    rows = lake.changelog("public.big__changelog")
    assert not [r for r in rows if r["v"] in ("rolled back", "rolled back too", "aborted")]
    assert not spill_files(source), "spill files left behind"
    streamed = source.sql("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'philotes'")
    assert streamed and streamed[0][0] >= 2, f"the source streamed no transaction: {streamed}"


def test_large_transactions_without_streaming(source):
    source.sql(f'ALTER DATABASE "{source.name}" SET logical_decoding_work_mem = \'64kB\'')
    source.sql("CREATE TABLE big (id bigint PRIMARY KEY, v text)")
    source.run("--stream-large-transactions=false")
    source.sql("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    source.run("--stream-large-transactions=false")
    assert assert_same(source, source.lake(), "public.big__changelog", "SELECT * FROM big", ["id"]) == 20000
    assert not (source.data_dir / "spill").exists()
    streamed = source.sql("SELECT stream_txns, spill_txns FROM pg_stat_replication_slots WHERE slot_name = 'philotes'")
    assert streamed[0][0] == 0 and streamed[0][1] >= 1, f"expected the source to spill, not stream: {streamed}"


def test_numeric_nan_and_infinities_round_trip_where_the_lake_type_can_hold_them(source):
    # numeric without precision (and p > 38) is a string column: NaN and ±Infinity keep their
    # words (PostgreSQL allows only NaN in numeric with a precision). numeric(p,s) with p ≤ 38 is
    # a decimal, which cannot hold NaN: test_unconvertible_value_*.
    source.sql("CREATE TABLE n (id int PRIMARY KEY, free numeric, wide numeric(50,2), f8 float8)")
    source.sql("INSERT INTO n VALUES (1, 'NaN', 'NaN', 'NaN'), (2, 'Infinity', 1e40, '-Infinity'), (3, 1.5, 2.25, 0)")
    source.run()
    source.sql("INSERT INTO n VALUES (4, '-Infinity', 'NaN', 'Infinity'), (5, 'NaN', NULL, NULL)")
    source.sql("UPDATE n SET free = 'NaN' WHERE id = 3")
    source.run()
    q = "SELECT id, free::text AS free, wide::text AS wide, f8 FROM n"
    assert assert_same(source, source.lake(), "public.n__changelog", q, ["id"]) == 5
    state = source.lake().current_state("public.n__changelog", ["id"])
    assert [state[(i,)]["free"] for i in (1, 2, 3, 4, 5)] == ["NaN", "Infinity", "NaN", "-Infinity", "NaN"]
