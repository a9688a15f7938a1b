//! What the source's system catalog says about tables and types.
//!
//! The stream describes a table by OIDs and type modifiers only; enums, domains and arrays need
//! `pg_type` to find their lake type, and the primary key (which decides how key changes are
//! written) is not in the stream at all under `REPLICA IDENTITY FULL`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use philotes_core::types::scalar_type;
use philotes_core::{ColumnDesc, ColumnType, Error, ErrorKind, ReplicaIdentity, Result, TableName};

pub(crate) fn source_error(what: &str, e: tokio_postgres::Error) -> Error {
    let mut msg = format!("source query failed: {what}");
    if let Some(db) = e.as_db_error() {
        msg = format!("{msg}: {} ({})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            msg = format!("{msg}; hint: {hint}");
        }
        return Error::new(ErrorKind::Source, msg);
    }
    Error::new(ErrorKind::Source, msg).with_source(e)
}

/// A table of the publication, as the catalog describes it now.
#[derive(Clone, Debug)]
pub struct SourceTable {
    pub oid: u32,
    pub name: TableName,
    pub replica_identity: ReplicaIdentity,
    pub has_primary_key: bool,
    /// A partitioned table, replicated as its root (`publish_via_partition_root`): its rows
    /// live in its partitions, so a copy must not say `ONLY`.
    pub partitioned: bool,
    /// Columns in attribute order; `is_key` marks the primary key (or the replica identity
    /// index under `REPLICA IDENTITY USING INDEX`).
    pub columns: Vec<ColumnDesc>,
}

/// Resolves type OIDs to lake types, asking `pg_type` once per unknown OID.
#[derive(Default)]
pub struct TypeResolver {
    cache: HashMap<(u32, i32), ColumnType>,
}

struct PgTypeRow {
    typtype: i8,
    typrelid: u32,
    typelem: u32,
    typbasetype: u32,
    typtypmod: i32,
    is_array: bool,
}

impl TypeResolver {
    pub async fn resolve(
        &mut self,
        client: &tokio_postgres::Client,
        type_oid: u32,
        type_modifier: i32,
    ) -> Result<ColumnType> {
        if let Some(t) = scalar_type(type_oid, type_modifier) {
            return Ok(t);
        }
        if let Some(t) = self.cache.get(&(type_oid, type_modifier)) {
            return Ok(t.clone());
        }
        let resolved = self
            .resolve_uncached(client, type_oid, type_modifier, 0)
            .await?;
        self.cache
            .insert((type_oid, type_modifier), resolved.clone());
        Ok(resolved)
    }

    /// Composite types resolve their attributes in turn (boxed: the future is recursive).
    fn resolve_uncached<'a>(
        &'a self,
        client: &'a tokio_postgres::Client,
        oid: u32,
        typmod: i32,
        depth: usize,
    ) -> Pin<Box<dyn Future<Output = Result<ColumnType>> + Send + 'a>> {
        Box::pin(self.resolve_inner(client, oid, typmod, depth))
    }

    async fn resolve_inner(
        &self,
        client: &tokio_postgres::Client,
        mut oid: u32,
        mut typmod: i32,
        depth: usize,
    ) -> Result<ColumnType> {
        let mut in_array = false;
        // Domains unwrap to their base type; one array level becomes a list.
        for _ in 0..16 {
            if let Some(t) = scalar_type(oid, typmod) {
                return Ok(if in_array {
                    ColumnType::List(Box::new(t))
                } else {
                    t
                });
            }
            let Some(row) = lookup(client, oid).await? else {
                return Ok(ColumnType::Text);
            };
            match row.typtype as u8 {
                b'd' => {
                    oid = row.typbasetype;
                    if row.typtypmod != -1 {
                        typmod = row.typtypmod;
                    }
                }
                b'e' => {
                    return Ok(if in_array {
                        ColumnType::List(Box::new(ColumnType::Text))
                    } else {
                        ColumnType::Text
                    });
                }
                b'c' if row.typrelid != 0 && depth < 8 => {
                    let mut fields = Vec::new();
                    for (name, att_oid, att_mod) in
                        composite_attributes(client, row.typrelid).await?
                    {
                        let ty = self
                            .resolve_uncached(client, att_oid, att_mod, depth + 1)
                            .await?;
                        fields.push((name, ty));
                    }
                    let st = ColumnType::Struct(fields);
                    return Ok(if in_array {
                        ColumnType::List(Box::new(st))
                    } else {
                        st
                    });
                }
                _ if row.is_array && row.typelem != 0 && !in_array => {
                    in_array = true;
                    oid = row.typelem;
                }
                _ => {
                    return Ok(if in_array {
                        ColumnType::List(Box::new(ColumnType::Text))
                    } else {
                        ColumnType::Text
                    });
                }
            }
        }
        Ok(ColumnType::Text)
    }
}

/// A table of the source database, as `philotes api` lists it.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub name: TableName,
    pub replica_identity: ReplicaIdentity,
    pub has_primary_key: bool,
    /// The planner's estimate (`reltuples`; 0 before the first ANALYZE).
    pub estimated_rows: i64,
    /// Table, indexes and TOAST, in bytes.
    pub total_bytes: i64,
    pub partitioned: bool,
}

/// Every ordinary and partitioned table of the database outside the system schemas (a
/// partition is replicated as its root, so partitions are left out).
pub async fn user_tables(client: &tokio_postgres::Client) -> Result<Vec<TableInfo>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relreplident,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                    greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid), c.relkind = 'p'
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| source_error("listing the source's tables", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let ident: i8 = r.get(2);
            TableInfo {
                name: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                replica_identity: ReplicaIdentity::from_byte(ident as u8)
                    .unwrap_or(ReplicaIdentity::Default),
                has_primary_key: r.get(3),
                estimated_rows: r.get(4),
                total_bytes: r.get(5),
                partitioned: r.get(6),
            }
        })
        .collect())
}

/// Whether any row holds a value in `column`: for a column new since Philotes last saw the
/// table, a value no change was sent for (a volatile default, or a rewrite that materialised a
/// default). Reads until the first such value; a column without one is read through once.
pub async fn column_has_values(
    client: &tokio_postgres::Client,
    table: &TableName,
    column: &str,
) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NOT NULL)",
        table.quoted(),
        philotes_core::change::quote_ident(column)
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| source_error("checking a new column for values", e))?;
    Ok(row.get(0))
}

/// The OIDs of the publication's tables (a cheap look for tables that joined or left).
pub async fn publication_oids(
    client: &tokio_postgres::Client,
    publication: &str,
) -> Result<std::collections::HashSet<u32>> {
    let rows = client
        .query(
            "SELECT c.oid FROM pg_publication_tables pt
             JOIN pg_namespace n ON n.nspname = pt.schemaname
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
             WHERE pt.pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| source_error("listing the publication's tables", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The attributes of a composite type (name, type, modifier), in order.
async fn composite_attributes(
    client: &tokio_postgres::Client,
    relid: u32,
) -> Result<Vec<(String, u32, i32)>> {
    let rows = client
        .query(
            "SELECT attname::text, atttypid, atttypmod FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&relid],
        )
        .await
        .map_err(|e| source_error("reading a composite type's attributes", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

async fn lookup(client: &tokio_postgres::Client, oid: u32) -> Result<Option<PgTypeRow>> {
    let row = client
        .query_opt(
            "SELECT typtype, typelem, typbasetype, typtypmod, typcategory = 'A' AND typsubscript = 'array_subscript_handler'::regproc,
                    typrelid
             FROM pg_type WHERE oid = $1",
            &[&oid],
        )
        .await
        .map_err(|e| source_error("looking up a column type in pg_type", e))?;
    Ok(row.map(|r| PgTypeRow {
        typtype: r.get(0),
        typelem: r.get(1),
        typbasetype: r.get(2),
        typtypmod: r.get(3),
        is_array: r.get(4),
        typrelid: r.get(5),
    }))
}

/// The tables of `publication`, with columns and keys.
pub async fn publication_tables(
    client: &tokio_postgres::Client,
    resolver: &mut TypeResolver,
    publication: &str,
) -> Result<Vec<SourceTable>> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text::\"char\",
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                    c.relkind = 'p', c.relispartition
             FROM pg_publication_tables pt
             JOIN pg_namespace n ON n.nspname = pt.schemaname
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
             WHERE pt.pubname = $1
             ORDER BY 2, 3",
            &[&publication],
        )
        .await
        .map_err(|e| source_error("listing the publication's tables", e))?;
    let mut tables = Vec::with_capacity(rows.len());
    for r in rows {
        let oid: u32 = r.get(0);
        let name = TableName::new(r.get::<_, String>(1), r.get::<_, String>(2));
        let ident: i8 = r.get(3);
        let replica_identity =
            ReplicaIdentity::from_byte(ident as u8).unwrap_or(ReplicaIdentity::Default);
        let has_primary_key: bool = r.get(4);
        let partitioned: bool = r.get(5);
        if r.get::<_, bool>(6) {
            tracing::warn!(table = %name, publication, "a partition is replicated on its own (the publication does not publish via the partition root); for one changelog per partitioned table: ALTER PUBLICATION … SET (publish_via_partition_root = true)");
        }
        let columns = table_columns(client, resolver, oid, replica_identity).await?;
        tables.push(SourceTable {
            oid,
            name,
            replica_identity,
            has_primary_key,
            partitioned,
            columns,
        });
    }
    Ok(tables)
}

/// What the catalog says of a column beyond the stream's description.
#[derive(Clone, Copy, Debug)]
pub struct ColumnFacts {
    pub attnum: i16,
    /// `atthasmissing`: added with a default stored without rewriting the table.
    pub has_missing: bool,
    /// Declared array dimensions (`int[][]` → 2).
    pub ndims: i32,
}

/// The current facts of every column of a table, by name.
pub async fn column_facts(
    client: &tokio_postgres::Client,
    table_oid: u32,
) -> Result<HashMap<String, ColumnFacts>> {
    let rows = client
        .query(
            "SELECT attname::text, attnum, atthasmissing, attndims FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
            &[&table_oid],
        )
        .await
        .map_err(|e| source_error("reading a table's column numbers", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let facts = ColumnFacts {
                attnum: r.get(1),
                has_missing: r.get(2),
                ndims: r.get(3),
            };
            (r.get(0), facts)
        })
        .collect())
}

/// Arrays declared with more than one dimension keep their text form: a list holds one.
pub fn lake_type_for_dims(ty: ColumnType, ndims: i32) -> ColumnType {
    match ty {
        ColumnType::List(_) if ndims > 1 => ColumnType::Text,
        other => other,
    }
}

async fn table_columns(
    client: &tokio_postgres::Client,
    resolver: &mut TypeResolver,
    table_oid: u32,
    identity: ReplicaIdentity,
) -> Result<Vec<ColumnDesc>> {
    let key_index = if identity == ReplicaIdentity::Index {
        "i.indisreplident"
    } else {
        "i.indisprimary"
    };
    let sql = format!(
        "SELECT a.attname::text, a.atttypid, a.atttypmod,
                EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND {key_index}
                        AND a.attnum = ANY (i.indkey)),
                a.attnum, a.atthasmissing, a.attndims
         FROM pg_attribute a
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
         ORDER BY a.attnum"
    );
    let rows = client
        .query(&sql, &[&table_oid])
        .await
        .map_err(|e| source_error("reading a table's columns", e))?;
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let type_oid: u32 = r.get(1);
        let type_modifier: i32 = r.get(2);
        columns.push(ColumnDesc {
            name: r.get(0),
            type_oid,
            type_modifier,
            is_key: r.get(3),
            ty: lake_type_for_dims(
                resolver.resolve(client, type_oid, type_modifier).await?,
                r.get(6),
            ),
            attnum: Some(r.get(4)),
            filled_on_add: r.get(5),
        });
    }
    Ok(columns)
}
