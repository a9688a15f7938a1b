//! The worker pool on a real PostgreSQL: members seen through their connections, tables spread
//! without overlap, one lease per table, and a worker's tables taken over when it goes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::Cluster;
use philotes_buffer::Pool;
use philotes_source_postgres::SourceConn;

#[tokio::test]
async fn workers_share_tables_and_take_over_a_dead_ones() {
    let cluster = Cluster::start();
    let url = cluster.fresh_db("pool").await;
    let conn = SourceConn::parse(&url).unwrap();
    let names = ["worker-a", "worker-b", "worker-c"];
    let mut pools = Vec::new();
    for n in names {
        pools.push(Pool::join(&conn, "orders", n).await.unwrap());
    }
    // Another pipeline's workers are not members of this pool.
    let other = Pool::join(&conn, "invoices", "worker-a").await.unwrap();
    let members = pools[0].members().await.unwrap();
    assert_eq!(members, names.map(String::from).to_vec());
    assert_eq!(other.members().await.unwrap(), vec!["worker-a".to_string()]);
    // An id taken in the pool is refused.
    let err = Pool::join(&conn, "orders", "worker-b").await.err().unwrap();
    assert!(
        err.to_string().contains("already called `worker-b`"),
        "{err}"
    );
    assert!(Pool::join(&conn, "orders", "bad/id").await.is_err());

    // Every table has exactly one owner, and each worker gets a share.
    let tables: Vec<i64> = (1..=60).collect();
    let mut owned: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); 3];
    for &t in &tables {
        let owner = Pool::owner(&members, t).unwrap();
        let i = names.iter().position(|n| *n == owner).unwrap();
        owned[i].insert(t);
    }
    assert_eq!(owned.iter().map(BTreeSet::len).sum::<usize>(), 60);
    for (i, set) in owned.iter().enumerate() {
        assert!(set.len() >= 8, "{} owns only {:?}", names[i], set);
        for &t in set {
            assert!(pools[i].try_lease(t).await.unwrap());
        }
    }
    // A lease is held by one worker only; released, another can take it.
    let t = *owned[0].iter().next().unwrap();
    assert!(!pools[1].try_lease(t).await.unwrap());
    pools[0].release(t).await.unwrap();
    assert!(pools[1].try_lease(t).await.unwrap());
    pools[1].release(t).await.unwrap();
    assert!(pools[0].try_lease(t).await.unwrap());

    // worker-c dies (its connection goes): it leaves the pool, its tables move to the others
    // (and only its tables), and their leases are free.
    let dead = pools.pop().unwrap();
    drop(dead);
    let mut members = Vec::new();
    for _ in 0..100 {
        members = pools[0].members().await.unwrap();
        if members.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        members,
        vec!["worker-a".to_string(), "worker-b".to_string()]
    );
    for &t in &tables {
        let owner = Pool::owner(&members, t).unwrap();
        let i = names.iter().position(|n| *n == owner).unwrap();
        if owned[2].contains(&t) {
            assert!(
                pools[i].try_lease(t).await.unwrap(),
                "table {t}'s lease is not free"
            );
        } else {
            assert!(
                owned[i].contains(&t),
                "table {t} moved though its worker lives"
            );
        }
    }
    assert_eq!(Pool::owner(&[], 1), None);
}
