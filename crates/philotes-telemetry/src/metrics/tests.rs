use std::collections::BTreeSet;

use super::*;

/// `(name, type)` of every metric declared, named as Prometheus scrapes it.
fn exported() -> BTreeSet<(String, String)> {
    declared()
        .into_iter()
        .map(|d| (d.name, d.kind.to_string()))
        .collect()
}

/// `(name, type)` of every row of the reference table in docs/metrics.md.
fn documented() -> BTreeSet<(String, String)> {
    let doc = include_str!("../../../../docs/metrics.md");
    doc.lines()
        .filter(|l| l.starts_with("| `philotes_"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((
                cells.get(1)?.trim_matches('`').to_string(),
                cells.get(2)?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let exported = exported();
    let documented = documented();
    assert!(exported.len() > 20, "{exported:?}");
    let missing: Vec<_> = exported.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "metrics missing in docs/metrics.md (name, type): {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md lists metrics the code does not export: {stale:?}"
    );
}

#[test]
fn names_carry_base_units_and_counters_end_in_total() {
    for (name, kind) in exported() {
        assert!(name.starts_with("philotes_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: {kind}"
        );
        assert!(!name.contains("millis") && !name.contains("_ms"), "{name}");
    }
}

#[test]
fn help_text_on_every_metric_and_in_what_is_served() {
    for d in declared() {
        assert!(d.help.len() > 10, "{} has no help text", d.name);
    }
    // A recorded metric is served with its help and type.
    buffer_depth(7);
    let text = render();
    assert!(
        text.contains("# HELP philotes_buffer_depth Changes received"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE philotes_buffer_depth gauge"),
        "{text}"
    );
    assert!(text.contains("philotes_buffer_depth{pipeline="), "{text}");
}

#[test]
fn recorded_values_appear_with_their_labels() {
    set_pipeline("orders_pipeline");
    let m = TableMetrics::new("public.metrics_test");
    m.ingested(3);
    m.committed(3, Duration::from_millis(120));
    slot_status(Some(4096), "extended", Some(1 << 30));
    let text = render();
    assert!(
        text.contains(
            "philotes_ingested_rows_total{pipeline=\"orders_pipeline\",table=\"public.metrics_test\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("philotes_commit_duration_seconds_bucket{le=\"0.16\",pipeline=\"orders_pipeline\",table=\"public.metrics_test\"} 1")
            || text.contains("philotes_commit_duration_seconds_bucket{pipeline=\"orders_pipeline\",table=\"public.metrics_test\",le=\"0.16\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "philotes_slot_wal_status{pipeline=\"orders_pipeline\",status=\"extended\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "philotes_slot_wal_status{pipeline=\"orders_pipeline\",status=\"reserved\"} 0"
        ),
        "{text}"
    );
    assert!(
        text.contains("philotes_slot_safe_wal_bytes{pipeline=\"orders_pipeline\"} 1073741824"),
        "{text}"
    );
}

#[test]
fn pipelines_on_their_own_threads_keep_their_own_series_until_forgotten() {
    let record = |name: &'static str, depth: u64| {
        std::thread::spawn(move || {
            set_thread_pipeline(name);
            set_pipeline(name);
            buffer_depth(depth);
            TableMetrics::new("public.t").stopped(ErrorKind::Invalid);
        })
        .join()
        .is_ok()
    };
    assert!(record("threads_a", 11) && record("threads_b", 22));
    let text = render();
    assert!(
        text.contains("philotes_buffer_depth{pipeline=\"threads_a\"} 11"),
        "{text}"
    );
    assert!(
        text.contains("philotes_buffer_depth{pipeline=\"threads_b\"} 22"),
        "{text}"
    );
    assert!(
        text.contains("philotes_table_stopped{pipeline=\"threads_a\",table=\"public.t\"} 1"),
        "{text}"
    );
    forget_pipeline("threads_a");
    let text = render();
    assert!(!text.contains("pipeline=\"threads_a\"} "), "{text}");
    assert!(
        !text.contains("philotes_table_stopped{pipeline=\"threads_a\""),
        "{text}"
    );
    assert!(
        text.contains("philotes_buffer_depth{pipeline=\"threads_b\"} 22"),
        "{text}"
    );
    // (Counters stay: they only stop rising.)
    assert!(text.contains("philotes_errors_total"), "{text}");
}
