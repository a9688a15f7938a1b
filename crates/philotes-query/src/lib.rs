//! SQL over the lake (`philotes sql`), on Apache DataFusion through `iceberg-datafusion`.
//!
//! Every changelog table Philotes writes is queryable twice: `<ns>.<table>__changelog`, the raw
//! changes, and `<ns>.<table>`, its current state (a view, see [`state`]). Both can be moved
//! back in time to a source LSN or commit time: the changelog is append-only, so the state as
//! of a position is the current-state rule applied to the changes up to it.
//!
//! Why views over the catalog's tables rather than a catalog provider: `iceberg-datafusion`'s
//! catalog provider creates real Iceberg tables when a view is registered in it, and reads
//! tables through their current schema even where the last snapshot was written under an older
//! one. Here each table is read through its current snapshot, registered under a private
//! schema, and the names users type are views on it.

pub mod output;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use iceberg::spec::{PrimitiveType, Type};
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;
use philotes_core::{Error, ErrorKind, Lsn, Result};
use philotes_sink_iceberg::table::{
    KEY_FIELDS_KEY, RETENTION_CUT_LSN_KEY, RETENTION_CUT_TS_KEY, read_progress,
};

pub use datafusion;
use state::{
    Upto, ViewColumn, any_unchanged_sql, current_state_sql, ident, last_truncate_sql,
    latest_row_sql,
};

/// The schema holding the tables themselves; users query the views.
const RAW_SCHEMA: &str = "philotes_raw";
/// Where unqualified names are looked up (DataFusion's default).
const DEFAULT_SCHEMA: &str = "public";
const META: [&str; 5] = [
    "_cdc_op",
    "_cdc_lsn",
    "_cdc_seq",
    "_cdc_ts",
    "_cdc_unchanged",
];
const CHANGELOG_SUFFIX: &str = "__changelog";

/// How to query.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    pub upto: Upto,
    /// Bytes DataFusion may hold before sorts and aggregations spill to disk.
    pub memory_limit: Option<usize>,
    /// Register only these changelog tables; every one of the catalog when `None`.
    pub only: Option<Vec<TableIdent>>,
}

/// One changelog table as it is exposed.
#[derive(Clone, Debug)]
pub struct LakeTable {
    pub namespace: String,
    /// The changelog's name (`<table>__changelog`).
    pub changelog: String,
    /// The current-state view's name; `None` when the table has no key.
    pub state: Option<String>,
    /// The table's position in the source (its watermark), when it has one.
    pub watermark: Option<Lsn>,
    /// The source columns of the current-state view, in order.
    pub columns: Vec<String>,
    /// The key columns (empty when the table has no recorded key).
    pub key: Vec<String>,
    /// The table as it was loaded (the views read its current snapshot).
    pub table: Table,
}

/// A current-state view not defined yet: each is defined when a statement first names it,
/// since finding its last truncate reads the table's `_cdc_op` column.
struct PendingState {
    namespace: String,
    name: String,
    /// The quoted, qualified changelog it reads.
    raw: String,
    columns: Vec<ViewColumn>,
}

/// A DataFusion session with every changelog table of a catalog registered.
pub struct LakeSession {
    ctx: SessionContext,
    pub tables: Vec<LakeTable>,
    upto: Upto,
    pending: std::sync::Mutex<Vec<PendingState>>,
}

fn query_error(
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::new(ErrorKind::Invalid, what).with_source(e)
}

fn lake_error(what: impl Into<String>, e: iceberg::Error) -> Error {
    Error::new(ErrorKind::Sink, what).with_source(e)
}

impl LakeSession {
    /// Register the changelog tables of `catalog`.
    pub async fn open(catalog: Arc<dyn Catalog>, opts: &QueryOptions) -> Result<LakeSession> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = opts.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| query_error("cannot set up the query engine", e))?;
        let mut config = SessionConfig::new().with_information_schema(true);
        if let Some(limit) = opts.memory_limit {
            // What a sort keeps back for merging its spill files: small enough that the
            // sorts and aggregations of one query can all spill under a tight limit.
            // One partition: operators that cannot spill (the merge of sorted partitions)
            // then have nothing to merge, and the spilling ones get the whole limit.
            config = config
                .with_sort_spill_reservation_bytes((limit / 32).clamp(64 << 10, 10 << 20))
                .with_target_partitions(1);
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let mut session = LakeSession {
            ctx,
            tables: Vec::new(),
            upto: opts.upto.clone(),
            pending: std::sync::Mutex::new(Vec::new()),
        };
        let namespaces = catalog
            .list_namespaces(None)
            .await
            .map_err(|e| lake_error("cannot list the catalog's namespaces", e))?;
        session.schema(RAW_SCHEMA)?;
        for ns in namespaces {
            let idents = catalog
                .list_tables(&ns)
                .await
                .map_err(|e| lake_error(format!("cannot list the tables of {ns:?}"), e))?;
            for ident in idents {
                let wanted = opts.only.as_ref().is_none_or(|only| only.contains(&ident));
                if !wanted || !ident.name().ends_with(CHANGELOG_SUFFIX) {
                    continue;
                }
                let table = catalog
                    .load_table(&ident)
                    .await
                    .map_err(|e| lake_error(format!("cannot load table {ident}"), e))?;
                let t = session.register(&ns, table, &opts.upto).await?;
                session.tables.push(t);
            }
        }
        Ok(session)
    }

    fn schema(&self, name: &str) -> Result<()> {
        let catalog = self.ctx.catalog("datafusion").ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "the query engine has no default catalog",
            )
        })?;
        if catalog.schema(name).is_none() {
            catalog
                .register_schema(name, Arc::new(MemorySchemaProvider::new()))
                .map_err(|e| query_error(format!("cannot register schema {name}"), e))?;
        }
        Ok(())
    }

    async fn register(&self, ns: &NamespaceIdent, table: Table, upto: &Upto) -> Result<LakeTable> {
        let namespace = ns.as_ref().join(".");
        let name = table.identifier().name().to_string();
        let watermark = read_progress(&table)?.watermark;
        refuse_before_retention(&table, upto)?;
        let snapshot = table.metadata().current_snapshot().map(|s| s.snapshot_id());
        let columns = view_columns(&table, None)?;
        let provider = match snapshot {
            // Read through the snapshot's own schema (the table's may be newer).
            Some(id) => {
                IcebergStaticTableProvider::try_new_from_table_snapshot(table.clone(), id).await
            }
            None => IcebergStaticTableProvider::try_new_from_table(table.clone()).await,
        }
        .map_err(|e| lake_error(format!("cannot read table {namespace}.{name}"), e))?;
        let raw_name = format!("{namespace}.{name}");
        self.ctx
            .register_table(
                TableReference::partial(RAW_SCHEMA, raw_name.as_str()),
                Arc::new(provider),
            )
            .map_err(|e| query_error(format!("cannot register {raw_name}"), e))?;
        self.schema(&namespace)?;
        let raw = format!("{}.{}", ident(RAW_SCHEMA), ident(&raw_name));
        self.view(
            &namespace,
            &name,
            &format!("SELECT * FROM {raw} WHERE {}", upto.condition()),
        )
        .await?;
        let base = name.trim_end_matches(CHANGELOG_SUFFIX).to_string();
        let state = if columns.iter().any(|c| c.is_key) {
            if let Ok(mut pending) = self.pending.lock() {
                pending.push(PendingState {
                    namespace: namespace.clone(),
                    name: base.clone(),
                    raw: raw.clone(),
                    columns: columns.clone(),
                });
            }
            Some(base)
        } else {
            tracing::warn!(table = %format!("{namespace}.{name}"), "the table has no recorded key (no primary key, or written before Philotes recorded keys): only its changelog is queryable");
            None
        };
        Ok(LakeTable {
            namespace,
            changelog: name,
            state,
            watermark,
            key: columns
                .iter()
                .filter(|c| c.is_key)
                .map(|c| c.name.clone())
                .collect(),
            columns: columns.into_iter().map(|c| c.name).collect(),
            table,
        })
    }

    /// Where the last truncate of `raw` up to `upto` is, if there is one.
    async fn last_truncate(&self, raw: &str, upto: &Upto) -> Result<Option<(i64, i64)>> {
        last_truncate(&self.ctx, raw, upto).await
    }

    async fn view(&self, namespace: &str, name: &str, select: &str) -> Result<()> {
        let sql = format!(
            "CREATE OR REPLACE VIEW {}.{} AS {select}",
            ident(namespace),
            ident(name)
        );
        self.ctx
            .sql(&sql)
            .await
            .map_err(|e| query_error(format!("cannot define the view {namespace}.{name}"), e))?;
        Ok(())
    }

    /// Define the current-state views `sql` names (all of them when it reads
    /// `information_schema`).
    async fn define_named_views(&self, sql: &str) -> Result<()> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let refs = state
            .sql_to_statement(sql, &dialect)
            .and_then(|stmt| state.resolve_table_references(&stmt))
            .map_err(|e| query_error("the statement cannot be parsed", e))?;
        let all = refs
            .iter()
            .any(|r| r.schema() == Some("information_schema"));
        let named = |p: &PendingState| {
            all || refs
                .iter()
                .any(|r| r.table() == p.name && r.schema().unwrap_or(DEFAULT_SCHEMA) == p.namespace)
        };
        let due: Vec<PendingState> = match self.pending.lock() {
            Ok(mut pending) => {
                let (due, rest) = std::mem::take(&mut *pending).into_iter().partition(named);
                *pending = rest;
                due
            }
            Err(_) => Vec::new(),
        };
        for p in due {
            let truncate = self.last_truncate(&p.raw, &self.upto).await?;
            let unchanged = any_unchanged_sql(&p.raw, &self.upto, truncate);
            let select = if self.any_row(&unchanged).await? {
                current_state_sql(&p.raw, &p.columns, &self.upto, truncate)
            } else {
                latest_row_sql(&p.raw, &p.columns, &self.upto, truncate)
            };
            self.view(&p.namespace, &p.name, &select).await?;
        }
        Ok(())
    }

    /// Whether `sql` returns a row.
    async fn any_row(&self, sql: &str) -> Result<bool> {
        let batches = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| query_error("cannot look for unchanged values", e))?
            .collect()
            .await
            .map_err(|e| query_error("cannot look for unchanged values", e))?;
        Ok(batches.iter().any(|b| b.num_rows() > 0))
    }

    /// Run one read-only statement; the result streams.
    pub async fn query(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.define_named_views(sql).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| query_error("the statement cannot be run", e))?;
        df.execute_stream()
            .await
            .map_err(|e| query_error("the query failed", e))
    }
}

/// Where the last truncate of `raw` up to `upto` is, if there is one.
async fn last_truncate(ctx: &SessionContext, raw: &str, upto: &Upto) -> Result<Option<(i64, i64)>> {
    let row = first_row(ctx, &last_truncate_sql(raw, upto))
        .await
        .map_err(|e| e.with("table", raw))?;
    Ok(match row.as_slice() {
        [Some(lsn), Some(seq)] => Some((*lsn, *seq)),
        _ => None,
    })
}

/// The first row of `sql`'s answer, every column a `BIGINT` (NULL as `None`); empty when
/// there is no row.
async fn first_row(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<i64>>> {
    use datafusion::arrow::array::{Array, Int64Array};
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| query_error("cannot plan a query on the changelog", e))?
        .collect()
        .await
        .map_err(|e| query_error("a query on the changelog failed", e))?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    b.columns()
        .iter()
        .map(|c| match c.as_any().downcast_ref::<Int64Array>() {
            Some(a) => Ok(a.is_valid(0).then(|| a.value(0))),
            None => Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "a query on the changelog answered {} where a BIGINT was due",
                    c.data_type()
                ),
            )),
        })
        .collect()
}

/// One changelog table as of one snapshot, registered alone as [`TableSession::NAME`]: what
/// maintenance's changelog retention reads, with the rule of the current-state view.
pub struct TableSession {
    ctx: SessionContext,
    /// The table's source columns in the snapshot's schema.
    pub columns: Vec<ViewColumn>,
}

impl TableSession {
    /// The quoted name the table is registered under.
    pub const NAME: &'static str = "\"changelog\"";

    /// Read `table` as of `snapshot_id`, sorting and aggregating within `memory_limit` bytes
    /// (spilling to the temp directory beyond it).
    pub async fn open(table: &Table, snapshot_id: i64, memory_limit: usize) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
            .build_arc()
            .map_err(|e| query_error("cannot set up the query engine", e))?;
        let config = SessionConfig::new()
            .with_sort_spill_reservation_bytes((memory_limit / 32).clamp(64 << 10, 10 << 20))
            .with_target_partitions(1);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let provider =
            IcebergStaticTableProvider::try_new_from_table_snapshot(table.clone(), snapshot_id)
                .await
                .map_err(|e| lake_error(format!("cannot read table {}", table.identifier()), e))?;
        ctx.register_table("changelog", Arc::new(provider))
            .map_err(|e| query_error("cannot register the table", e))?;
        let columns = view_columns(table, Some(snapshot_id))?;
        Ok(TableSession { ctx, columns })
    }

    /// Where the last truncate before `lsn` is, if there is one.
    pub async fn last_truncate_before(&self, lsn: i64) -> Result<Option<(i64, i64)>> {
        let upto = Upto::Lsn(u64::try_from(lsn.saturating_sub(1)).unwrap_or(0));
        last_truncate(&self.ctx, Self::NAME, &upto).await
    }

    /// The first row of `sql`'s answer, every column a `BIGINT` (NULL as `None`); empty when
    /// there is no row.
    pub async fn first_row(&self, sql: &str) -> Result<Vec<Option<i64>>> {
        first_row(&self.ctx, sql).await
    }

    /// Run `sql`; the answer streams.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.ctx
            .sql(sql)
            .await
            .map_err(|e| query_error("cannot plan a query on the changelog", e))?
            .execute_stream()
            .await
            .map_err(|e| query_error("a query on the changelog failed", e))
    }
}

/// The source columns of a changelog table, with their key flags and every name they had, in
/// the schema of `snapshot_id` (the current snapshot when `None`).
fn view_columns(table: &Table, snapshot_id: Option<i64>) -> Result<Vec<ViewColumn>> {
    let md = table.metadata();
    let snapshot = match snapshot_id {
        Some(id) => md.snapshot_by_id(id).cloned(),
        None => md.current_snapshot().cloned(),
    };
    // The schema the snapshot was written under: what the table provider reads.
    let schema = match snapshot {
        Some(s) => s.schema(md).map_err(|e| {
            lake_error(
                format!("cannot read the schema of {}", table.identifier()),
                e,
            )
        })?,
        None => md.current_schema().clone(),
    };
    let keys: Vec<i32> = md
        .properties()
        .get(KEY_FIELDS_KEY)
        .map(|s| s.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut history: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for schema in md.schemas_iter() {
        for f in schema.as_struct().fields() {
            let names = history.entry(f.id).or_default();
            if !names.contains(&f.name) {
                names.push(f.name.clone());
            }
        }
    }
    Ok(schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| !META.contains(&f.name.as_str()))
        .map(|f| ViewColumn {
            name: f.name.clone(),
            names: history.get(&f.id).cloned().unwrap_or_default(),
            is_key: keys.contains(&f.id),
            toastable: toastable(&f.field_type),
        })
        .collect())
}

/// Changelog retention folded the changes before a point into one row per key: the table
/// answers for positions from there on, and time travel to an earlier point is refused rather
/// than answered wrong.
fn refuse_before_retention(table: &Table, upto: &Upto) -> Result<()> {
    let props = table.metadata().properties();
    let refuse = |from: &str| {
        Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "changelog retention (changelog_retention) folded this table's changes up to {from} into one row per key, so time travel reaches back to {from}: ask for that point or a later one"
            ),
        )
        .with("table", table.identifier()))
    };
    match upto {
        Upto::All => Ok(()),
        Upto::Lsn(at) => match props.get(RETENTION_CUT_LSN_KEY) {
            Some(cut) => {
                let cut: Lsn = cut.parse()?;
                if *at < cut.0 {
                    refuse(&format!("LSN {cut}"))
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        },
        Upto::Micros(at) => match props.get(RETENTION_CUT_TS_KEY) {
            Some(cut) => {
                let t = chrono::DateTime::parse_from_rfc3339(cut).map_err(|e| {
                    Error::new(
                        ErrorKind::Invalid,
                        format!("the table property {RETENTION_CUT_TS_KEY} ({cut}) is not a time"),
                    )
                    .with_source(e)
                })?;
                if *at < t.timestamp_micros() {
                    refuse(cut)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        },
    }
}

/// Fixed-width values are never TOASTed, so never "unchanged".
fn toastable(t: &Type) -> bool {
    !matches!(
        t,
        Type::Primitive(
            PrimitiveType::Boolean
                | PrimitiveType::Int
                | PrimitiveType::Long
                | PrimitiveType::Float
                | PrimitiveType::Double
                | PrimitiveType::Date
                | PrimitiveType::Time
                | PrimitiveType::Timestamp
                | PrimitiveType::Timestamptz
                | PrimitiveType::Uuid
        )
    )
}

/// `--as-of`: an RFC 3339 time (`2026-11-27T08:00:00Z`) or `YYYY-MM-DD HH:MM:SS[.f][+TZ]`
/// (UTC when no zone is given).
pub fn parse_as_of(s: &str) -> Result<Upto> {
    let t = s.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .or_else(|_| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|d| d.timestamp_micros())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .map(|d| d.and_utc().timestamp_micros())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_micros()
            })
        });
    parsed.map(Upto::Micros).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("--as-of `{s}` is not a time: write e.g. 2026-11-27T08:00:00Z or '2026-11-27 08:00:00+01'"),
        )
    })
}

pub use philotes_config::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() -> Result<()> {
        assert_eq!(parse_size("512MiB")?, 512 << 20);
        assert_eq!(parse_size("2 GiB")?, 2 << 30);
        assert_eq!(parse_size("1000")?, 1000);
        assert!(parse_size("lots").is_err());
        assert_eq!(
            parse_as_of("1970-01-01T00:00:01Z")?,
            Upto::Micros(1_000_000)
        );
        assert_eq!(
            parse_as_of("1970-01-01 01:00:01+01")?,
            Upto::Micros(1_000_000)
        );
        assert_eq!(
            parse_as_of("1970-01-01 00:00:01.5")?,
            Upto::Micros(1_500_000)
        );
        assert_eq!(parse_as_of("1970-01-02")?, Upto::Micros(86_400_000_000));
        assert!(parse_as_of("yesterday").is_err());
        Ok(())
    }
}
