//! Maintenance against a real embedded catalog (SQLite) and a local warehouse, with changelog
//! tables written by the sink exactly as the pipeline writes them. The end-to-end tests
//! (`tests/e2e/test_maintenance.py`) add PostgreSQL, `kill -9` and an independent reader.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_array::{Array, Int32Array, Int64Array, StringArray};
use futures::TryStreamExt;
use iceberg::table::Table;
use philotes_config::{Layer, MaintenanceSettings, Settings};
use philotes_core::{Cell, ColumnDesc, ColumnType, Lsn, Op, TableName, TableProgress, TableSink};
use philotes_maintenance::{MAINTENANCE_KEY, maintain_table};
use philotes_sink_iceberg::table::{WATERMARK_KEY, read_progress};
use philotes_sink_iceberg::{ChangelogTable, Lake, open_catalog, table_ident};

type Res = Result<(), Box<dyn std::error::Error>>;

fn columns() -> Vec<ColumnDesc> {
    let col = |name: &str, oid, ty, key, attnum| ColumnDesc {
        name: name.to_string(),
        type_oid: oid,
        type_modifier: -1,
        is_key: key,
        ty,
        attnum: Some(attnum),
        filled_on_add: false,
    };
    vec![
        col("id", 23, ColumnType::Int32, true, 1),
        col("note", 25, ColumnType::Text, false, 2),
    ]
}

async fn lake(dir: &std::path::Path) -> Result<(Settings, Lake), Box<dyn std::error::Error>> {
    let settings = Layer {
        data_dir: Some(dir.to_path_buf()),
        ..Layer::default()
    }
    .resolve()?;
    let lake = open_catalog(&settings).await?;
    Ok((settings, lake))
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("philotes-maint-{name}-{}", uuid::Uuid::new_v4()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Commit `n` transactions of `rows` rows each, from `first` on; LSNs are `10 * txn`.
async fn commit_txns(t: &mut ChangelogTable, first: u64, n: u64, rows: u64) -> Res {
    commit_every(t, first, n, rows, Duration::ZERO).await
}

/// The same, one commit every `flush` (as `flush_interval` paces the pipeline's commits).
async fn commit_every(
    t: &mut ChangelogTable,
    first: u64,
    n: u64,
    rows: u64,
    flush: Duration,
) -> Res {
    for txn in first..first + n {
        for seq in 0..rows {
            let id = (txn * rows + seq).to_string();
            let note = format!("row {txn}/{seq}");
            t.append(
                Op::Insert,
                &[Cell::Text(id.into()), Cell::Text(note.into())],
                Lsn(txn * 10),
                seq as i64,
                0,
            )
            .map_err(|e| e.message)?;
        }
        t.commit(TableProgress {
            watermark: Some(Lsn(txn * 10 + 1)),
            snapshot_lsn: Some(Lsn(1)),
        })
        .await?;
        tokio::time::sleep(flush).await;
    }
    Ok(())
}

/// Every row of the table's current snapshot as (lsn, seq) → (id, note).
async fn rows(
    table: &Table,
) -> Result<BTreeMap<(i64, i64), (i32, String)>, Box<dyn std::error::Error>> {
    let scan = table.scan().select_all().build()?;
    let batches: Vec<_> = scan.to_arrow().await?.try_collect().await?;
    let mut out = BTreeMap::new();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).cloned().ok_or(format!("no column {n}"));
        let ids = col("id")?;
        let ids = ids.as_any().downcast_ref::<Int32Array>().ok_or("id")?;
        let notes = col("note")?;
        let notes = notes.as_any().downcast_ref::<StringArray>().ok_or("note")?;
        let lsns = col("_cdc_lsn")?;
        let lsns = lsns.as_any().downcast_ref::<Int64Array>().ok_or("lsn")?;
        let seqs = col("_cdc_seq")?;
        let seqs = seqs.as_any().downcast_ref::<Int64Array>().ok_or("seq")?;
        for i in 0..b.num_rows() {
            let prev = out.insert(
                (lsns.value(i), seqs.value(i)),
                (ids.value(i), notes.value(i).to_string()),
            );
            assert!(
                prev.is_none(),
                "a row is there twice: {:?}",
                (lsns.value(i), seqs.value(i))
            );
        }
    }
    Ok(out)
}

fn files_under(dir: &std::path::Path, ext: &str) -> usize {
    fn walk(d: &std::path::Path, ext: &str, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, ext, n);
                } else if p.to_string_lossy().ends_with(ext) {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, ext, &mut n);
    n
}

fn table_dir(warehouse: &str) -> std::path::PathBuf {
    std::path::Path::new(warehouse).join("public/t__changelog")
}

fn quick() -> MaintenanceSettings {
    MaintenanceSettings {
        enabled: true,
        interval: Duration::from_secs(1),
        target_file_size: 128 << 20,
        snapshot_max_age: Duration::ZERO,
        snapshot_keep_min: 2,
        orphan_min_age: Duration::ZERO,
        changelog_retention: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_compacts_expires_and_cleans_without_changing_a_row() -> Res {
    let dir = tmpdir("pass");
    let (settings, lake) = lake(&dir).await?;
    let source = TableName::new("public", "t");
    let ident = table_ident(&source, None);
    let mut t = ChangelogTable::open(&lake, ident.clone(), &source, &columns(), 1000).await?;
    commit_txns(&mut t, 1, 40, 5).await?;
    let before_table = lake.catalog.load_table(&ident).await?;
    let before = rows(&before_table).await?;
    assert_eq!(before.len(), 200);
    assert_eq!(before_table.metadata().snapshots().len(), 40);
    // An interrupted write: a Parquet file nothing references.
    let data_dir = settings.warehouse.trim_start_matches("file://").to_string();
    let orphan =
        std::path::Path::new(&data_dir).join("public/t__changelog/data/orphan-of-a-crash.parquet");
    std::fs::create_dir_all(orphan.parent().ok_or("no parent")?)?;
    std::fs::write(&orphan, b"not committed")?;

    let report = maintain_table(&lake, &ident, &quick()).await?;
    assert_eq!(report.rewrite.files_in, 40, "{report:?}");
    assert_eq!(report.rewrite.files_out, 1, "{report:?}");
    assert_eq!(report.rewrite.manifests_after, 1, "{report:?}");
    // Kept: the replace snapshot and the one before it (a commit under way may read it).
    assert_eq!(report.snapshots_after, 2, "{report:?}");
    assert_eq!(report.expiry.snapshots_expired, 39, "{report:?}");
    assert_eq!(report.expiry.data_files_deleted, 0, "{report:?}");
    assert!(report.orphans.orphans_deleted >= 1, "{report:?}");
    assert!(!orphan.exists(), "the orphan is still there");

    let after_table = lake.catalog.load_table(&ident).await?;
    assert_eq!(
        rows(&after_table).await?,
        before,
        "maintenance changed the rows"
    );
    let current = after_table
        .metadata()
        .current_snapshot()
        .ok_or("no snapshot")?;
    let props = &current.summary().additional_properties;
    assert_eq!(
        props.get(MAINTENANCE_KEY).map(String::as_str),
        Some("compaction")
    );
    assert_eq!(
        props.get(WATERMARK_KEY).map(String::as_str),
        Some(Lsn(401).to_string().as_str())
    );
    assert_eq!(read_progress(&after_table)?.watermark, Some(Lsn(401)));
    assert!(files_under(&table_dir(&data_dir).join("metadata"), ".metadata.json") <= 11);

    // The sink goes on committing on top of the maintenance snapshot.
    commit_txns(&mut t, 41, 2, 5).await?;
    let t2 = lake.catalog.load_table(&ident).await?;
    assert_eq!(rows(&t2).await?.len(), 210);
    assert_eq!(read_progress(&t2)?.watermark, Some(Lsn(421)));
    // The next pass has nothing to compact; it expires the snapshots from before the
    // compaction and deletes the 40 files only they reached.
    let r2 = maintain_table(&lake, &ident, &quick()).await?;
    assert_eq!(r2.rewrite.files_in, 0, "{r2:?}");
    assert_eq!(r2.expiry.snapshots_expired, 2, "{r2:?}");
    assert_eq!(r2.expiry.data_files_deleted, 40, "{r2:?}");
    let t3 = lake.catalog.load_table(&ident).await?;
    let mut want = before.clone();
    want.extend(rows(&t2).await?);
    assert_eq!(rows(&t3).await?, want);
    // What is left on disk is what the table references.
    let dir_t = table_dir(&data_dir);
    assert_eq!(
        files_under(&dir_t.join("data"), ".parquet"),
        3,
        "the compacted file and two new ones"
    );
    assert_eq!(
        files_under(&dir_t.join("metadata"), ".avro"),
        2 + 3,
        "two manifest lists; the rewrite's manifest and the two new ones"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_racing_streaming_commits_loses_nothing() -> Res {
    let dir = tmpdir("race");
    let (_settings, lake) = lake(&dir).await?;
    let source = TableName::new("public", "r");
    let ident = table_ident(&source, None);
    let mut t = ChangelogTable::open(&lake, ident.clone(), &source, &columns(), 1000).await?;
    commit_txns(&mut t, 1, 10, 3).await?;
    // Orphan cleanup must not see the files the sink is writing as orphans: that takes age.
    let opts = MaintenanceSettings {
        orphan_min_age: Duration::from_secs(3600),
        ..quick()
    };
    // Maintenance passes back to back on their own task while the sink commits.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maint = {
        let (lake, ident, done, opts) = (lake.clone(), ident.clone(), done.clone(), opts.clone());
        tokio::spawn(async move {
            let (mut passes, mut compacted) = (0usize, 0usize);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let r = maintain_table(&lake, &ident, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                compacted += r.rewrite.files_in;
                passes += 1;
            }
            Ok::<_, String>((passes, compacted))
        })
    };
    commit_every(&mut t, 11, 150, 3, Duration::from_millis(20)).await?;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (passes, mut compacted) = maint.await??;
    let r = maintain_table(&lake, &ident, &quick()).await?;
    compacted += r.rewrite.files_in;
    assert!(
        passes >= 2 && compacted > 0,
        "{passes} passes compacted {compacted} files"
    );
    eprintln!("{passes} passes compacted {compacted} files while the sink committed");
    let table = lake.catalog.load_table(&ident).await?;
    let got = rows(&table).await?;
    assert_eq!(got.len(), 160 * 3, "rows lost or doubled");
    for txn in 1..=160u64 {
        for seq in 0..3 {
            let row = got
                .get(&((txn * 10) as i64, seq))
                .ok_or(format!("missing {txn}/{seq}"))?;
            assert_eq!(row.0 as u64, txn * 3 + seq as u64);
        }
    }
    assert_eq!(read_progress(&table)?.watermark, Some(Lsn(1601)));
    assert!(
        table.metadata().snapshots().len() <= 3,
        "{}",
        table.metadata().snapshots().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
