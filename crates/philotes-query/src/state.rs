//! The current-state view of a changelog table, as DataFusion SQL.
//!
//! The contract (docs/changelog-tables.md): per key, the latest change by (`_cdc_lsn`,
//! `_cdc_seq`) after the last `T`, unless it is a `D`; a column listed in `_cdc_unchanged`
//! (an unchanged TOAST value) keeps the key's previous value.
//!
//! Two forms. When no change (after the last truncate) left a value unchanged, the state is
//! each key's last row: `row_number()` over the key on rows sorted by key and position — the
//! sort spills under a memory limit and the window streams over it ([`latest_row_sql`]).
//! Otherwise values must be carried forward per column: `GROUP BY` key with
//! `last_value(… ORDER BY …) FILTER (…)` ([`current_state_sql`]), whose hash aggregation also
//! spills but is several times slower (DataFusion's ordered `last_value` on strings works row
//! by row). The `FILTER` skips exactly the rows where a column was unchanged, so a real NULL is
//! still a value — which `IGNORE NULLS` would get wrong. A `D` row is not skipped: it resets
//! the key, and the next insert carries every value.

/// One source column of a changelog table, as the view needs it.
#[derive(Clone, Debug)]
pub struct ViewColumn {
    /// The name in the table's current schema.
    pub name: String,
    /// Every name the field has had (renames), as `_cdc_unchanged` may list any of them.
    pub names: Vec<String>,
    pub is_key: bool,
    /// A type PostgreSQL may TOAST (variable length): only these can be "unchanged".
    pub toastable: bool,
}

/// Rows of the changelog to consider: everything, or up to a source LSN or commit time.
#[derive(Clone, Debug, PartialEq)]
pub enum Upto {
    All,
    /// `_cdc_lsn <= lsn` (an LSN as a number).
    Lsn(u64),
    /// `_cdc_ts <=` this many microseconds since 1970-01-01 UTC.
    Micros(i64),
}

impl Upto {
    /// The SQL condition on the changelog's rows (`TRUE` for all).
    pub fn condition(&self) -> String {
        match self {
            Upto::All => "TRUE".to_string(),
            Upto::Lsn(l) => format!("_cdc_lsn <= {l}"),
            Upto::Micros(us) => format!("_cdc_ts <= to_timestamp_micros({us})"),
        }
    }
}

/// Double-quote an identifier for DataFusion SQL.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Single-quote a string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The query for the position (`_cdc_lsn`, `_cdc_seq`) of the last truncate up to `upto`.
pub fn last_truncate_sql(changelog: &str, upto: &Upto) -> String {
    format!(
        "SELECT _cdc_lsn, _cdc_seq FROM {changelog} WHERE _cdc_op = 'T' AND {} \
         ORDER BY _cdc_lsn DESC, _cdc_seq DESC LIMIT 1",
        upto.condition()
    )
}

/// The `SELECT` of the current state of `changelog` (a quoted, qualified table reference),
/// whose last truncate up to `upto` is at `truncate` (found with [`last_truncate_sql`] first:
/// as a subquery DataFusion would join it with the whole table in memory).
pub fn current_state_sql(
    changelog: &str,
    columns: &[ViewColumn],
    upto: &Upto,
    truncate: Option<(i64, i64)>,
) -> String {
    let order = "ORDER BY _cdc_lsn, _cdc_seq";
    let keys = key_list(columns);
    let mut aggregates = Vec::new();
    for c in columns.iter().filter(|c| !c.is_key) {
        let col = ident(&c.name);
        let filter = if c.toastable {
            format!(" FILTER (WHERE {})", given(c))
        } else {
            String::new()
        };
        aggregates.push(format!("last_value({col} {order}){filter} AS {col}"));
    }
    aggregates.push(format!("last_value(_cdc_op {order}) AS _cdc_op"));
    aggregates.push(format!("last_value(_cdc_lsn {order}) AS _cdc_lsn"));
    aggregates.push(format!("last_value(_cdc_ts {order}) AS _cdc_ts"));
    let upto = upto.condition();
    let after_truncate = after(truncate);
    let outputs = output_list(columns);
    format!(
        "SELECT {outputs} FROM (SELECT {keys}, {aggs} FROM {changelog} \
         WHERE _cdc_op <> 'T' AND {upto} AND {after_truncate} GROUP BY {keys}) \
         WHERE _cdc_op <> 'D'",
        aggs = aggregates.join(", "),
    )
}

/// The quoted key columns, comma-separated.
fn key_list(columns: &[ViewColumn]) -> String {
    let keys: Vec<String> = columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| ident(&c.name))
        .collect();
    keys.join(", ")
}

/// What a current-state view shows: the source columns, then the last change's position.
fn output_list(columns: &[ViewColumn]) -> String {
    let outputs: Vec<String> = columns
        .iter()
        .map(|c| ident(&c.name))
        .chain(["_cdc_lsn".to_string(), "_cdc_ts".to_string()])
        .collect();
    outputs.join(", ")
}

/// The condition for rows after the truncate at `truncate`.
fn after(truncate: Option<(i64, i64)>) -> String {
    match truncate {
        None => "TRUE".to_string(),
        Some((lsn, seq)) => {
            format!("(_cdc_lsn > {lsn} OR (_cdc_lsn = {lsn} AND _cdc_seq > {seq}))")
        }
    }
}

/// The query for whether any change up to `upto` after `truncate` left a TOAST value unchanged.
pub fn any_unchanged_sql(changelog: &str, upto: &Upto, truncate: Option<(i64, i64)>) -> String {
    format!(
        // Not `IS NOT NULL`: pushed into the Iceberg scan, a condition on a list column fails.
        "SELECT 1 AS unchanged FROM {changelog} WHERE cardinality(_cdc_unchanged) > 0 AND {} AND {} LIMIT 1",
        upto.condition(),
        after(truncate)
    )
}

/// The current state when no change left a value unchanged: per key its last row, found with
/// `row_number()` over the key. Several times faster than [`current_state_sql`] (DataFusion's
/// ordered `last_value` on strings works row by row) and as bounded in memory: the sort
/// spills, and the window streams over the sorted rows.
pub fn latest_row_sql(
    changelog: &str,
    columns: &[ViewColumn],
    upto: &Upto,
    truncate: Option<(i64, i64)>,
) -> String {
    let keys = key_list(columns);
    let outputs = output_list(columns);
    format!(
        "SELECT {outputs} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} \
         ORDER BY _cdc_lsn DESC, _cdc_seq DESC) AS _cdc_rn FROM {changelog} \
         WHERE _cdc_op <> 'T' AND {upto} AND {after}) WHERE _cdc_rn = 1 AND _cdc_op <> 'D'",
        upto = upto.condition(),
        after = after(truncate),
    )
}

/// The name of the column [`retention_base_sql`] adds for source column `i`: how many of the
/// key's changes gave that column a value (0 when every one left it unchanged).
pub fn resolved_column(i: usize) -> String {
    format!("_philotes_resolved_{i}")
}

/// The base that changelog retention keeps in place of every change before `cut`: per key alive
/// just before `cut`, one row — its last change (`_cdc_op`, `_cdc_lsn`, `_cdc_seq`, `_cdc_ts`
/// as they were), with every value the current-state rule gives the key at that point. It is
/// [`current_state_sql`] up to `cut`, keeping `_cdc_seq` too and, per toastable column `i`, the
/// count [`resolved_column`]`(i)` of changes that gave it a value: where that is 0, no change
/// ever did, and the base row must still list the column as unchanged (exactly what the view
/// would have found: no value). Replacing the changes before `cut` by these rows changes no
/// answer of the view at or after `cut`.
pub fn retention_base_sql(
    changelog: &str,
    columns: &[ViewColumn],
    cut: i64,
    truncate: Option<(i64, i64)>,
) -> String {
    let order = "ORDER BY _cdc_lsn, _cdc_seq";
    let keys = key_list(columns);
    let mut aggregates = Vec::new();
    let mut outputs: Vec<String> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let col = ident(&c.name);
        outputs.push(col.clone());
        if c.is_key {
            continue;
        }
        if c.toastable {
            let filter = format!("FILTER (WHERE {})", given(c));
            aggregates.push(format!("last_value({col} {order}) {filter} AS {col}"));
            let resolved = resolved_column(i);
            aggregates.push(format!("count(1) {filter} AS {resolved}"));
            outputs.push(resolved);
        } else {
            aggregates.push(format!("last_value({col} {order}) AS {col}"));
        }
    }
    for meta in ["_cdc_op", "_cdc_lsn", "_cdc_seq", "_cdc_ts"] {
        aggregates.push(format!("last_value({meta} {order}) AS {meta}"));
        outputs.push(meta.to_string());
    }
    format!(
        "SELECT {outputs} FROM (SELECT {keys}, {aggs} FROM {changelog} \
         WHERE _cdc_op <> 'T' AND _cdc_lsn < {cut} AND {after} GROUP BY {keys}) \
         WHERE _cdc_op <> 'D'",
        outputs = outputs.join(", "),
        aggs = aggregates.join(", "),
        after = after(truncate),
    )
}

/// The condition under which a change gives toastable column `c` a value (it is not listed in
/// `_cdc_unchanged` under any name the column has had). A `D` gives every column NULL.
fn given(c: &ViewColumn) -> String {
    let listed: Vec<String> = c
        .names
        .iter()
        .map(|n| format!("array_has(_cdc_unchanged, {})", literal(n)))
        .collect();
    format!("_cdc_unchanged IS NULL OR NOT ({})", listed.join(" OR "))
}

/// The query for the first change before `cut` (from `from` on: a base holds no `D`) that is
/// the new key's row of a key change, left a TOAST value unchanged, and is not followed before
/// `cut` by a change of the same key that gives every value (or deletes it). The contract takes
/// such a value from the old key's row, which a base no longer holds once the old key is gone,
/// so retention cuts before it and waits until a later change of the key settles the value.
pub fn first_unchanged_key_change_sql(
    changelog: &str,
    columns: &[ViewColumn],
    from: i64,
    cut: i64,
) -> String {
    let between = format!("_cdc_lsn >= {from} AND _cdc_lsn < {cut}");
    let keys: Vec<String> = columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| ident(&c.name))
        .collect();
    let same_key: Vec<String> = keys.iter().map(|k| format!("l.{k} = u.{k}")).collect();
    format!(
        "SELECT min(u._cdc_lsn) AS lsn FROM \
         (SELECT {key_cols}, _cdc_lsn, _cdc_seq FROM {changelog} WHERE _cdc_op = 'U' AND {between} \
          AND cardinality(_cdc_unchanged) > 0) u \
         JOIN (SELECT _cdc_lsn, _cdc_seq FROM {changelog} WHERE _cdc_op = 'D' AND {between}) d \
         ON u._cdc_lsn = d._cdc_lsn AND u._cdc_seq = d._cdc_seq + 1 \
         WHERE NOT EXISTS (SELECT 1 FROM {changelog} l WHERE {same_key} AND l._cdc_lsn < {cut} \
          AND (l._cdc_lsn > u._cdc_lsn OR (l._cdc_lsn = u._cdc_lsn AND l._cdc_seq > u._cdc_seq)) \
          AND (l._cdc_op = 'D' OR l._cdc_unchanged IS NULL OR cardinality(l._cdc_unchanged) = 0))",
        key_cols = keys.join(", "),
        same_key = same_key.join(" AND "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, is_key: bool, toastable: bool) -> ViewColumn {
        ViewColumn {
            name: name.into(),
            names: vec![name.into()],
            is_key,
            toastable,
        }
    }

    #[test]
    fn view_groups_by_key_and_filters_only_toastable_columns() {
        let mut body = col("body", false, true);
        body.names.push("old \"body\"".into());
        let sql = current_state_sql(
            "\"shop\".\"orders__changelog\"",
            &[col("id", true, false), col("n", false, false), body],
            &Upto::Lsn(42),
            Some((40, 3)),
        );
        assert!(sql.contains("(_cdc_lsn > 40 OR (_cdc_lsn = 40 AND _cdc_seq > 3))"));
        assert!(sql.contains("GROUP BY \"id\""), "{sql}");
        assert!(sql.contains("last_value(\"n\" ORDER BY _cdc_lsn, _cdc_seq) AS \"n\""));
        assert!(sql.contains(
            "FILTER (WHERE _cdc_unchanged IS NULL OR NOT (array_has(_cdc_unchanged, 'body') OR array_has(_cdc_unchanged, 'old \"body\"')))"
        ));
        assert!(sql.contains("_cdc_lsn <= 42"));
        assert!(sql.ends_with("WHERE _cdc_op <> 'D'"));
        assert!(sql.starts_with("SELECT \"id\", \"n\", \"body\", _cdc_lsn, _cdc_ts FROM"));
    }

    #[test]
    fn latest_row_view_numbers_rows_per_key() {
        let sql = latest_row_sql(
            "\"t\"",
            &[
                col("a", true, false),
                col("b", true, false),
                col("v", false, true),
            ],
            &Upto::All,
            Some((7, 0)),
        );
        assert!(sql.starts_with("SELECT \"a\", \"b\", \"v\", _cdc_lsn, _cdc_ts FROM"));
        assert!(sql.contains("PARTITION BY \"a\", \"b\" ORDER BY _cdc_lsn DESC, _cdc_seq DESC"));
        assert!(sql.contains("(_cdc_lsn > 7 OR (_cdc_lsn = 7 AND _cdc_seq > 0))"));
        assert!(sql.ends_with("WHERE _cdc_rn = 1 AND _cdc_op <> 'D'"));
        assert!(any_unchanged_sql("\"t\"", &Upto::Lsn(9), None).contains("_cdc_lsn <= 9"));
    }

    #[test]
    fn retention_base_keeps_the_last_change_and_counts_given_values() {
        let sql = retention_base_sql(
            "\"t\"",
            &[
                col("id", true, false),
                col("n", false, false),
                col("body", false, true),
            ],
            500,
            Some((40, 3)),
        );
        assert!(
            sql.starts_with("SELECT \"id\", \"n\", \"body\", _philotes_resolved_2, _cdc_op, _cdc_lsn, _cdc_seq, _cdc_ts FROM"),
            "{sql}"
        );
        assert!(
            sql.contains("_cdc_lsn < 500 AND (_cdc_lsn > 40 OR (_cdc_lsn = 40 AND _cdc_seq > 3))")
        );
        assert!(sql.contains("count(1) FILTER (WHERE _cdc_unchanged IS NULL OR NOT (array_has(_cdc_unchanged, 'body'))) AS _philotes_resolved_2"));
        assert!(sql.contains("last_value(_cdc_seq ORDER BY _cdc_lsn, _cdc_seq) AS _cdc_seq"));
        assert!(sql.contains("GROUP BY \"id\""));
        assert!(sql.ends_with("WHERE _cdc_op <> 'D'"));
        let guard = first_unchanged_key_change_sql("\"t\"", &[col("id", true, false)], 100, 500);
        assert!(guard.contains("l.\"id\" = u.\"id\""), "{guard}");
        assert!(
            guard.contains("_cdc_lsn >= 100 AND _cdc_lsn < 500"),
            "{guard}"
        );
        assert!(guard.contains("u._cdc_seq = d._cdc_seq + 1"), "{guard}");
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(Upto::All.condition(), "TRUE");
    }
}
