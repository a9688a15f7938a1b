"""Comparing the source with the lake's current state, value by value."""
import math


def norm(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, memoryview):
        return bytes(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def source_rows(src, query, key):
    cur = src.conn.execute(query)
    cols = [d.name for d in cur.description]
    out = {}
    for r in cur.fetchall():
        row = {c: norm(v) for c, v in zip(cols, r)}
        out[tuple(row[k] for k in key)] = row
    return out


def assert_same(src, lake, ident, query, key):
    want = source_rows(src, query, key)
    got = {k: {c: norm(v) for c, v in row.items()} for k, row in lake.current_state(ident, key).items()}
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"{ident}: missing keys {missing}, extra keys {extra}"
    for k, row in want.items():
        for c, v in row.items():
            assert got[k].get(c) == v, f"{ident} key {k} column {c}: lake {got[k].get(c)!r} != source {v!r}"
    return len(want)
