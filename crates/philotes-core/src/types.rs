//! The lake types PostgreSQL columns map to.
//!
//! The mapping is part of the changelog table contract (`docs/changelog-tables.md`). It is
//! chosen so that no value changes on its way: numerics keep every digit, timestamps keep
//! their instant, and anything without an exact lake type keeps its PostgreSQL text form.

/// The lake type of a column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ColumnType {
    /// int2 and int4 (Iceberg `int`).
    Int32,
    /// int8 (Iceberg `long`).
    Int64,
    Float32,
    Float64,
    /// numeric(p,s) with 1 <= p <= 38 and 0 <= s <= p.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bool,
    /// text, varchar, char, name, json, jsonb, enums, numeric without an exact decimal type,
    /// and anything else, in PostgreSQL's text form.
    Text,
    Bytea,
    Date,
    /// time without time zone, microseconds.
    Time,
    /// timestamp without time zone, microseconds.
    Timestamp,
    /// timestamptz, microseconds, UTC.
    Timestamptz,
    Uuid,
    /// A one-dimensional array.
    List(Box<ColumnType>),
    /// A composite type: its attributes, in order.
    Struct(Vec<(String, ColumnType)>),
}

impl ColumnType {
    /// A short name for messages and docs.
    pub fn describe(&self) -> String {
        match self {
            ColumnType::Int32 => "int".into(),
            ColumnType::Int64 => "long".into(),
            ColumnType::Float32 => "float".into(),
            ColumnType::Float64 => "double".into(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::Bool => "boolean".into(),
            ColumnType::Text => "string".into(),
            ColumnType::Bytea => "binary".into(),
            ColumnType::Date => "date".into(),
            ColumnType::Time => "time".into(),
            ColumnType::Timestamp => "timestamp".into(),
            ColumnType::Timestamptz => "timestamptz".into(),
            ColumnType::Uuid => "uuid".into(),
            ColumnType::List(e) => format!("list<{}>", e.describe()),
            ColumnType::Struct(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| format!("{n}:{}", t.describe()))
                    .collect();
                format!("struct<{}>", inner.join(","))
            }
        }
    }
}

/// Well-known PostgreSQL type OIDs (from `pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The lake type of a built-in scalar type, or `None` when the OID is not one we know
/// (arrays, enums and domains are resolved from the catalog by the source).
pub fn scalar_type(type_oid: u32, type_modifier: i32) -> Option<ColumnType> {
    use oid::*;
    Some(match type_oid {
        INT2 | INT4 => ColumnType::Int32,
        INT8 | OID => ColumnType::Int64,
        FLOAT4 => ColumnType::Float32,
        FLOAT8 => ColumnType::Float64,
        NUMERIC => numeric_type(type_modifier),
        BOOL => ColumnType::Bool,
        TEXT | VARCHAR | BPCHAR | NAME | CHAR | JSON | JSONB => ColumnType::Text,
        BYTEA => ColumnType::Bytea,
        DATE => ColumnType::Date,
        TIME => ColumnType::Time,
        TIMESTAMP => ColumnType::Timestamp,
        TIMESTAMPTZ => ColumnType::Timestamptz,
        UUID => ColumnType::Uuid,
        _ => return None,
    })
}

/// Whether the sink decodes this type's binary send format, for a column whose lake type is
/// `ty`. Initial copies read such columns in binary (no text formatting in PostgreSQL, no
/// parsing here) and every other column as its text form.
pub fn binary_decodable(type_oid: u32, ty: &ColumnType) -> bool {
    use oid::*;
    matches!(
        (type_oid, ty),
        (BOOL, ColumnType::Bool)
            | (BYTEA, ColumnType::Bytea)
            | (INT2 | INT4, ColumnType::Int32)
            | (INT8, ColumnType::Int64)
            | (FLOAT4, ColumnType::Float32)
            | (FLOAT8, ColumnType::Float64)
            | (TEXT | VARCHAR | BPCHAR | JSON | JSONB, ColumnType::Text)
            | (DATE, ColumnType::Date)
            | (TIME, ColumnType::Time)
            | (TIMESTAMP, ColumnType::Timestamp)
            | (TIMESTAMPTZ, ColumnType::Timestamptz)
            | (UUID, ColumnType::Uuid)
    )
}

/// numeric(p,s) → decimal(p,s) when Iceberg can hold it exactly, else its text form.
pub fn numeric_type(type_modifier: i32) -> ColumnType {
    if type_modifier < 4 {
        return ColumnType::Text; // unconstrained numeric
    }
    let m = type_modifier - 4;
    let precision = (m >> 16) & 0xFFFF;
    // The scale is an 11-bit signed number since PostgreSQL 15 (negative scales exist).
    let raw_scale = m & 0x7FF;
    let scale = if raw_scale & 0x400 != 0 {
        raw_scale - 0x800
    } else {
        raw_scale
    };
    match (u8::try_from(precision), u8::try_from(scale)) {
        (Ok(p), Ok(s)) if (1..=38).contains(&p) && s <= p => ColumnType::Decimal {
            precision: p,
            scale: s,
        },
        _ => ColumnType::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7FF)) + 4
    }

    #[test]
    fn numeric_maps_to_decimal_only_when_exact() {
        assert_eq!(
            numeric_type(typmod(10, 2)),
            ColumnType::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(
            numeric_type(typmod(38, 38)),
            ColumnType::Decimal {
                precision: 38,
                scale: 38
            }
        );
        assert_eq!(numeric_type(typmod(39, 2)), ColumnType::Text);
        assert_eq!(numeric_type(-1), ColumnType::Text);
        assert_eq!(numeric_type(typmod(5, -2)), ColumnType::Text);
        assert_eq!(numeric_type(typmod(2, 5)), ColumnType::Text);
    }

    #[test]
    fn builtins() {
        assert_eq!(scalar_type(oid::INT2, -1), Some(ColumnType::Int32));
        assert_eq!(scalar_type(oid::JSONB, -1), Some(ColumnType::Text));
        assert_eq!(scalar_type(600, -1), None); // point: resolved by the source as text
    }
}
