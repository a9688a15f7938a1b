//! Schema evolution: how a source table's columns land in its changelog table's schema.
//!
//! Iceberg names columns by field id, not by name or position, so history stays readable across
//! every change: a renamed column keeps its id (old files read under the new name), a widened
//! one keeps its id with the wider type, and a dropped column stays in the table (NULL from then
//! on) so the changes it saw remain. A source column is matched to a field by, in order:
//!
//! 1. its `attnum` (PostgreSQL's column number, which survives renames), recorded per field in
//!    the table property [`ATTNUMS_KEY`];
//! 2. its name in the current schema;
//! 3. its name in an older schema of the table — a replay after a crash delivers changes made
//!    before a rename under the old name.
//!
//! The first candidate whose type fits wins. When none fits — a new column, or a type change
//! Iceberg cannot express such as text → int — a new field is added; a current field with the
//! same name keeps its history under `<name>__before_<lsn>`, and the table is copied again
//! (PostgreSQL converted the existing rows without sending them). A column added with a default
//! also asks for a new copy: the older rows hold the default, but no change said so. Nothing is
//! converted lossily and nothing stops.

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, TableMetadata, Type};
use philotes_core::{ColumnDesc, ColumnType, Lsn, Result};

use crate::catalog::sink_error;
use crate::table::{META_COLUMNS, iceberg_type, reject_meta_name};

/// Table property: `field_id:attnum` pairs, comma-separated.
pub const ATTNUMS_KEY: &str = "philotes.source-attnums";

/// Field id → source attnum.
pub type Attnums = BTreeMap<i32, i16>;

pub fn parse_attnums(s: Option<&String>) -> Attnums {
    s.map(|s| {
        s.split(',')
            .filter_map(|pair| {
                let (id, a) = pair.split_once(':')?;
                Some((id.trim().parse().ok()?, a.trim().parse().ok()?))
            })
            .collect()
    })
    .unwrap_or_default()
}

pub fn format_attnums(a: &Attnums) -> String {
    a.iter()
        .map(|(id, n)| format!("{id}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The lake type a field holds, `None` for types Philotes never writes.
pub fn lake_type(t: &Type) -> Option<ColumnType> {
    Some(match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Int => ColumnType::Int32,
            PrimitiveType::Long => ColumnType::Int64,
            PrimitiveType::Float => ColumnType::Float32,
            PrimitiveType::Double => ColumnType::Float64,
            PrimitiveType::Decimal { precision, scale } => ColumnType::Decimal {
                precision: u8::try_from(*precision).ok()?,
                scale: u8::try_from(*scale).ok()?,
            },
            PrimitiveType::Boolean => ColumnType::Bool,
            PrimitiveType::String => ColumnType::Text,
            PrimitiveType::Binary => ColumnType::Bytea,
            PrimitiveType::Date => ColumnType::Date,
            PrimitiveType::Time => ColumnType::Time,
            PrimitiveType::Timestamp => ColumnType::Timestamp,
            PrimitiveType::Timestamptz => ColumnType::Timestamptz,
            PrimitiveType::Uuid => ColumnType::Uuid,
            _ => return None,
        },
        Type::List(l) => ColumnType::List(Box::new(lake_type(&l.element_field.field_type)?)),
        Type::Struct(s) => ColumnType::Struct(
            s.fields()
                .iter()
                .map(|f| Some((f.name.clone(), lake_type(&f.field_type)?)))
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}

/// How values of a source type fit a field's type.
#[derive(Debug, PartialEq)]
enum Fit {
    /// The field holds every value as it is (same type, or a narrower source type).
    Holds,
    /// The field must be widened first (a promotion Iceberg allows).
    Widen,
    No,
}

fn fit(field: &ColumnType, source: &ColumnType) -> Fit {
    use ColumnType::*;
    match (field, source) {
        (f, s) if f == s => Fit::Holds,
        (Int64, Int32) | (Float64, Float32) => Fit::Holds,
        (Int32, Int64) | (Float32, Float64) => Fit::Widen,
        (
            Decimal {
                precision: fp,
                scale: fs,
            },
            Decimal {
                precision: sp,
                scale: ss,
            },
        ) if fs == ss => {
            if sp <= fp {
                Fit::Holds
            } else {
                Fit::Widen
            }
        }
        _ => Fit::No,
    }
}

/// The outcome of matching the source columns against the table.
#[derive(Debug)]
pub struct Plan {
    /// Per source column, the field id it is written to.
    pub ids: Vec<i32>,
    /// The new current schema, when the table's must change.
    pub schema: Option<Schema>,
    /// The attnums to record.
    pub attnums: Attnums,
    /// What changes, for the log.
    pub notes: Vec<String>,
    /// PostgreSQL changed existing rows without sending them — a column changed to a type its
    /// field cannot hold (the rows were converted), or a column added with a default — so only
    /// a new copy makes the current state whole.
    pub recopy: bool,
}

/// Match `columns` against the table described by `md`; `lsn` names the position of the change
/// (used for `<name>__before_<lsn>`).
pub fn plan(md: &TableMetadata, known: &Attnums, columns: &[ColumnDesc], lsn: Lsn) -> Result<Plan> {
    let current = md.current_schema();
    let mut fields: Vec<NestedField> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| (**f).clone())
        .collect();
    let is_source = |f: &NestedField| !META_COLUMNS.contains(&f.name.as_str());
    // Older schemas, newest first, for names a replay may still use.
    let mut history: Vec<_> = md
        .schemas_iter()
        .filter(|s| s.schema_id() != current.schema_id())
        .collect();
    history.sort_by_key(|s| std::cmp::Reverse(s.schema_id()));

    let mut next_id = md.last_column_id();
    let mut attnums = known.clone();
    let mut ids = Vec::with_capacity(columns.len());
    let mut used: HashSet<i32> = HashSet::new();
    let mut added: Vec<NestedField> = Vec::new();
    let mut notes = Vec::new();
    let mut recopy = false;
    let before = format!("__before_{}", lsn.to_string().replace('/', "_"));
    for c in columns {
        reject_meta_name(&c.name)?;
        let by_attnum = c
            .attnum
            .and_then(|a| known.iter().find(|(_, n)| **n == a).map(|(id, _)| *id));
        let by_name = fields
            .iter()
            .find(|f| f.name == c.name && is_source(f))
            .map(|f| f.id);
        let by_history = history
            .iter()
            .filter_map(|s| s.as_struct().field_by_name(&c.name).map(|f| f.id));
        // (field id, found by attnum, found in an older schema)
        let candidates = by_attnum
            .map(|id| (id, true, false))
            .into_iter()
            .chain(by_name.map(|id| (id, false, false)))
            .chain(by_history.map(|id| (id, false, true)));
        let mut chosen = None;
        for (id, via_attnum, via_history) in candidates {
            // A name match whose field PostgreSQL numbers differently is another column
            // (dropped, then added again under the same name).
            let contradicts = match (c.attnum, known.get(&id)) {
                (Some(a), Some(b)) => a != *b,
                _ => false,
            };
            if used.contains(&id) || (!via_attnum && contradicts) {
                continue;
            }
            let Some(f) = fields.iter().find(|f| f.id == id && is_source(f)) else {
                continue;
            };
            let Some(have) = lake_type(&f.field_type) else {
                continue;
            };
            match fit(&have, &c.ty) {
                Fit::No => continue,
                other => {
                    chosen = Some((id, via_attnum, via_history, other == Fit::Widen));
                    break;
                }
            }
        }
        // A match in an older schema is a replay of an older shape: it says nothing about
        // which field the column's attnum belongs to now.
        let mut record_attnum = true;
        let id = match chosen {
            Some((id, via_attnum, via_history, widen)) => {
                record_attnum = !via_history;
                let renamed = via_attnum && fields.iter().any(|f| f.id == id && f.name != c.name);
                if renamed {
                    // A dropped column may still hold the name: it keeps its history aside.
                    if let Some(other) = fields.iter_mut().find(|f| f.name == c.name && f.id != id)
                    {
                        notes.push(format!(
                            "kept column {} as {}{before}",
                            other.name, other.name
                        ));
                        other.name = format!("{}{before}", other.name);
                    }
                }
                if let Some(f) = fields.iter_mut().find(|f| f.id == id) {
                    if renamed {
                        notes.push(format!("renamed column {} to {}", f.name, c.name));
                        f.name = c.name.clone();
                    }
                    if widen {
                        let ty = iceberg_type(&c.ty, &mut next_id);
                        notes.push(format!("widened column {} to {ty}", c.name));
                        *f.field_type = ty;
                    }
                }
                id
            }
            None => {
                if let Some(other) = fields.iter_mut().find(|f| f.name == c.name && is_source(f)) {
                    let another_column = matches!(
                        (c.attnum, known.get(&other.id)),
                        (Some(a), Some(b)) if a != *b
                    );
                    if another_column {
                        // Dropped, then added again under the same name.
                        notes.push(format!(
                            "column {} is a new column; the dropped one keeps its history in {}{before}",
                            c.name, c.name
                        ));
                    } else {
                        notes.push(format!(
                            "column {} changed to a type its field cannot hold ({}); its history stays in {}{before}",
                            c.name,
                            c.ty.describe(),
                            c.name
                        ));
                        // PostgreSQL converted the rows without sending them.
                        recopy = true;
                    }
                    other.name = format!("{}{before}", c.name);
                }
                if c.filled_on_add {
                    // ADD COLUMN … DEFAULT: the older rows hold the default, unsent.
                    recopy = true;
                }
                next_id += 1;
                let id = next_id;
                let ty = iceberg_type(&c.ty, &mut next_id);
                notes.push(format!("added column {} ({ty})", c.name));
                added.push(NestedField::optional(id, c.name.clone(), ty));
                id
            }
        };
        if let (Some(a), true) = (c.attnum, record_attnum) {
            attnums.retain(|_, n| *n != a);
            attnums.insert(id, a);
        }
        used.insert(id);
        ids.push(id);
    }
    let schema = if notes.is_empty() {
        None
    } else {
        // Source fields first (new ones after the existing), the `_cdc_*` fields last.
        let (meta, source): (Vec<NestedField>, Vec<NestedField>) =
            fields.into_iter().partition(|f| !is_source(f));
        let all: Vec<NestedFieldRef> = source
            .into_iter()
            .chain(added)
            .chain(meta)
            .map(Into::into)
            .collect();
        Some(
            Schema::builder()
                .with_fields(all)
                .build()
                .map_err(|e| sink_error("cannot build the evolved changelog schema", e))?,
        )
    };
    Ok(Plan {
        ids,
        schema,
        attnums,
        notes,
        recopy,
    })
}

#[cfg(test)]
mod tests;
