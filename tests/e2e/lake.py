"""Reading Philotes' lake with pyiceberg + pyarrow only: the independent check of our output.

`current_state` implements the changelog table contract (docs/changelog-tables.md) in plain
Python: per key, the row with the greatest (_cdc_lsn, _cdc_seq) after the last T, unless it is a
D; unchanged TOAST columns (listed in _cdc_unchanged) carry the earlier value forward.
"""
from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog

META = ["_cdc_op", "_cdc_lsn", "_cdc_seq", "_cdc_ts", "_cdc_unchanged"]


class Lake:
    def __init__(self, data_dir: Path = None, catalog_name="philotes", warehouse=None, props=None, catalog=None):
        if catalog is not None:
            self.catalog = catalog
            return
        data_dir = Path(data_dir)
        self.catalog = SqlCatalog(
            catalog_name,
            uri=f"sqlite:///{data_dir / 'catalog.db'}",
            warehouse=warehouse or f"file://{data_dir / 'warehouse'}",
            **(props or {}),
        )

    def table(self, ident):
        return self.catalog.load_table(ident)

    def changelog(self, ident):
        """All changelog rows as dicts, in (lsn, seq) order."""
        rows = self.table(ident).scan().to_arrow().to_pylist()
        rows.sort(key=lambda r: (r["_cdc_lsn"], r["_cdc_seq"]))
        return rows

    def summaries(self, ident):
        t = self.table(ident)
        return [s.summary.additional_properties for s in t.snapshots()]

    def current_state(self, ident, key):
        """{key tuple: row dict without metadata} per the contract."""
        state = {}
        deleted = None  # (lsn, seq, row) of the last D: a key change writes D then U
        for r in self.changelog(ident):
            op = r["_cdc_op"]
            if op == "T":
                state.clear()
                continue
            k = tuple(r[c] for c in key)
            if op == "D":
                deleted = (r["_cdc_lsn"], r["_cdc_seq"], state.pop(k, None))
                continue
            row = {c: v for c, v in r.items() if c not in META}
            for col in r["_cdc_unchanged"] or []:
                prev = state.get(k)
                if prev is None and deleted and deleted[:2] == (r["_cdc_lsn"], r["_cdc_seq"] - 1):
                    prev = deleted[2]  # the key changed: the value was the old key's
                assert prev is not None, f"unchanged TOAST column {col} with no earlier value for key {k}"
                row[col] = prev[col]
            state[k] = row
        return state
