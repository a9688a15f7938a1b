//! Row digests: what lets the source and the lake be compared without holding either.
//!
//! Every value is encoded in Arrow's row format — exact and invertible, so two values encode
//! alike only when they are equal, NULLs and nested values included — and hashed. A row's
//! digest folds its columns' hashes; its bucket (a range of the key's hash) comes from the key
//! alone, so a key lands in the same bucket on both sides whatever order the rows arrive in.
//!
//! Why ranges of the key's hash and not ranges of the key: the two sides do not sort alike
//! (collations, `numeric` kept as text, `-0.0`), and a bucket summary — row count plus the
//! wrapping sum of the rows' digests — does not depend on order, so neither side is sorted at
//! all. Equal summaries mean equal rows up to a 2⁻⁶⁴ chance.

use std::collections::BTreeMap;
use std::sync::Arc;

use philotes_core::{Error, ErrorKind, Result};
use philotes_query::datafusion::arrow::array::ArrayRef;
use philotes_query::datafusion::arrow::compute::{CastOptions, cast_with_options};
use philotes_query::datafusion::arrow::datatypes::DataType;
use philotes_query::datafusion::arrow::row::{RowConverter, Rows, SortField};
use philotes_query::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Buckets per table: with 65,536 a 100-million-row table has ~1,500 rows per bucket, so one
/// wrong row costs a drill into 1,500; the summaries take 2 MiB for both sides.
pub const BUCKETS: usize = 1 << 16;

fn internal(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Internal, what.to_string()).with_source(e)
}

/// Digests rows of one table's compared columns.
pub struct Digester {
    names: Arc<[String]>,
    types: Vec<DataType>,
    /// One converter per column, so each column's hash stands alone (which columns differ).
    columns: Vec<RowConverter>,
    /// The key columns together: the identity of a row, comparable in key order.
    key: Vec<usize>,
    key_rows: RowConverter,
    hasher: ahash::RandomState,
}

/// Digests of one batch.
pub struct BatchDigest {
    /// Per row, its bucket.
    pub bucket: Vec<u32>,
    /// Per row, its digest.
    pub row: Vec<u64>,
    /// Per column, per row, the value's hash.
    pub columns: Vec<Vec<u64>>,
}

fn fold(acc: u64, h: u64) -> u64 {
    (acc ^ h)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

impl Digester {
    /// A digester for columns `names` of `types`, identified by the columns at `key`.
    pub fn new(names: Vec<String>, types: Vec<DataType>, key: Vec<usize>) -> Result<Digester> {
        let converter = |ts: Vec<DataType>| {
            RowConverter::new(ts.into_iter().map(SortField::new).collect())
                .map_err(|e| internal("a column type cannot be compared", e))
        };
        let columns = types
            .iter()
            .map(|t| converter(vec![t.clone()]))
            .collect::<Result<Vec<_>>>()?;
        let key_rows = converter(key.iter().map(|&i| types[i].clone()).collect())?;
        Ok(Digester {
            names: names.into(),
            types,
            columns,
            key,
            key_rows,
            // Fixed seeds: both sides are digested in this process, with the same hasher.
            hasher: ahash::RandomState::with_seeds(
                0x5048_494c_4f54_4553,
                0x7665_7269_6679_0001,
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
            ),
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `cols` in the digester's types (the source side is converted like the sink writes it;
    /// the lake's reader may use other Arrow types for the same values).
    pub fn align(&self, cols: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
        cols.into_iter()
            .zip(&self.types)
            .zip(self.names.iter())
            .map(|((c, t), name)| {
                if c.data_type() == t {
                    return Ok(c);
                }
                // Not `safe`: a value that does not fit is an error, never a NULL that might
                // match a NULL on the other side.
                let options = CastOptions {
                    safe: false,
                    ..CastOptions::default()
                };
                cast_with_options(&c, t, &options).map_err(|e| {
                    Error::new(
                        ErrorKind::Invalid,
                        format!(
                            "column {name}: the source's values ({}) cannot be compared with the lake's ({t}); the source's type changed and the lake has not followed yet",
                            c.data_type()
                        ),
                    )
                    .with_source(e)
                })
            })
            .collect()
    }

    /// Digest a batch of aligned columns.
    pub fn digest(&self, cols: &[ArrayRef]) -> Result<BatchDigest> {
        let n = cols.first().map_or(0, |c| c.len());
        let mut hashes = Vec::with_capacity(cols.len());
        for (i, (col, conv)) in cols.iter().zip(&self.columns).enumerate() {
            let rows = conv
                .convert_columns(std::slice::from_ref(col))
                .map_err(|e| internal("cannot encode values", e))?;
            let tag = i as u64;
            hashes.push(
                rows.iter()
                    .map(|r| self.hasher.hash_one((tag, r.as_ref())))
                    .collect::<Vec<u64>>(),
            );
        }
        let mut bucket = Vec::with_capacity(n);
        let mut row = Vec::with_capacity(n);
        for r in 0..n {
            let key = self.key.iter().fold(0, |acc, &k| fold(acc, hashes[k][r]));
            bucket.push((key >> 48) as u32);
            row.push(hashes.iter().fold(0, |acc, h| fold(acc, h[r])));
        }
        Ok(BatchDigest {
            bucket,
            row,
            columns: hashes,
        })
    }

    /// The encoded keys of a batch (`Rows::row(i)` is row `i`'s key).
    pub fn keys(&self, cols: &[ArrayRef]) -> Result<Rows> {
        let key_cols: Vec<ArrayRef> = self.key.iter().map(|&k| cols[k].clone()).collect();
        self.key_rows
            .convert_columns(&key_cols)
            .map_err(|e| internal("cannot encode keys", e))
    }

    /// Encoded keys as `name=value, …` for the report.
    pub fn show_keys<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<String>> {
        let parser = self.key_rows.parser();
        let rows: Vec<_> = keys.into_iter().map(|k| parser.parse(k)).collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let arrays = self
            .key_rows
            .convert_rows(rows.iter().copied())
            .map_err(|e| internal("cannot decode keys", e))?;
        let options = FormatOptions::default().with_null("NULL");
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| internal("cannot format keys", e))?;
        Ok((0..rows.len())
            .map(|r| {
                self.key
                    .iter()
                    .zip(&formatters)
                    .zip(&arrays)
                    .map(|((&k, f), a)| format!("{}={}", self.names[k], show_value(a, f, r)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect())
    }
}

/// One key value as a user would write it: strings quoted, uuids dashed.
fn show_value(array: &ArrayRef, f: &ArrayFormatter<'_>, row: usize) -> String {
    let shown = f.value(row).to_string();
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            format!("'{}'", shown.replace('\'', "''"))
        }
        DataType::FixedSizeBinary(16) if shown.len() == 32 => format!(
            "{}-{}-{}-{}-{}",
            &shown[..8],
            &shown[8..12],
            &shown[12..16],
            &shown[16..20],
            &shown[20..]
        ),
        _ => shown,
    }
}

/// Row count and digest sum per bucket, for one side.
#[derive(Clone)]
pub struct Summary {
    pub count: Vec<u64>,
    pub sum: Vec<u64>,
    pub rows: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            count: vec![0; BUCKETS],
            sum: vec![0; BUCKETS],
            rows: 0,
        }
    }
}

impl Summary {
    pub fn add(&mut self, d: &BatchDigest) {
        for (&b, &h) in d.bucket.iter().zip(&d.row) {
            let b = b as usize;
            self.count[b] += 1;
            self.sum[b] = self.sum[b].wrapping_add(h);
        }
        self.rows += d.row.len() as u64;
    }
}

/// The smallest `limit` keys offered (keys encode in key order, so these are the first).
#[derive(Default)]
pub struct FirstKeys {
    limit: usize,
    keys: BTreeMap<Box<[u8]>, Vec<usize>>,
}

impl FirstKeys {
    pub fn new(limit: usize) -> Self {
        FirstKeys {
            limit,
            keys: BTreeMap::new(),
        }
    }

    /// Offer a key, with the columns that differ (empty for a missing or extra row).
    pub fn offer(&mut self, key: &[u8], columns: Vec<usize>) {
        if self.limit == 0 {
            return;
        }
        if self.keys.len() >= self.limit
            && self.keys.last_key_value().is_some_and(|(k, _)| **k <= *key)
        {
            return;
        }
        self.keys.insert(key.into(), columns);
        if self.keys.len() > self.limit {
            self.keys.pop_last();
        }
    }

    pub fn merge(&mut self, other: FirstKeys) {
        for (k, c) in other.keys {
            self.offer(&k, c);
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[usize])> {
        self.keys.iter().map(|(k, c)| (&**k, c.as_slice()))
    }
}

/// Which buckets differ, and how.
pub struct Plan {
    /// Per bucket: `None` when both sides agree.
    pub kind: Vec<Option<Drill>>,
    /// Rounds of row-by-row comparison needed (0 when no bucket has rows on both sides).
    pub rounds: u32,
    /// Rows missing from, or extra in, buckets only one side has rows in.
    pub one_sided_missing: u64,
    pub one_sided_extra: u64,
    pub differing: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Drill {
    /// Only the source has rows here: all missing from the lake.
    SourceOnly,
    /// Only the lake has rows here: all extra.
    LakeOnly,
    /// Both have rows: compared key by key in this round (rounds bound the memory).
    Round(u32),
}

impl Plan {
    /// Compare the summaries; buckets compared key by key are grouped into rounds holding at
    /// most `budget` source rows each.
    pub fn new(source: &Summary, lake: &Summary, budget: u64) -> Plan {
        let mut kind = vec![None; BUCKETS];
        let (mut rounds, mut in_round) = (0u32, 0u64);
        let (mut missing, mut extra, mut differing) = (0, 0, 0);
        for (b, kind) in kind.iter_mut().enumerate() {
            let (sc, lc) = (source.count[b], lake.count[b]);
            if sc == lc && source.sum[b] == lake.sum[b] {
                continue;
            }
            differing += 1;
            *kind = Some(if lc == 0 {
                missing += sc;
                Drill::SourceOnly
            } else if sc == 0 {
                extra += lc;
                Drill::LakeOnly
            } else {
                if rounds == 0 || (in_round > 0 && in_round + sc > budget) {
                    rounds += 1;
                    in_round = 0;
                }
                in_round += sc;
                Drill::Round(rounds - 1)
            });
        }
        Plan {
            kind,
            rounds,
            one_sided_missing: missing,
            one_sided_extra: extra,
            differing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use philotes_query::datafusion::arrow::array::{Int64Array, ListArray, StringArray};
    use philotes_query::datafusion::arrow::datatypes::Int64Type;

    fn distinct(keys: &Rows) -> usize {
        keys.iter()
            .map(|r| r.as_ref().to_vec())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    fn digester() -> Digester {
        Digester::new(
            vec!["id".into(), "note".into()],
            vec![DataType::Int64, DataType::Utf8],
            vec![0],
        )
        .unwrap()
    }

    fn batch(ids: &[i64], notes: &[Option<&str>]) -> Vec<ArrayRef> {
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(notes.to_vec())),
        ]
    }

    #[test]
    fn order_does_not_matter_and_every_change_shows() {
        let d = digester();
        let mut a = Summary::default();
        a.add(
            &d.digest(&batch(&[1, 2, 3], &[Some("x"), None, Some("")]))
                .unwrap(),
        );
        let mut b = Summary::default();
        b.add(&d.digest(&batch(&[3, 1], &[Some(""), Some("x")])).unwrap());
        b.add(&d.digest(&batch(&[2], &[None])).unwrap());
        assert_eq!(a.count, b.count);
        assert_eq!(a.sum, b.sum);
        // NULL and the empty string, a changed value, a swapped pair: all differ.
        for (ids, notes) in [
            (&[1, 2, 3][..], &[Some("x"), Some(""), Some("")][..]),
            (&[1, 2, 3], &[Some("y"), None, Some("")]),
            (&[1, 2, 3], &[None, Some("x"), Some("")]),
        ] {
            let mut c = Summary::default();
            c.add(&d.digest(&batch(ids, notes)).unwrap());
            assert_ne!(a.sum, c.sum, "{notes:?}");
            let plan = Plan::new(&a, &c, 1000);
            assert!(plan.differing >= 1);
        }
    }

    #[test]
    fn nested_nulls_are_not_empty_lists() {
        let ty = DataType::List(Arc::new(
            philotes_query::datafusion::arrow::datatypes::Field::new_list_field(
                DataType::Int64,
                true,
            ),
        ));
        let d = Digester::new(
            vec!["id".into(), "xs".into()],
            vec![DataType::Int64, ty],
            vec![0],
        )
        .unwrap();
        let lists = |v: Vec<Option<Vec<Option<i64>>>>| -> ArrayRef {
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(v))
        };
        let id: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let one = d
            .digest(&[id.clone(), lists(vec![Some(vec![None])])])
            .unwrap();
        let two = d.digest(&[id.clone(), lists(vec![Some(vec![])])]).unwrap();
        let three = d.digest(&[id, lists(vec![None])]).unwrap();
        assert_ne!(one.row[0], two.row[0]);
        assert_ne!(two.row[0], three.row[0]);
        assert_eq!(one.bucket[0], two.bucket[0], "the bucket follows the key");
    }

    #[test]
    fn plans_rounds_and_one_sided_buckets() {
        let d = digester();
        let ids: Vec<i64> = (0..5000).collect();
        let notes: Vec<Option<&str>> = ids.iter().map(|_| Some("n")).collect();
        let mut source = Summary::default();
        source.add(&d.digest(&batch(&ids, &notes)).unwrap());
        let mut lake = Summary::default();
        let mut changed = notes.clone();
        changed[10] = Some("m");
        changed[20] = Some("m");
        lake.add(&d.digest(&batch(&ids[1..], &changed[1..])).unwrap());
        let plan = Plan::new(&source, &lake, 1);
        assert_eq!(plan.differing, 3);
        assert_eq!(Plan::new(&source, &source, 1).rounds, 0);
        assert_eq!(plan.one_sided_missing, 1, "key 0 is alone in its bucket");
        assert_eq!(plan.rounds, 2, "a budget of one row per round");
    }

    #[test]
    fn keys_print_as_they_are_written() {
        use philotes_query::datafusion::arrow::array::FixedSizeBinaryArray;
        let d = Digester::new(
            vec!["name".into(), "id".into()],
            vec![DataType::Utf8, DataType::FixedSizeBinary(16)],
            vec![0, 1],
        )
        .unwrap();
        let uuid: Vec<u8> = (0u8..16).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["it's, a=b"])),
            Arc::new(FixedSizeBinaryArray::try_from_iter(std::iter::once(uuid)).unwrap()),
        ];
        let keys = d.keys(&cols).unwrap();
        let shown = d.show_keys([keys.row(0).as_ref()]).unwrap();
        assert_eq!(
            shown,
            vec!["name='it''s, a=b', id=00010203-0405-0607-0809-0a0b0c0d0e0f"]
        );
    }

    #[test]
    fn first_keys_are_the_smallest_and_print_with_names() {
        let d = digester();
        let cols = batch(&[30, 10, 20, 40], &[None, None, None, None]);
        let keys = d.keys(&cols).unwrap();
        assert_eq!(distinct(&keys), 4);
        let mut first = FirstKeys::new(2);
        for r in keys.iter() {
            first.offer(r.as_ref(), vec![]);
        }
        let shown = d.show_keys(first.entries().map(|(k, _)| k)).unwrap();
        assert_eq!(shown, vec!["id=10", "id=20"]);
    }
}
