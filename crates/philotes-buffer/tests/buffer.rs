//! Buffered changes in a real PostgreSQL: a batch and its position in one transaction, source
//! order on the way out, removal once committed, and a second source refused. Prints the rate
//! of binary `COPY` into the buffer (no timed assertion: the benchmark compares it with
//! `pg_recvlogical`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::Cluster;
use philotes_buffer::{BufferedChange, ControlDb, TableBatch, decode_row, encode_row};
use philotes_core::{Cell, ErrorKind, Lsn};

fn change(lsn: u64, seq: i32, id: i64) -> BufferedChange {
    let row = vec![
        Cell::Text(Bytes::from(id.to_string())),
        Cell::Text(Bytes::from_static(b"2026-12-02 07:00:00+00")),
        Cell::Text(Bytes::from(format!("customer {id}"))),
        Cell::Null,
        Cell::Text(Bytes::from_static(b"12.50")),
    ];
    let mut data = Vec::new();
    encode_row(&row, &mut data).unwrap();
    BufferedChange {
        lsn: Lsn(lsn),
        seq,
        ts_us: 1_764_658_800_000_000,
        op: b'I',
        data,
    }
}

#[tokio::test]
async fn buffer_round_trip_order_removal_and_ownership() {
    let cluster = Cluster::start();
    let url = cluster.fresh_db("buffer").await;
    let mut db = ControlDb::open(Some(&url), "").await.unwrap();
    db.claim_pipeline("orders", "7000000000000000001/shop")
        .await
        .unwrap();
    // The same source again is fine; another source is refused, naming both.
    db.claim_pipeline("orders", "7000000000000000001/shop")
        .await
        .unwrap();
    let err = db
        .claim_pipeline("orders", "7999999999999999999/other")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("belongs to source 7000000000000000001/shop"),
        "{err}"
    );

    let a = db.table_id("orders", "public.a").await.unwrap();
    let b = db.table_id("orders", "public.b").await.unwrap();
    assert_eq!(db.table_id("orders", "public.a").await.unwrap(), a);
    assert_ne!(a, b);
    assert_eq!(db.buffered_lsn("orders").await.unwrap(), Lsn(0));

    // Written out of order across tables and transactions; read back per table in source order.
    let batch = vec![
        (b, change(300, 0, 30)),
        (a, change(200, 1, 21)),
        (a, change(200, 0, 20)),
        (a, change(100, 0, 10)),
    ];
    assert_eq!(db.append("orders", &batch, Lsn(350)).await.unwrap(), 4);
    assert_eq!(db.buffered_lsn("orders").await.unwrap(), Lsn(350));
    let got = db.read(a, Lsn(0), 100).await.unwrap();
    let keys: Vec<(u64, i32)> = got.iter().map(|c| (c.lsn.0, c.seq)).collect();
    assert_eq!(keys, vec![(100, 0), (200, 0), (200, 1)]);
    let row = decode_row(&got[0].data).unwrap();
    assert_eq!(row[2], Cell::Text(Bytes::from_static(b"customer 10")));
    assert_eq!(row[3], Cell::Null);
    assert_eq!(db.read(a, Lsn(150), 100).await.unwrap().len(), 2);
    assert_eq!(db.depth("orders").await.unwrap(), 4);

    // A change buffered twice (a replay the caller did not skip) is refused whole: the batch
    // and its position are one transaction, so nothing of it lands.
    let again = vec![(b, change(400, 0, 40)), (a, change(200, 0, 20))];
    assert!(db.append("orders", &again, Lsn(450)).await.is_err());
    assert_eq!(db.buffered_lsn("orders").await.unwrap(), Lsn(350));
    assert_eq!(db.depth("orders").await.unwrap(), 4);
    // The position never moves back.
    db.append("orders", &[], Lsn(120)).await.unwrap();
    assert_eq!(db.buffered_lsn("orders").await.unwrap(), Lsn(350));

    assert_eq!(db.remove_below(a, Lsn(200)).await.unwrap(), 1);
    assert_eq!(db.depth("orders").await.unwrap(), 3);

    // The rate of buffering narrow changes in batches of 10,000 (printed, not asserted).
    let n = 200_000u64;
    let started = std::time::Instant::now();
    for chunk in 0..(n / 10_000) {
        let batch: Vec<(i64, BufferedChange)> = (0..10_000u64)
            .map(|i| {
                let k = chunk * 10_000 + i;
                (a, change(1_000 + k / 100, (k % 100) as i32, k as i64))
            })
            .collect();
        db.append("orders", &batch, Lsn(1_000 + (chunk + 1) * 100))
            .await
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "buffered {n} changes in {secs:.2} s: {:.0} changes/s (binary COPY, batches of 10,000, {} build)",
        n as f64 / secs,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert_eq!(db.depth("orders").await.unwrap(), 3 + n);

    // The depth is the tables' counters, kept by every write and removal: a table's rewrite of
    // an interrupted transaction counts once, a copy drops what it holds, a commit what the
    // lake holds. A full count agrees.
    let rewritten = [change(500, 0, 50), change(500, 1, 51)];
    db.write_table(TableBatch {
        pipeline: "orders",
        table: b,
        changes: &rewritten,
        clear_from: None,
        upto: None,
    })
    .await
    .unwrap();
    db.write_table(TableBatch {
        pipeline: "orders",
        table: b,
        changes: &rewritten,
        clear_from: Some(Lsn(500)),
        upto: Some(Lsn(600)),
    })
    .await
    .unwrap();
    assert_eq!(db.depth("orders").await.unwrap(), 3 + n + 2);
    db.copied(b, Lsn(400)).await.unwrap();
    assert_eq!(db.depth("orders").await.unwrap(), 2 + n + 2);
    assert_eq!(db.committed(a, Lsn(1_000 + n / 100)).await.unwrap(), 2 + n);
    assert_eq!(db.depth("orders").await.unwrap(), 2);
    assert_eq!(db.check_depth("orders").await.unwrap(), None);

    // Rows removed behind the counters' back (an older release, a hand edit): the check counts
    // the rows and sets the counters to them.
    db.client
        .execute("DELETE FROM philotes.changes WHERE table_id = $1", &[&b])
        .await
        .unwrap();
    assert_eq!(db.depth("orders").await.unwrap(), 2);
    assert_eq!(db.check_depth("orders").await.unwrap(), Some((2, 0)));
    assert_eq!(db.depth("orders").await.unwrap(), 0);
    assert_eq!(db.check_depth("orders").await.unwrap(), None);
}
