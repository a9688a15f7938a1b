use super::*;

#[test]
fn flag_beats_file_beats_default() {
    let file = Layer::from_toml(
        r#"
        slot = "from_file"
        publication = "pub_file"
        flush_interval = "250ms"
        "#,
    )
    .unwrap();
    let flags = Layer {
        slot: Some("from_flag".into()),
        ..Layer::default()
    };
    let s = flags.over(file).resolve().unwrap();
    assert_eq!(s.slot, "from_flag");
    assert_eq!(s.publication, "pub_file");
    assert_eq!(s.flush_interval, Duration::from_millis(250));
    assert_eq!(s.batch_rows, 16_384);
    assert!(matches!(s.catalog, CatalogSettings::Sql { .. }));
    assert!(s.warehouse.starts_with("file:///"));
    assert!(s.warehouse.ends_with("philotes-data/warehouse"));
}

#[test]
fn unknown_file_keys_are_errors() {
    let err = Layer::from_toml("slott = 'x'").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("slott"), "{err}");
}

#[test]
fn secrets_never_print() {
    let l = Layer::from_toml(
        r#"source = "postgres://u:hunter2@h/db"
           s3_secret_access_key = "s3cr3t""#,
    )
    .unwrap();
    let s = l.resolve().unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn bad_warehouse_says_what_to_do() {
    let l = Layer {
        warehouse: Some("/tmp/x".into()),
        ..Layer::default()
    };
    let err = l.resolve().unwrap_err();
    assert!(err.to_string().contains("s3://bucket"), "{err}");
}

#[test]
fn every_layer_field_is_documented() {
    // The TOML keys of Layer and KEYS must agree: a field without a doc line fails here.
    let fields = [
        "source",
        "publication",
        "tables",
        "slot",
        "data_dir",
        "namespace",
        "catalog_name",
        "catalog_uri",
        "catalog_token",
        "catalog_credential",
        "catalog_warehouse",
        "catalog_prefix",
        "warehouse",
        "s3_endpoint",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        "s3_path_style",
        "flush_interval",
        "flush_rows",
        "batch_rows",
        "stream_large_transactions",
        "until_caught_up",
        "maintenance",
        "maintenance_interval",
        "mirror",
        "mirror_interval",
        "compaction_target_size",
        "snapshot_max_age",
        "snapshot_keep_min",
        "orphan_min_age",
        "metrics_addr",
        "buffer_url",
        "shutdown_timeout",
        "buffer_high_rows",
        "buffer_low_rows",
    ];
    for f in fields {
        assert!(KEYS.iter().any(|k| k.key == f), "{f} has no KeyDoc");
        // and each is accepted by the file layer
        let v = match f {
            "tables" => "[]".to_string(),
            "s3_path_style"
            | "until_caught_up"
            | "stream_large_transactions"
            | "maintenance"
            | "mirror" => "true".to_string(),
            "flush_rows" | "batch_rows" => "1".to_string(),
            "buffer_high_rows" | "buffer_low_rows" => "1".to_string(),
            "snapshot_keep_min" => "2".to_string(),
            _ => "'x'".to_string(),
        };
        assert!(Layer::from_toml(&format!("{f} = {v}")).is_ok(), "{f}");
    }
    assert_eq!(KEYS.len(), fields.len());
    for k in KEYS {
        assert!(k.env.starts_with("PHILOTES_") && k.flag.starts_with("--") && !k.doc.is_empty());
    }
}

#[test]
fn readme_documents_every_key() {
    let readme = include_str!("../../../README.md");
    for k in KEYS {
        for needle in [
            format!("`{}`", k.key),
            format!("`{}`", k.flag),
            format!("`{}`", k.env),
        ] {
            assert!(
                readme.contains(&needle),
                "README.md does not document {needle}"
            );
        }
    }
}

#[test]
fn maintenance_defaults_and_checks() {
    let s = Layer::default().resolve().unwrap();
    assert_eq!(s.maintenance, MaintenanceSettings::default());
    let l = Layer::from_toml(
        r#"maintenance = false
           maintenance_interval = "30s"
           compaction_target_size = "8MiB"
           snapshot_max_age = "1h"
           orphan_min_age = "2d""#,
    )
    .unwrap();
    let m = l.resolve().unwrap().maintenance;
    assert!(!m.enabled);
    assert_eq!(m.interval, Duration::from_secs(30));
    assert_eq!(m.target_file_size, 8 << 20);
    assert_eq!(m.snapshot_max_age, Duration::from_secs(3600));
    assert_eq!(m.orphan_min_age, Duration::from_secs(2 * 86_400));
    assert_eq!(m.changelog_retention, None, "retention is off unless set");
    let keep = |v: &str| {
        Layer::from_toml(&format!("changelog_retention = '{v}'"))
            .unwrap()
            .resolve()
            .map(|s| s.maintenance.changelog_retention)
    };
    assert_eq!(keep("30d").unwrap(), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(keep("off").unwrap(), None);
    for bad in [
        "changelog_retention = '0s'",
        "changelog_retention = 'a while'",
        "maintenance_interval = '0s'",
        "compaction_target_size = '10KiB'",
        "snapshot_keep_min = 1",
        "orphan_min_age = 'soon'",
    ] {
        let err = Layer::from_toml(bad).unwrap().resolve().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
    }
}
