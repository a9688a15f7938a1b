//! PostgreSQL binary send format into [`Value`]s, for the types of
//! [`philotes_core::types::binary_decodable`].
//!
//! Initial copies read these columns in binary: PostgreSQL skips formatting them as text and we
//! skip parsing it, which is most of the cost of a copy. The results are the same values the
//! text parsers give; the tests hold the two side by side.

use philotes_core::ColumnType;
use philotes_core::types::{binary_decodable, oid};

use crate::convert::Value;
use crate::parse::{self, US_PER_DAY};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Decode one value of a column of type `type_oid` (lake type `ty`).
pub fn decode_binary<'a>(type_oid: u32, ty: &ColumnType, b: &'a [u8]) -> Result<Value<'a>, String> {
    if !binary_decodable(type_oid, ty) {
        return Err(format!(
            "internal: a binary value for type {type_oid} ({}), which is read as text",
            ty.describe()
        ));
    }
    Ok(match type_oid {
        oid::BOOL => Value::Bool(fixed::<1>(b)?[0] != 0),
        oid::BYTEA => Value::Bytes(b),
        oid::INT2 => Value::I32(i32::from(i16::from_be_bytes(fixed(b)?))),
        oid::INT4 => Value::I32(i32::from_be_bytes(fixed(b)?)),
        oid::INT8 => Value::I64(i64::from_be_bytes(fixed(b)?)),
        // PostgreSQL holds every NaN equal (`-'NaN'` has another sign bit); the lake gets the
        // one NaN the text form parses to, whichever path a value came by.
        oid::FLOAT4 => Value::F32(match f32::from_be_bytes(fixed(b)?) {
            v if v.is_nan() => f32::NAN,
            v => v,
        }),
        oid::FLOAT8 => Value::F64(match f64::from_be_bytes(fixed(b)?) {
            v if v.is_nan() => f64::NAN,
            v => v,
        }),
        oid::JSONB => match b.split_first() {
            Some((1, text)) => Value::Str(parse::utf8(text)?),
            _ => return Err("jsonb value of an unknown binary version".into()),
        },
        oid::DATE => Value::I32(date(i32::from_be_bytes(fixed(b)?))?),
        oid::TIME => {
            let us = i64::from_be_bytes(fixed(b)?);
            if !(0..=US_PER_DAY).contains(&us) {
                return Err(format!("{us} µs is not a time of day"));
            }
            Value::I64(us)
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => Value::I64(timestamp(i64::from_be_bytes(fixed(b)?))?),
        oid::UUID => Value::Uuid(fixed(b)?),
        // text, varchar, bpchar (padded, as its text form), json: the text itself.
        _ => Value::Str(parse::utf8(b)?),
    })
}

/// A binary value in (close to) PostgreSQL's text form, for messages and the dead-letter file;
/// `None` when it does not decode.
pub fn binary_as_text(type_oid: u32, ty: &ColumnType, b: &[u8]) -> Option<String> {
    let infinite = |negative: bool| Some(if negative { "-infinity" } else { "infinity" }.into());
    match (type_oid, b.len()) {
        (oid::DATE, 4) if matches!(i32::from_be_bytes(fixed(b).ok()?), i32::MAX | i32::MIN) => {
            return infinite(b[0] & 0x80 != 0);
        }
        (oid::TIMESTAMP | oid::TIMESTAMPTZ, 8)
            if matches!(i64::from_be_bytes(fixed(b).ok()?), i64::MAX | i64::MIN) =>
        {
            return infinite(b[0] & 0x80 != 0);
        }
        _ => {}
    }
    let micros = |us: i64| chrono::DateTime::from_timestamp_micros(us).map(|t| t.naive_utc());
    Some(match decode_binary(type_oid, ty, b).ok()? {
        Value::Null => return None,
        Value::I32(d) if type_oid == oid::DATE => chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::TimeDelta::days(i64::from(d)))?
            .to_string(),
        Value::I64(us) if type_oid == oid::TIME => {
            let t = chrono::NaiveTime::MIN + chrono::TimeDelta::microseconds(us);
            t.format("%H:%M:%S%.f").to_string()
        }
        Value::I64(us) if type_oid == oid::TIMESTAMP => micros(us)?.to_string(),
        Value::I64(us) if type_oid == oid::TIMESTAMPTZ => format!("{}+00", micros(us)?),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => if x { "t" } else { "f" }.into(),
        Value::Str(s) => s.to_string(),
        Value::Uuid(u) => uuid::Uuid::from_bytes(u).to_string(),
        Value::Bytes(b) => format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
        _ => return None,
    })
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(b).map_err(|_| {
        format!(
            "a binary value of {} bytes where {N} were expected",
            b.len()
        )
    })
}

fn date(days: i32) -> Result<i32, String> {
    match days {
        i32::MAX => Ok(parse::INFINITY_DAYS),
        i32::MIN => Ok(parse::MINUS_INFINITY_DAYS),
        d => d
            .checked_add(PG_EPOCH_DAYS)
            .ok_or_else(|| format!("date {d} days after 2000-01-01 is out of range")),
    }
}

fn timestamp(us: i64) -> Result<i64, String> {
    match us {
        i64::MAX => Ok(parse::INFINITY_US),
        i64::MIN => Ok(parse::MINUS_INFINITY_US),
        u => u
            .checked_add(PG_EPOCH_US)
            .ok_or_else(|| format!("timestamp {u} µs after 2000-01-01 is out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::parse_value;

    /// The binary value decodes to what the text form parses to.
    fn same(type_oid: u32, ty: ColumnType, bin: &[u8], text: &str) {
        assert_eq!(
            decode_binary(type_oid, &ty, bin),
            parse_value(&ty, text.as_bytes()),
            "{text}"
        );
    }

    #[test]
    fn every_nan_decodes_to_the_one_the_text_form_gives() {
        let neg = (-f64::NAN).to_be_bytes();
        match (
            decode_binary(oid::FLOAT8, &ColumnType::Float64, &neg),
            parse_value(&ColumnType::Float64, b"NaN"),
        ) {
            (Ok(Value::F64(a)), Ok(Value::F64(b))) => assert_eq!(a.to_bits(), b.to_bits()),
            other => panic!("{other:?}"),
        }
        let neg = (-f32::NAN).to_be_bytes();
        match decode_binary(oid::FLOAT4, &ColumnType::Float32, &neg) {
            Ok(Value::F32(a)) => assert_eq!(a.to_bits(), f32::NAN.to_bits()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn binary_and_text_forms_agree() {
        same(oid::BOOL, ColumnType::Bool, &[1], "t");
        same(oid::INT2, ColumnType::Int32, &(-2i16).to_be_bytes(), "-2");
        same(
            oid::INT4,
            ColumnType::Int32,
            &i32::MIN.to_be_bytes(),
            "-2147483648",
        );
        same(
            oid::INT8,
            ColumnType::Int64,
            &i64::MAX.to_be_bytes(),
            "9223372036854775807",
        );
        same(
            oid::FLOAT4,
            ColumnType::Float32,
            &1.5f32.to_be_bytes(),
            "1.5",
        );
        same(
            oid::FLOAT8,
            ColumnType::Float64,
            &(-0.25f64).to_be_bytes(),
            "-0.25",
        );
        same(oid::TEXT, ColumnType::Text, "héllo".as_bytes(), "héllo");
        same(oid::BPCHAR, ColumnType::Text, b"ab  ", "ab  ");
        same(
            oid::DATE,
            ColumnType::Date,
            &0i32.to_be_bytes(),
            "2000-01-01",
        );
        same(
            oid::DATE,
            ColumnType::Date,
            &(-730_119i32).to_be_bytes(),
            "0001-01-01",
        );
        same(
            oid::TIME,
            ColumnType::Time,
            &US_PER_DAY.to_be_bytes(),
            "24:00:00",
        );
        same(
            oid::TIMESTAMPTZ,
            ColumnType::Timestamptz,
            &1_000_001i64.to_be_bytes(),
            "2000-01-01 00:00:01.000001+00",
        );
        same(
            oid::TIMESTAMP,
            ColumnType::Timestamp,
            &(-PG_EPOCH_US).to_be_bytes(),
            "1970-01-01 00:00:00",
        );
        let u = [0x12u8; 16];
        same(
            oid::UUID,
            ColumnType::Uuid,
            &u,
            "12121212-1212-1212-1212-121212121212",
        );
        // bytea and jsonb differ in form, not in value.
        assert_eq!(
            decode_binary(oid::BYTEA, &ColumnType::Bytea, &[0, 255]),
            Ok(Value::Bytes(&[0, 255]))
        );
        assert_eq!(
            decode_binary(oid::JSONB, &ColumnType::Text, b"\x01{\"a\": 1}"),
            Ok(Value::Str("{\"a\": 1}"))
        );
    }

    #[test]
    fn binary_values_render_as_text() {
        let text = |type_oid, ty, b: &[u8]| binary_as_text(type_oid, &ty, b);
        assert_eq!(
            text(oid::INT4, ColumnType::Int32, &7i32.to_be_bytes()).as_deref(),
            Some("7")
        );
        assert_eq!(
            text(
                oid::TIMESTAMPTZ,
                ColumnType::Timestamptz,
                &i64::MAX.to_be_bytes()
            )
            .as_deref(),
            Some("infinity")
        );
        assert_eq!(
            text(oid::DATE, ColumnType::Date, &i32::MIN.to_be_bytes()).as_deref(),
            Some("-infinity")
        );
        assert_eq!(
            text(
                oid::TIMESTAMPTZ,
                ColumnType::Timestamptz,
                &1_500_000i64.to_be_bytes()
            )
            .as_deref(),
            Some("2000-01-01 00:00:01.500+00")
        );
        assert_eq!(
            text(oid::DATE, ColumnType::Date, &(-1i32).to_be_bytes()).as_deref(),
            Some("1999-12-31")
        );
        assert_eq!(
            text(oid::BYTEA, ColumnType::Bytea, &[0, 255]).as_deref(),
            Some("\\x00ff")
        );
        assert_eq!(text(oid::INT4, ColumnType::Int32, &[1]), None);
    }

    #[test]
    fn bad_binary_values_are_errors() {
        for (type_oid, ty, b) in [
            (oid::INT4, ColumnType::Int32, &[0u8, 1][..]),
            (oid::TIME, ColumnType::Time, &(-1i64).to_be_bytes()[..]),
            (oid::JSONB, ColumnType::Text, &b"\x02{}"[..]),
            (oid::TEXT, ColumnType::Text, &[0xff][..]),
            (oid::NUMERIC, ColumnType::Text, &[0][..]),
            (oid::INT8, ColumnType::Int32, &[0; 8][..]),
        ] {
            assert!(decode_binary(type_oid, &ty, b).is_err(), "{type_oid} {b:?}");
        }
    }

    #[test]
    fn infinities_map_as_their_text_forms_do() {
        same(
            oid::DATE,
            ColumnType::Date,
            &i32::MAX.to_be_bytes(),
            "infinity",
        );
        same(
            oid::DATE,
            ColumnType::Date,
            &i32::MIN.to_be_bytes(),
            "-infinity",
        );
        same(
            oid::TIMESTAMP,
            ColumnType::Timestamp,
            &i64::MAX.to_be_bytes(),
            "infinity",
        );
        same(
            oid::TIMESTAMPTZ,
            ColumnType::Timestamptz,
            &i64::MIN.to_be_bytes(),
            "-infinity",
        );
    }
}
