//! The applier's rules on scripted changes, with an in-memory table sink.
//! (The end-to-end tests run the same code against PostgreSQL and Iceberg.)

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use philotes_core::{
    AsCell, Cell, Change, ChangeSource, ColumnDesc, ColumnType, ConvertError, Lsn, Next, Op,
    RelationDesc, ReplicaIdentity, Result, RowBatcher, TableName, TableProgress, TableSink,
};
use philotes_source_postgres::SourceTable;

use super::*;

#[derive(Default)]
struct MemTable {
    committed: Vec<(Op, Vec<Cell>, Lsn, i64)>,
    pending: Vec<(Op, Vec<Cell>, Lsn, i64)>,
    progress: TableProgress,
    reject: Option<&'static str>,
    /// Shapes adopted, as column counts; `refuse_shapes` makes adopting fail.
    adopted: Vec<usize>,
    refuse_shapes: bool,
}

type MemRow = (Op, Vec<Cell>, Lsn, i64);

#[derive(Default)]
struct MemBatcher(Vec<MemRow>);

impl RowBatcher for MemBatcher {
    type Batch = Vec<MemRow>;
    fn append<C: AsCell>(
        &mut self,
        op: Op,
        row: &[C],
        lsn: Lsn,
        seq: i64,
        _ts: i64,
    ) -> std::result::Result<(), ConvertError> {
        let row = row.iter().map(|c| c.as_cell().to_owned_cell()).collect();
        self.0.push((op, row, lsn, seq));
        Ok(())
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn finish(&mut self) -> Result<Self::Batch> {
        Ok(std::mem::take(&mut self.0))
    }
}

impl TableSink for MemTable {
    async fn adopt(&mut self, columns: &[ColumnDesc], _lsn: Lsn) -> Result<bool> {
        if self.refuse_shapes {
            return Err(philotes_core::Error::new(
                ErrorKind::SchemaChange,
                "this sink cannot follow",
            ));
        }
        self.adopted.push(columns.len());
        Ok(false)
    }
    type Batcher = MemBatcher;
    fn batcher(&self) -> MemBatcher {
        MemBatcher::default()
    }
    async fn write_batch(&mut self, mut batch: Vec<MemRow>) -> Result<()> {
        self.pending.append(&mut batch);
        Ok(())
    }
    fn append(
        &mut self,
        op: Op,
        row: &[Cell],
        lsn: Lsn,
        seq: i64,
        _ts: i64,
    ) -> std::result::Result<(), ConvertError> {
        if let Some(bad) = self.reject.filter(|bad| row.contains(&text(bad))) {
            return Err(ConvertError {
                column: "v".into(),
                message: format!("cannot take {bad}"),
            });
        }
        self.pending.push((op, row.to_vec(), lsn, seq));
        Ok(())
    }
    async fn write_if_full(&mut self) -> Result<()> {
        Ok(())
    }
    async fn commit(&mut self, progress: TableProgress) -> Result<()> {
        self.committed.append(&mut self.pending);
        self.progress = progress;
        Ok(())
    }
    fn discard(&mut self) {
        self.pending.clear();
    }
    fn pending(&self) -> u64 {
        self.pending.len() as u64
    }
    fn progress(&self) -> TableProgress {
        self.progress
    }
}

#[derive(Default)]
struct Script {
    changes: VecDeque<Change>,
    confirmed: Lsn,
}

impl ChangeSource for Script {
    async fn next(&mut self, _idle: std::time::Duration) -> Result<Next> {
        Ok(self.changes.pop_front().map_or(Next::End, Next::Change))
    }
    fn confirm(&mut self, lsn: Lsn) {
        assert!(lsn >= self.confirmed, "confirmed position went backwards");
        self.confirmed = lsn;
    }
    fn confirmed(&self) -> Lsn {
        self.confirmed
    }
    async fn finish(&mut self) {}
}

fn text(s: &str) -> Cell {
    Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn columns() -> Vec<ColumnDesc> {
    vec![
        ColumnDesc {
            name: "id".into(),
            type_oid: 23,
            type_modifier: -1,
            is_key: true,
            ty: ColumnType::Int32,
            attnum: Some(1),
            filled_on_add: false,
        },
        ColumnDesc {
            name: "v".into(),
            type_oid: 25,
            type_modifier: -1,
            is_key: false,
            ty: ColumnType::Text,
            attnum: Some(2),
            filled_on_add: false,
        },
    ]
}

fn table(oid: u32, watermark: Option<u64>) -> TableState<MemTable> {
    let progress = TableProgress {
        watermark: watermark.map(Lsn),
        snapshot_lsn: watermark.map(Lsn),
    };
    TableState {
        source: SourceTable {
            oid,
            name: TableName::new("public", format!("t{oid}")),
            replica_identity: ReplicaIdentity::Default,
            has_primary_key: true,
            partitioned: false,
            columns: columns(),
        },
        lake: Some(MemTable {
            progress,
            ..MemTable::default()
        }),
        stopped: None,
        progress,
        key_idx: vec![0],
        recopy: false,
        leaving: None,
        metrics: philotes_telemetry::TableMetrics::new(&format!("public.t{oid}")),
    }
}

fn relation(oid: u32, cols: Vec<ColumnDesc>) -> Change {
    Change::Relation(Arc::new(RelationDesc {
        oid,
        table: TableName::new("public", format!("t{oid}")),
        replica_identity: ReplicaIdentity::Default,
        columns: cols,
    }))
}

fn txn(commit: u64, body: Vec<Change>) -> Vec<Change> {
    let mut v = vec![Change::Begin {
        commit_lsn: Lsn(commit),
        commit_ts_us: 0,
        xid: 1,
    }];
    v.extend(body);
    v.push(Change::Commit {
        commit_lsn: Lsn(commit),
        end_lsn: Lsn(commit + 8),
        commit_ts_us: 0,
    });
    v
}

fn applier(tables: Vec<TableState<MemTable>>) -> (Applier<MemTable>, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let map: HashMap<u32, TableState<MemTable>> =
        tables.into_iter().map(|t| (t.source.oid, t)).collect();
    (Applier::new(map, DeadLetters::new(&dir.0)), dir)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!(
                "philotes-apply-test-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn run(applier: &mut Applier<MemTable>, changes: Vec<Change>) -> Script {
    let mut script = Script {
        changes: changes.into(),
        confirmed: Lsn(0),
    };
    let policy = FlushPolicy {
        interval: std::time::Duration::from_secs(3600),
        rows: 1_000_000,
        publication_poll: std::time::Duration::from_secs(3600),
    };
    let stop = AtomicBool::new(false);
    let ended = stream_changes(applier, &mut script, policy, None, &stop)
        .await
        .unwrap();
    assert_eq!(ended, Ended::Done);
    script
}

fn committed(a: &Applier<MemTable>, oid: u32) -> Vec<(Op, Vec<Cell>, Lsn, i64)> {
    a.tables[&oid].lake.as_ref().unwrap().committed.clone()
}

#[tokio::test]
async fn key_change_is_delete_then_update_and_toast_comes_from_the_old_row() {
    let (mut a, _d) = applier(vec![table(1, Some(100))]);
    let mut changes = vec![relation(1, columns())];
    changes.extend(txn(
        200,
        vec![
            Change::Update {
                rel: 1,
                old: Some(vec![text("1"), Cell::Null]),
                new: vec![text("2"), text("x")],
            },
            Change::Update {
                rel: 1,
                old: Some(vec![text("2"), text("big")]),
                new: vec![text("2"), Cell::Unchanged],
            },
            Change::Update {
                rel: 1,
                old: None,
                new: vec![text("2"), Cell::Unchanged],
            },
        ],
    ));
    let script = run(&mut a, changes).await;
    let rows = committed(&a, 1);
    let ops: Vec<(Op, i64)> = rows.iter().map(|r| (r.0, r.3)).collect();
    assert_eq!(
        ops,
        vec![
            (Op::Delete, 0),
            (Op::Update, 1),
            (Op::Update, 2),
            (Op::Update, 3)
        ]
    );
    assert_eq!(rows[0].1, vec![text("1"), Cell::Null]);
    assert_eq!(
        rows[2].1,
        vec![text("2"), text("big")],
        "TOAST value taken from the old row"
    );
    assert_eq!(
        rows[3].1,
        vec![text("2"), Cell::Unchanged],
        "without an old row it stays marked"
    );
    assert_eq!(script.confirmed, Lsn(208));
    assert_eq!(a.tables[&1].progress.watermark, Some(Lsn(208)));
}

#[tokio::test]
async fn transactions_below_a_tables_watermark_are_skipped_for_that_table_only() {
    // t1 was copied at 300 (a later snapshot), t2 at 100.
    let (mut a, _d) = applier(vec![table(1, Some(300)), table(2, Some(100))]);
    let mut changes = vec![relation(1, columns()), relation(2, columns())];
    changes.extend(txn(
        200,
        vec![
            Change::Insert {
                rel: 1,
                new: vec![text("1"), text("old")],
            },
            Change::Insert {
                rel: 2,
                new: vec![text("1"), text("old")],
            },
        ],
    ));
    changes.extend(txn(
        300,
        vec![Change::Insert {
            rel: 1,
            new: vec![text("2"), text("new")],
        }],
    ));
    run(&mut a, changes).await;
    let t1: Vec<Lsn> = committed(&a, 1).iter().map(|r| r.2).collect();
    let t2: Vec<Lsn> = committed(&a, 2).iter().map(|r| r.2).collect();
    assert_eq!(
        t1,
        vec![Lsn(300)],
        "the copy at 300 already holds the transaction at 200"
    );
    assert_eq!(t2, vec![Lsn(200)]);
}

#[tokio::test]
async fn a_stopped_table_discards_its_partial_rows_and_holds_the_slot() {
    let (mut a, _d) = applier(vec![table(1, Some(100)), table(2, Some(100))]);
    if let Some(l) = a.tables.get_mut(&1).and_then(|t| t.lake.as_mut()) {
        l.reject = Some("bad");
    }
    let mut changes = vec![relation(1, columns()), relation(2, columns())];
    changes.extend(txn(
        200,
        vec![
            Change::Insert {
                rel: 1,
                new: vec![text("1"), text("fine")],
            },
            Change::Insert {
                rel: 1,
                new: vec![text("2"), text("bad")],
            },
            Change::Insert {
                rel: 2,
                new: vec![text("1"), text("fine")],
            },
        ],
    ));
    changes.extend(txn(
        300,
        vec![Change::Insert {
            rel: 1,
            new: vec![text("3"), text("fine")],
        }],
    ));
    let script = run(&mut a, changes).await;
    assert!(
        committed(&a, 1).is_empty(),
        "no half transaction of the stopped table"
    );
    assert_eq!(committed(&a, 2).len(), 1);
    assert!(
        a.tables[&1]
            .stopped
            .as_ref()
            .is_some_and(|e| e.to_string().contains("column: v"))
    );
    assert_eq!(a.cap(), Some(Lsn(100)));
    assert_eq!(
        script.confirmed,
        Lsn(100),
        "the slot keeps the stopped table's changes"
    );
    let dead = std::fs::read_to_string(a.dead_letters.path()).unwrap();
    assert!(dead.contains("\"bad\"") && dead.contains("public.t1"));
}

/// Two transactions around a relation message that adds a column.
fn around_a_new_column() -> Vec<Change> {
    let mut wider = columns();
    wider.push(ColumnDesc {
        name: "added".into(),
        type_oid: 23,
        type_modifier: -1,
        is_key: false,
        ty: ColumnType::Int32,
        attnum: Some(3),
        filled_on_add: false,
    });
    let mut changes = vec![relation(1, columns())];
    changes.extend(txn(
        200,
        vec![Change::Insert {
            rel: 1,
            new: vec![text("1"), text("a")],
        }],
    ));
    changes.push(relation(1, wider));
    changes.extend(txn(
        300,
        vec![Change::Insert {
            rel: 1,
            new: vec![text("2"), text("b"), text("3")],
        }],
    ));
    changes
}

#[tokio::test]
async fn a_changed_relation_is_adopted_in_order_with_the_rows() {
    let (mut a, _d) = applier(vec![table(1, Some(100))]);
    let script = run(&mut a, around_a_new_column()).await;
    assert!(a.tables[&1].stopped.is_none());
    // The first relation matches the known columns; only the wider one is adopted.
    assert_eq!(a.tables[&1].lake.as_ref().unwrap().adopted, vec![3]);
    let rows = committed(&a, 1);
    assert_eq!(
        rows.iter().map(|r| r.1.len()).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(a.tables[&1].source.columns.len(), 3);
    assert!(script.confirmed > Lsn(300));
}

#[tokio::test]
async fn a_relation_the_sink_cannot_follow_stops_its_table() {
    let (mut a, _d) = applier(vec![table(1, Some(100))]);
    if let Some(lake) = a.tables.get_mut(&1).and_then(|t| t.lake.as_mut()) {
        lake.refuse_shapes = true;
    }
    let script = run(&mut a, around_a_new_column()).await;
    assert!(
        a.tables[&1]
            .stopped
            .as_ref()
            .is_some_and(|e| e.kind() == ErrorKind::SchemaChange)
    );
    // The stop happened before the flush: the rows of 200 were discarded with it.
    assert!(committed(&a, 1).is_empty());
    assert_eq!(script.confirmed, Lsn(100));
}

#[tokio::test]
async fn truncate_writes_a_marker_row() {
    let (mut a, _d) = applier(vec![table(1, Some(100))]);
    let mut changes = vec![relation(1, columns())];
    changes.extend(txn(200, vec![Change::Truncate { rels: vec![1, 99] }]));
    run(&mut a, changes).await;
    let rows = committed(&a, 1);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0, rows[0].1.clone()),
        (Op::Truncate, vec![Cell::Null, Cell::Null])
    );
}
