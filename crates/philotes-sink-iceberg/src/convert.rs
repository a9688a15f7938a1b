//! PostgreSQL text values into Arrow columns.
//!
//! A row is converted in two steps: every cell is parsed into a [`Value`] first, and only when
//! all cells parsed are they appended to the column builders. A value that cannot be converted
//! therefore never leaves a half-written row behind; the caller gets the column name and the
//! reason, and decides (stop the table, write the event to the dead-letter file).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, FieldRef, Fields};
use philotes_core::ColumnType;

use crate::parse;

/// A parsed value, ready to append.
#[derive(Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Dec(i128),
    Bool(bool),
    Str(&'a str),
    Owned(String),
    Bin(Vec<u8>),
    Bytes(&'a [u8]),
    Uuid([u8; 16]),
    List(Vec<Value<'a>>),
    Struct(Vec<Value<'a>>),
}

/// Parse one text value as `ty`.
pub fn parse_value<'a>(ty: &ColumnType, text: &'a [u8]) -> Result<Value<'a>, String> {
    let s = parse::utf8(text)?;
    parse_str(ty, s).map(|v| match v {
        Value::Owned(o) if o == s => Value::Str(s),
        other => other,
    })
}

fn parse_str<'a>(ty: &ColumnType, s: &'a str) -> Result<Value<'a>, String> {
    Ok(match ty {
        ColumnType::Int32 => Value::I32(parse::int(s)?),
        ColumnType::Int64 => Value::I64(parse::int(s)?),
        ColumnType::Float32 => Value::F32(parse::float32(s)?),
        ColumnType::Float64 => Value::F64(parse::float64(s)?),
        ColumnType::Decimal { precision, scale } => {
            Value::Dec(parse::decimal(s, *precision, *scale)?)
        }
        ColumnType::Bool => Value::Bool(parse::boolean(s)?),
        ColumnType::Text => Value::Str(s),
        ColumnType::Bytea => Value::Bin(parse::bytea(s)?),
        ColumnType::Date => Value::I32(parse::date(s)?),
        ColumnType::Time => Value::I64(parse::time(s)?),
        ColumnType::Timestamp => Value::I64(parse::timestamp(s)?),
        ColumnType::Timestamptz => Value::I64(parse::timestamptz(s)?),
        ColumnType::Uuid => Value::Uuid(parse::uuid(s)?),
        ColumnType::List(elem) => {
            let mut items = Vec::new();
            for e in parse::array_elements(s)? {
                items.push(match e {
                    None => Value::Null,
                    Some(text) => owned(parse_str(elem, &text)?),
                });
            }
            Value::List(items)
        }
        ColumnType::Struct(types) => {
            let fields = parse::composite_fields(s)?;
            if fields.len() != types.len() {
                return Err(format!(
                    "composite value has {} fields, its type {}",
                    fields.len(),
                    types.len()
                ));
            }
            let mut values = Vec::with_capacity(fields.len());
            for (f, (_, ty)) in fields.into_iter().zip(types) {
                values.push(match f {
                    None => Value::Null,
                    Some(text) => owned(parse_str(ty, &text)?),
                });
            }
            Value::Struct(values)
        }
    })
}

/// Detach a value from the temporary string it was parsed from.
fn owned(v: Value<'_>) -> Value<'static> {
    match v {
        Value::Null => Value::Null,
        Value::I32(x) => Value::I32(x),
        Value::I64(x) => Value::I64(x),
        Value::F32(x) => Value::F32(x),
        Value::F64(x) => Value::F64(x),
        Value::Dec(x) => Value::Dec(x),
        Value::Bool(x) => Value::Bool(x),
        Value::Str(s) => Value::Owned(s.to_string()),
        Value::Owned(s) => Value::Owned(s),
        Value::Bin(b) => Value::Bin(b),
        Value::Bytes(b) => Value::Bin(b.to_vec()),
        Value::Uuid(u) => Value::Uuid(u),
        Value::List(items) => Value::List(items.into_iter().map(owned).collect()),
        Value::Struct(items) => Value::Struct(items.into_iter().map(owned).collect()),
    }
}

/// An Arrow builder for one lake column.
pub enum ColumnBuilder {
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Bin(LargeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Uuid(FixedSizeBinaryBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        child: Box<ColumnBuilder>,
    },
    Struct {
        fields: Fields,
        nulls: NullBufferBuilder,
        children: Vec<ColumnBuilder>,
    },
}

impl ColumnBuilder {
    /// A builder producing exactly `data_type` (the table's Arrow type for the column).
    pub fn new(ty: &ColumnType, data_type: &DataType) -> Result<ColumnBuilder, String> {
        let cap = 1024;
        Ok(match (ty, data_type) {
            (ColumnType::Int32, DataType::Int32) => {
                ColumnBuilder::I32(Int32Builder::with_capacity(cap))
            }
            (ColumnType::Int64, DataType::Int64) => {
                ColumnBuilder::I64(Int64Builder::with_capacity(cap))
            }
            (ColumnType::Float32, DataType::Float32) => {
                ColumnBuilder::F32(Float32Builder::with_capacity(cap))
            }
            (ColumnType::Float64, DataType::Float64) => {
                ColumnBuilder::F64(Float64Builder::with_capacity(cap))
            }
            (ColumnType::Decimal { .. }, DataType::Decimal128(p, s)) => {
                ColumnBuilder::Dec(Decimal128Builder::with_capacity(cap), *p, *s)
            }
            (ColumnType::Bool, DataType::Boolean) => {
                ColumnBuilder::Bool(BooleanBuilder::with_capacity(cap))
            }
            (ColumnType::Text, DataType::Utf8) => {
                ColumnBuilder::Str(StringBuilder::with_capacity(cap, cap * 16))
            }
            (ColumnType::Bytea, DataType::LargeBinary) => {
                ColumnBuilder::Bin(LargeBinaryBuilder::with_capacity(cap, cap * 16))
            }
            (ColumnType::Date, DataType::Date32) => {
                ColumnBuilder::Date(Date32Builder::with_capacity(cap))
            }
            (ColumnType::Time, DataType::Time64(_)) => {
                ColumnBuilder::Time(Time64MicrosecondBuilder::with_capacity(cap))
            }
            (ColumnType::Timestamp | ColumnType::Timestamptz, DataType::Timestamp(_, tz)) => {
                ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(cap), tz.clone())
            }
            (ColumnType::Uuid, DataType::FixedSizeBinary(16)) => {
                ColumnBuilder::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16))
            }
            (ColumnType::List(elem), DataType::List(field)) => ColumnBuilder::List {
                field: field.clone(),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(cap),
                child: Box::new(ColumnBuilder::new(elem, field.data_type())?),
            },
            (ColumnType::Struct(types), DataType::Struct(fields))
                if types.len() == fields.len() =>
            {
                let mut children = Vec::with_capacity(types.len());
                for ((_, ty), f) in types.iter().zip(fields.iter()) {
                    children.push(ColumnBuilder::new(ty, f.data_type())?);
                }
                ColumnBuilder::Struct {
                    fields: fields.clone(),
                    nulls: NullBufferBuilder::new(cap),
                    children,
                }
            }
            (ty, dt) => {
                return Err(format!(
                    "lake column type {dt} does not hold {}",
                    ty.describe()
                ));
            }
        })
    }

    /// Append a parsed value; the value's kind always matches the builder (both come from the
    /// same [`ColumnType`]), a mismatch is an internal error.
    pub fn append(&mut self, v: &Value<'_>) -> Result<(), String> {
        match (self, v) {
            (ColumnBuilder::I32(b), Value::Null) => b.append_null(),
            (ColumnBuilder::I64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::F32(b), Value::Null) => b.append_null(),
            (ColumnBuilder::F64(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Dec(b, ..), Value::Null) => b.append_null(),
            (ColumnBuilder::Bool(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Str(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Bin(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Time(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Ts(b, _), Value::Null) => b.append_null(),
            (ColumnBuilder::Uuid(b), Value::Null) => b.append_null(),
            (ColumnBuilder::List { offsets, nulls, .. }, Value::Null) => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
            (
                ColumnBuilder::Struct {
                    nulls, children, ..
                },
                Value::Null,
            ) => {
                // Children keep the struct's length; their slots are hidden by its null.
                for c in children.iter_mut() {
                    c.append(&Value::Null)?;
                }
                nulls.append_null();
            }
            (
                ColumnBuilder::Struct {
                    nulls, children, ..
                },
                Value::Struct(items),
            ) if items.len() == children.len() => {
                for (c, item) in children.iter_mut().zip(items) {
                    c.append(item)?;
                }
                nulls.append_non_null();
            }
            (ColumnBuilder::I32(b), Value::I32(x)) => b.append_value(*x),
            (ColumnBuilder::Date(b), Value::I32(x)) => b.append_value(*x),
            (ColumnBuilder::I64(b), Value::I64(x)) => b.append_value(*x),
            (ColumnBuilder::Time(b), Value::I64(x)) => b.append_value(*x),
            (ColumnBuilder::Ts(b, _), Value::I64(x)) => b.append_value(*x),
            (ColumnBuilder::F32(b), Value::F32(x)) => b.append_value(*x),
            (ColumnBuilder::F64(b), Value::F64(x)) => b.append_value(*x),
            (ColumnBuilder::Dec(b, ..), Value::Dec(x)) => b.append_value(*x),
            (ColumnBuilder::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (ColumnBuilder::Str(b), Value::Str(s)) => b.append_value(s),
            (ColumnBuilder::Str(b), Value::Owned(s)) => b.append_value(s),
            (ColumnBuilder::Bin(b), Value::Bin(x)) => b.append_value(x),
            (ColumnBuilder::Bin(b), Value::Bytes(x)) => b.append_value(x),
            (ColumnBuilder::Uuid(b), Value::Uuid(u)) => {
                b.append_value(u).map_err(|e| e.to_string())?
            }
            (
                ColumnBuilder::List {
                    offsets,
                    nulls,
                    child,
                    ..
                },
                Value::List(items),
            ) => {
                for item in items {
                    child.append(item)?;
                }
                let last = offsets.last().copied().unwrap_or(0);
                let len = i32::try_from(items.len()).map_err(|_| "list too long".to_string())?;
                offsets.push(
                    last.checked_add(len)
                        .ok_or_else(|| "list column overflows".to_string())?,
                );
                nulls.append_non_null();
            }
            (_, v) => {
                return Err(format!(
                    "internal: value {v:?} does not match its column builder"
                ));
            }
        }
        Ok(())
    }

    /// The values appended so far as an array; the builder starts over.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            ColumnBuilder::I32(b) => Arc::new(b.finish()),
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            ),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Bin(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            ColumnBuilder::Uuid(b) => Arc::new(b.finish()),
            ColumnBuilder::List {
                field,
                offsets,
                nulls,
                child,
            } => {
                let values = child.finish()?;
                let offs = std::mem::replace(offsets, vec![0]);
                let list = ListArray::try_new(
                    field.clone(),
                    OffsetBuffer::new(offs.into()),
                    values,
                    nulls.finish(),
                )
                .map_err(|e| e.to_string())?;
                Arc::new(list)
            }
            ColumnBuilder::Struct {
                fields,
                nulls,
                children,
            } => {
                let arrays = children
                    .iter_mut()
                    .map(ColumnBuilder::finish)
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(
                    StructArray::try_new(fields.clone(), arrays, nulls.finish())
                        .map_err(|e| e.to_string())?,
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn parse_then_append_round_trip() {
        let ty = ColumnType::List(Box::new(ColumnType::Int32));
        let field = Arc::new(arrow_schema::Field::new("element", DataType::Int32, true));
        let mut b = ColumnBuilder::new(&ty, &DataType::List(field)).unwrap();
        let v = parse_value(&ty, b"{1,NULL,3}").unwrap();
        b.append(&v).unwrap();
        b.append(&Value::Null).unwrap();
        b.append(&parse_value(&ty, b"{}").unwrap()).unwrap();
        let arr = b.finish().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr.null_count(), 1);
        assert!(parse_value(&ty, b"{1,x}").is_err());
    }

    #[test]
    fn composite_values_become_structs() {
        let ty = ColumnType::Struct(vec![
            ("a".into(), ColumnType::Int32),
            ("b".into(), ColumnType::Text),
            ("c".into(), ColumnType::List(Box::new(ColumnType::Text))),
        ]);
        let v = parse_value(&ty, br#"(1,"x, \"y\"",)"#).unwrap();
        assert_eq!(
            v,
            Value::Struct(vec![
                Value::I32(1),
                Value::Owned("x, \"y\"".into()),
                Value::Null
            ])
        );
        let v = parse_value(&ty, br#"(,"",{q})"#).unwrap();
        assert_eq!(
            v,
            Value::Struct(vec![
                Value::Null,
                Value::Owned(String::new()),
                Value::List(vec![Value::Owned("q".into())])
            ])
        );
        assert!(parse_value(&ty, b"(1,2)").is_err(), "too few fields");
        assert!(parse_value(&ty, b"1,2,3").is_err(), "no parentheses");
        assert!(
            parse_value(&ty, br#"(1,"open,)"#).is_err(),
            "unclosed quote"
        );
    }

    #[test]
    fn a_null_list_of_structs_stays_null() {
        let st = ColumnType::Struct(vec![("a".into(), ColumnType::Int32)]);
        let ty = ColumnType::List(Box::new(st));
        let inner = Fields::from(vec![arrow_schema::Field::new("a", DataType::Int32, true)]);
        let field = Arc::new(arrow_schema::Field::new(
            "element",
            DataType::Struct(inner),
            true,
        ));
        let mut b = ColumnBuilder::new(&ty, &DataType::List(field)).unwrap();
        b.append(&parse_value(&ty, br#"{"(1)",NULL}"#).unwrap())
            .unwrap();
        b.append(&Value::Null).unwrap();
        b.append(&parse_value(&ty, b"{}").unwrap()).unwrap();
        let arr = b.finish().unwrap();
        assert!(!arr.is_null(0) && arr.is_null(1) && !arr.is_null(2));
    }

    #[test]
    fn text_is_borrowed_not_copied() {
        let v = parse_value(&ColumnType::Text, "grüße".as_bytes()).unwrap();
        assert_eq!(v, Value::Str("grüße"));
        assert!(parse_value(&ColumnType::Text, &[0xff, 0xfe]).is_err());
    }
}
