//! Migrations against a real PostgreSQL (Debian's, started here with initdb): fresh databases,
//! processes starting at once, a newer or edited schema, a role without privileges.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is the test's failure

mod common;

use common::Cluster;
use philotes_core::{ErrorKind, Secret};

/// A fresh database migrated, then changed by `sql`: the error of opening it again.
async fn tampered(cluster: &Cluster, db: &str, sql: &str) -> philotes_core::Error {
    let url = cluster.fresh_db(db).await;
    let opened = philotes_buffer::ControlDb::open(Some(&url), "")
        .await
        .unwrap();
    opened.client.batch_execute(sql).await.unwrap();
    philotes_buffer::ControlDb::open(Some(&url), "")
        .await
        .err()
        .unwrap()
}

async fn versions(url: &Secret) -> Vec<i32> {
    let db = philotes_buffer::ControlDb::open(Some(url), "")
        .await
        .unwrap();
    db.client
        .query(
            "SELECT version FROM philotes.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn migrations() {
    let cluster = Cluster::start();
    let newest = philotes_buffer::MIGRATIONS.last().unwrap().version;

    // A fresh database gets every migration once; a second start applies nothing.
    let url = cluster.fresh_db("fresh").await;
    let db = philotes_buffer::ControlDb::open(Some(&url), "")
        .await
        .unwrap();
    assert_eq!(db.migrated.version, newest);
    assert_eq!(db.migrated.applied, (1..=newest).collect::<Vec<_>>());
    for table in ["pipelines", "tables", "changes", "dead_letters"] {
        let n: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'philotes' AND table_name = $1",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "philotes.{table}");
    }
    let again = philotes_buffer::ControlDb::open(Some(&url), "")
        .await
        .unwrap();
    assert_eq!(again.migrated.applied, Vec::<i32>::new());
    assert_eq!(again.migrated.version, newest);

    // Eight processes starting at once on a fresh database: all succeed, each migration is
    // applied exactly once.
    let url = cluster.fresh_db("racing").await;
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                philotes_buffer::ControlDb::open(Some(&url), "")
                    .await
                    .map(|d| d.migrated)
            })
        })
        .collect();
    let mut applied = Vec::new();
    for o in opens {
        let m = o.await.unwrap().unwrap();
        assert_eq!(m.version, newest);
        applied.extend(m.applied);
    }
    applied.sort();
    assert_eq!(applied, (1..=newest).collect::<Vec<_>>());
    assert_eq!(versions(&url).await, (1..=newest).collect::<Vec<_>>());

    // Migrated by a newer release: refused, nothing changed.
    let err = tampered(
        &cluster,
        "newer",
        &format!(
            "INSERT INTO philotes.schema_migrations (version, name, checksum) VALUES ({}, 'future', 'x')",
            newest + 1
        ),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("newer than this Philotes knows"),
        "{err}"
    );

    // A migration whose text differs from what was applied: refused.
    let err = tampered(
        &cluster,
        "edited",
        "UPDATE philotes.schema_migrations SET checksum = 'edited' WHERE version = 1",
    )
    .await;
    assert!(
        err.to_string().contains("differs from this Philotes' copy"),
        "{err}"
    );

    // A role that may not create the schema: the error says how to grant it, and nothing is
    // created.
    let admin = cluster.admin().await;
    for sql in [
        "CREATE DATABASE locked",
        "CREATE ROLE plain LOGIN",
        "REVOKE CREATE ON DATABASE locked FROM PUBLIC",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }
    let err = philotes_buffer::ControlDb::open(Some(&cluster.url("plain", "locked")), "")
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("CREATE SCHEMA philotes AUTHORIZATION"),
        "{text}"
    );
    // Given its own schema by an administrator, the same role needs nothing more.
    let locked = cluster.admin_of("locked").await;
    locked
        .batch_execute("CREATE SCHEMA philotes AUTHORIZATION plain")
        .await
        .unwrap();
    let db = philotes_buffer::ControlDb::open(Some(&cluster.url("plain", "locked")), "")
        .await
        .unwrap();
    assert_eq!(db.migrated.version, newest);

    // Nothing listens there: a connection error naming the control database.
    let err = philotes_buffer::ControlDb::open(
        Some(&Secret::new(
            "postgres://postgres@127.0.0.1:1/x?sslmode=disable".to_string(),
        )),
        "",
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("control database"), "{err}");
    assert_eq!(
        philotes_buffer::ControlDb::open(None, "for ingest")
            .await
            .err()
            .unwrap()
            .kind(),
        ErrorKind::Config
    );
}
