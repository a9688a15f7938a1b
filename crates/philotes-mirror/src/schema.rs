//! The mirror's schema: the changelog's source columns (and `_cdc_lsn`, `_cdc_ts`), followed.
//!
//! A catalog assigns a new table's field ids itself, so the mirror cannot simply reuse the
//! changelog's: the table property [`FIELDS_KEY`] maps each changelog field to the mirror's.
//! At every step the mirror's schema is made to follow the changelog's source columns — a
//! renamed column is renamed, a widened one widened (Iceberg promotions, the only changes the
//! changelog makes in place), a new one added with a fresh id — in one guarded commit.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, Schema, StructType, Type};
use iceberg::table::Table;
use iceberg::{Catalog, TableCreation, TableIdent};
use philotes_core::{Error, ErrorKind, Result};
use philotes_sink_iceberg::catalog::{DELETE_AFTER_COMMIT, PREVIOUS_VERSIONS_MAX};
use philotes_sink_iceberg::table::{OP_COLUMN, SEQ_COLUMN, UNCHANGED_COLUMN};
use philotes_sink_iceberg::{Guard, Lake};

use crate::{FIELDS_KEY, MIRROR_OF_KEY, lake_error};

/// How many times a schema commit that lost a race is built again.
const ATTEMPTS: u32 = 10;

/// Changelog field id → mirror field id, for every mirrored column (source columns,
/// `_cdc_lsn`, `_cdc_ts`).
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldMap {
    pub pairs: Vec<(i32, i32)>,
}

impl FieldMap {
    fn parse(v: &str) -> Result<FieldMap> {
        let bad = || {
            Error::new(
                ErrorKind::Internal,
                format!("{FIELDS_KEY} is {v:?}: expected changelog:mirror field id pairs"),
            )
        };
        let mut pairs = Vec::new();
        for pair in v.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = pair.split_once(':').ok_or_else(bad)?;
            pairs.push((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?));
        }
        Ok(FieldMap { pairs })
    }

    fn render(&self) -> String {
        self.pairs
            .iter()
            .map(|(a, b)| format!("{a}:{b}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn mirror_of(&self, changelog_id: i32) -> Option<i32> {
        self.pairs
            .iter()
            .find(|(a, _)| *a == changelog_id)
            .map(|(_, b)| *b)
    }

    /// The mirror's field ids of the changelog's key.
    pub fn mirror_keys(&self, key_ids: &[i32]) -> Result<Vec<i32>> {
        key_ids
            .iter()
            .map(|k| {
                self.mirror_of(*k).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("the changelog's key field {k} has no mirror field"),
                    )
                })
            })
            .collect()
    }
}

/// The changelog's fields the mirror keeps, in order.
fn mirrored_fields(changelog: &Schema) -> Vec<NestedFieldRef> {
    changelog
        .as_struct()
        .fields()
        .iter()
        .filter(|f| ![OP_COLUMN, SEQ_COLUMN, UNCHANGED_COLUMN].contains(&f.name.as_str()))
        .cloned()
        .collect()
}

/// `ty` with fresh ids for every nested field, from `next` on.
fn renumber(ty: &Type, next: &mut i32) -> Type {
    fn fresh(next: &mut i32) -> i32 {
        *next += 1;
        *next
    }
    match ty {
        Type::Primitive(_) => ty.clone(),
        Type::Struct(s) => Type::Struct(StructType::new(
            s.fields()
                .iter()
                .map(|f| {
                    let id = fresh(next);
                    let inner = renumber(&f.field_type, next);
                    Arc::new(renamed(f, id, f.name.clone(), inner))
                })
                .collect(),
        )),
        Type::List(l) => {
            let id = fresh(next);
            let e = &l.element_field;
            let inner = renumber(&e.field_type, next);
            Type::List(ListType::new(Arc::new(renamed(
                e,
                id,
                e.name.clone(),
                inner,
            ))))
        }
        Type::Map(m) => {
            let (k, v) = (fresh(next), fresh(next));
            let kt = renumber(&m.key_field.field_type, next);
            let vt = renumber(&m.value_field.field_type, next);
            Type::Map(MapType::new(
                Arc::new(renamed(&m.key_field, k, m.key_field.name.clone(), kt)),
                Arc::new(renamed(&m.value_field, v, m.value_field.name.clone(), vt)),
            ))
        }
    }
}

fn renamed(f: &NestedField, id: i32, name: String, ty: Type) -> NestedField {
    let mut out = if f.required {
        NestedField::required(id, name, ty)
    } else {
        NestedField::optional(id, name, ty)
    };
    out.doc = f.doc.clone();
    out
}

/// The mirror's schema for `changelog`'s fields given `map` (fields not in it get fresh ids
/// after `last_id`), and the map that goes with it.
fn desired(
    changelog: &Schema,
    mirror: Option<&Schema>,
    map: &FieldMap,
    mut last_id: i32,
) -> Result<(Schema, FieldMap)> {
    let mut fields = Vec::new();
    let mut out = FieldMap::default();
    for f in mirrored_fields(changelog) {
        let existing = map.mirror_of(f.id).and_then(|id| {
            mirror
                .and_then(|m| m.field_by_id(id))
                .map(|m| (id, m.clone()))
        });
        let (id, ty) = match existing {
            // Nested types keep the mirror's ids; a primitive takes the changelog's (a widening).
            Some((id, _)) if matches!(*f.field_type, Type::Primitive(_)) => {
                (id, (*f.field_type).clone())
            }
            Some((id, m)) => (id, (*m.field_type).clone()),
            None => {
                last_id += 1;
                let id = last_id;
                (id, renumber(&f.field_type, &mut last_id))
            }
        };
        out.pairs.push((f.id, id));
        fields.push(Arc::new(renamed(&f, id, f.name.clone(), ty)));
    }
    let schema = Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| lake_error("cannot build the mirror's schema", e))?;
    Ok((schema, out))
}

fn same_fields(a: &Schema, b: &Schema) -> bool {
    a.as_struct().fields() == b.as_struct().fields()
}

/// The mirror of `changelog` as `ident`, created when missing, its schema following the
/// changelog's.
pub(crate) async fn open(lake: &Lake, changelog: &Table, ident: &TableIdent) -> Result<Table> {
    let cl_schema = changelog.metadata().current_schema().clone();
    let table = match lake.catalog.load_table(ident).await {
        Ok(t) => t,
        Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => {
            create(lake.catalog.as_ref(), changelog, ident).await?
        }
        Err(e) => return Err(lake_error(format!("cannot load the mirror {ident}"), e)),
    };
    let of = table.metadata().properties().get(MIRROR_OF_KEY);
    if of != Some(&changelog.identifier().to_string()) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "the table {ident} exists and is not the mirror of {} (its {MIRROR_OF_KEY} is {of:?}): rename or drop it, or turn mirrors off (mirror = false)",
                changelog.identifier()
            ),
        ));
    }
    let mut table = table;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let md = table.metadata();
        let map = match md.properties().get(FIELDS_KEY) {
            Some(v) => FieldMap::parse(v)?,
            // Just created: the catalog chose the ids; match them by name once.
            None => {
                let mut m = FieldMap::default();
                for f in mirrored_fields(&cl_schema) {
                    if let Some(mf) = md.current_schema().field_by_name(&f.name) {
                        m.pairs.push((f.id, mf.id));
                    }
                }
                m
            }
        };
        let (schema, new_map) = desired(
            &cl_schema,
            Some(md.current_schema()),
            &map,
            md.last_column_id(),
        )?;
        let map_changed = md.properties().get(FIELDS_KEY) != Some(&new_map.render());
        if same_fields(&schema, md.current_schema()) && !map_changed {
            return Ok(table);
        }
        let mut builder = md
            .clone()
            .into_builder(table.metadata_location().map(str::to_string));
        if !same_fields(&schema, md.current_schema()) {
            builder = builder
                .add_current_schema(schema)
                .map_err(|e| lake_error("cannot evolve the mirror's schema", e))?;
        }
        let built = builder
            .set_properties(HashMap::from([(FIELDS_KEY.to_string(), new_map.render())]))
            .and_then(|b| b.build())
            .map_err(|e| lake_error("cannot evolve the mirror's schema", e))?;
        match lake.commit_metadata(&table, built, Guard::Schema).await {
            Ok(t) => return Ok(t),
            Err(e) if e.kind() == ErrorKind::Conflict && attempt < ATTEMPTS => {
                table = lake
                    .catalog
                    .load_table(ident)
                    .await
                    .map_err(|e| lake_error(format!("cannot load the mirror {ident}"), e))?;
            }
            Err(e) => return Err(e.with("table", ident)),
        }
    }
}

async fn create(catalog: &dyn Catalog, changelog: &Table, ident: &TableIdent) -> Result<Table> {
    let cl = changelog.metadata().current_schema();
    let (schema, _) = desired(cl, None, &FieldMap::default(), 0)?;
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .properties(HashMap::from([
            (
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            ),
            (
                MIRROR_OF_KEY.to_string(),
                changelog.identifier().to_string(),
            ),
            ("commit.retry.num-retries".to_string(), "0".to_string()),
            (DELETE_AFTER_COMMIT.to_string(), "true".to_string()),
            (PREVIOUS_VERSIONS_MAX.to_string(), "10".to_string()),
            // Readers: deletes are by position (every v2 reader applies them).
            ("write.delete.mode".to_string(), "merge-on-read".to_string()),
            ("write.update.mode".to_string(), "merge-on-read".to_string()),
        ]))
        .build();
    let t = catalog
        .create_table(ident.namespace(), creation)
        .await
        .map_err(|e| lake_error(format!("cannot create the mirror {ident}"), e))?;
    tracing::info!(table = %ident, changelog = %changelog.identifier(), "created mirror table");
    Ok(t)
}

/// The field map of a mirror [`open`] returned.
pub(crate) fn field_map(mirror: &Table) -> Result<FieldMap> {
    match mirror.metadata().properties().get(FIELDS_KEY) {
        Some(v) => FieldMap::parse(v),
        None => Err(Error::new(
            ErrorKind::Internal,
            format!("the mirror {} has no {FIELDS_KEY}", mirror.identifier()),
        )),
    }
}
