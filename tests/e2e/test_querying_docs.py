"""The current-state recipes of docs/querying.md, run as written (DuckDB, pyiceberg) on a lake
Philotes wrote, and compared with the source."""
import re
from pathlib import Path

import duckdb

from compare import norm

DOC = Path(__file__).resolve().parents[2] / "docs" / "querying.md"


def recipe(name):
    text = DOC.read_text()
    m = re.search(rf"<!-- tested: {name} -->\n```\w+\n(.*?)```", text, re.S)
    assert m, f"docs/querying.md has no tested {name} block"
    return m.group(1)


def make_orders(source):
    source.sql("CREATE TABLE orders (id int PRIMARY KEY, status text, body text)")
    big = "x" * 300000  # stored out of line (TOAST), so updates that leave it alone omit it
    source.sql("INSERT INTO orders SELECT g, 'new', %s || g FROM generate_series(1, 30) g", (big,))
    source.run()
    source.sql("UPDATE orders SET status = 'paid' WHERE id <= 10")  # body unchanged
    source.sql("UPDATE orders SET status = NULL, body = NULL WHERE id = 11")  # real NULLs
    source.sql("DELETE FROM orders WHERE id > 25")
    source.sql("TRUNCATE orders")
    source.sql("INSERT INTO orders SELECT g, 'again', %s || g FROM generate_series(1, 20) g", (big,))
    source.sql("UPDATE orders SET status = 'shipped' WHERE id % 2 = 0")
    source.sql("UPDATE orders SET body = NULL WHERE id = 3")
    source.sql("UPDATE orders SET status = 'late' WHERE id <= 4")
    source.run()
    want = {r[0]: (r[1], r[2]) for r in source.sql("SELECT id, status, body FROM orders")}
    assert len(want) == 20
    return want


def test_duckdb_view_in_the_docs_gives_the_current_state(source):
    want = make_orders(source)
    changelog = source.lake().table("public.orders__changelog").scan().to_arrow()
    assert changelog.num_rows > 60
    con = duckdb.connect()
    con.register("orders__changelog", changelog)
    got = {r[0]: (r[1], r[2]) for r in con.sql(recipe("duckdb")).fetchall()}
    assert got == want


def test_pyiceberg_recipe_in_the_docs_gives_the_current_state(source):
    want = make_orders(source)
    scope = {"DATA_DIR": str(source.data_dir)}
    code = recipe("pyiceberg").replace("shop.orders__changelog", "public.orders__changelog")
    exec(compile(code, str(DOC), "exec"), scope)  # the docs' own code, run as written
    got = {k[0]: (norm(r["status"]), norm(r["body"])) for k, r in scope["orders"].items()}
    assert got == want
