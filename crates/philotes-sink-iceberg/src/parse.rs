//! Parsers for PostgreSQL's text output, exact to the last digit.
//!
//! The source sessions pin `DateStyle=ISO`, `TimeZone=UTC`, `extra_float_digits=3` and
//! `bytea_output=hex`, so every value arrives in one well-defined form. Each parser accepts that
//! form and rejects anything else with a message; none of them rounds, clamps or guesses.

/// Microseconds per day.
pub(crate) const US_PER_DAY: i64 = 86_400_000_000;

pub type ParseResult<T> = std::result::Result<T, String>;

pub fn utf8(b: &[u8]) -> ParseResult<&str> {
    std::str::from_utf8(b).map_err(|_| "the value is not valid UTF-8".to_string())
}

pub fn int<T: std::str::FromStr>(s: &str) -> ParseResult<T> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an integer of this size"))
}

pub fn float64(s: &str) -> ParseResult<f64> {
    match s {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| format!("`{s}` is not a floating-point number")),
    }
}

pub fn float32(s: &str) -> ParseResult<f32> {
    match s {
        "NaN" => Ok(f32::NAN),
        "Infinity" => Ok(f32::INFINITY),
        "-Infinity" => Ok(f32::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| format!("`{s}` is not a floating-point number")),
    }
}

pub fn boolean(s: &str) -> ParseResult<bool> {
    match s {
        "t" => Ok(true),
        "f" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (t or f)")),
    }
}

/// A numeric's text form as an unscaled integer with exactly `scale` fraction digits.
pub fn decimal(s: &str, precision: u8, scale: u8) -> ParseResult<i128> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty() || !valid(int_part) || !valid(frac_part) {
        return Err(format!(
            "`{s}` cannot be stored as decimal({precision},{scale}): only finite numbers can (NaN and infinity need a text column)"
        ));
    }
    if frac_part.len() > usize::from(scale) {
        return Err(format!(
            "`{s}` has more fraction digits than decimal({precision},{scale}) holds"
        ));
    }
    let int_trimmed = int_part.trim_start_matches('0');
    if int_trimmed.len() + usize::from(scale) > usize::from(precision) {
        return Err(format!("`{s}` does not fit decimal({precision},{scale})"));
    }
    let mut v: i128 = 0;
    for b in int_trimmed.bytes().chain(frac_part.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    for _ in frac_part.len()..usize::from(scale) {
        v *= 10;
    }
    Ok(if negative { -v } else { v })
}

pub fn bytea(s: &str) -> ParseResult<Vec<u8>> {
    let hex = s
        .strip_prefix("\\x")
        .ok_or_else(|| "a bytea value is not in hex format (bytea_output=hex)".to_string())?;
    if hex.len() % 2 != 0 {
        return Err("a bytea hex value has an odd number of digits".into());
    }
    let b = hex.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        let hi = char::from(pair[0]).to_digit(16);
        let lo = char::from(pair[1]).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => return Err("a bytea hex value has a non-hex digit".into()),
        }
    }
    Ok(out)
}

pub fn uuid(s: &str) -> ParseResult<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hi: Option<u32> = None;
    for c in s.chars() {
        if c == '-' {
            continue;
        }
        let d = c
            .to_digit(16)
            .ok_or_else(|| format!("`{s}` is not a UUID"))?;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => {
                if n >= 16 {
                    return Err(format!("`{s}` is not a UUID"));
                }
                out[n] = (h * 16 + d) as u8;
                n += 1;
            }
        }
    }
    if n != 16 || hi.is_some() {
        return Err(format!("`{s}` is not a UUID"));
    }
    Ok(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year numbering).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Split a trailing ` BC` off.
fn era(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

/// `infinity` and `-infinity` have no Iceberg value; they map to the last and first instants
/// every engine can read (documented in docs/changelog-tables.md): 9999-12-31 and 0001-01-01.
pub(crate) const INFINITY_DAYS: i32 = 2_932_896; // 9999-12-31
pub(crate) const MINUS_INFINITY_DAYS: i32 = -719_162; // 0001-01-01
pub(crate) const INFINITY_US: i64 = 253_402_300_799_999_999; // 9999-12-31 23:59:59.999999
pub(crate) const MINUS_INFINITY_US: i64 = -62_135_596_800_000_000; // 0001-01-01 00:00:00

fn infinite_days(s: &str) -> Option<i32> {
    match s {
        "infinity" => Some(INFINITY_DAYS),
        "-infinity" => Some(MINUS_INFINITY_DAYS),
        _ => None,
    }
}

fn infinite_micros(s: &str) -> Option<i64> {
    match s {
        "infinity" => Some(INFINITY_US),
        "-infinity" => Some(MINUS_INFINITY_US),
        _ => None,
    }
}

/// `YYYY-MM-DD` (year may have more than four digits) → days since the Unix epoch.
fn date_part(s: &str, bc: bool) -> ParseResult<i64> {
    let bad = || format!("`{s}` is not an ISO date");
    let (y, m, d) = match date_fields_fast(s.as_bytes()) {
        Some(fields) => fields,
        None => date_fields(s).ok_or_else(bad)?,
    };
    let y = if bc { 1 - y } else { y };
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD` with a four-digit year (the common case, without `str` splitting).
fn date_fields_fast(b: &[u8]) -> Option<(i64, i64, i64)> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    Some((y, two_digits(b, 5)?, two_digits(b, 8)?))
}

fn date_fields(s: &str) -> Option<(i64, i64, i64)> {
    let mut it = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    Some((y.parse().ok()?, m.parse().ok()?, d.parse().ok()?))
}

pub fn date(s: &str) -> ParseResult<i32> {
    if let Some(d) = infinite_days(s) {
        return Ok(d);
    }
    let (body, bc) = era(s);
    let days = date_part(body, bc)?;
    i32::try_from(days).map_err(|_| format!("`{s}` is out of range"))
}

/// `HH:MM:SS[.ffffff]` → microseconds since midnight (24:00:00 is allowed, as in PostgreSQL).
pub fn time(s: &str) -> ParseResult<i64> {
    let bad = || format!("`{s}` is not a time of day");
    let (h, m, sec, us) = match time_fields_fast(s.as_bytes()) {
        Some(fields) => fields,
        None => time_fields(s).ok_or_else(bad)?,
    };
    if !(0..=24).contains(&h) || !(0..60).contains(&m) || !(0..=60).contains(&sec) {
        return Err(bad());
    }
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + us;
    if total > US_PER_DAY {
        return Err(bad());
    }
    Ok(total)
}

/// The two ASCII digits at `b[i..i + 2]`.
fn two_digits(b: &[u8], i: usize) -> Option<i64> {
    match (b.get(i), b.get(i + 1)) {
        (Some(&x @ b'0'..=b'9'), Some(&y @ b'0'..=b'9')) => {
            Some(i64::from(x - b'0') * 10 + i64::from(y - b'0'))
        }
        _ => None,
    }
}

/// `HH:MM:SS[.f{1,6}]` exactly as PostgreSQL prints it (the common case, without `str`
/// splitting); anything else goes to [`time_fields`].
fn time_fields_fast(b: &[u8]) -> Option<(i64, i64, i64, i64)> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (two_digits(b, 0)?, two_digits(b, 3)?, two_digits(b, 6)?);
    let frac = match b.len() {
        8 => &b[8..],
        10..=15 if b[8] == b'.' => &b[9..],
        _ => return None,
    };
    let mut us = 0i64;
    for &d in frac {
        if !d.is_ascii_digit() {
            return None;
        }
        us = us * 10 + i64::from(d - b'0');
    }
    for _ in frac.len()..6 {
        us *= 10;
    }
    Some((h, m, sec, us))
}

/// Hours, minutes, seconds and microseconds of `HH:MM:SS[.ffffff]`, any digit counts.
fn time_fields(s: &str) -> Option<(i64, i64, i64, i64)> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut it = hms.splitn(3, ':');
    let (Some(h), Some(m), Some(sec)) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    let sec: i64 = sec.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut us: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..6 {
        us *= 10;
    }
    Some((h, m, sec, us))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]` → microseconds since the Unix epoch.
pub fn timestamp(s: &str) -> ParseResult<i64> {
    if let Some(us) = infinite_micros(s) {
        return Ok(us);
    }
    let (body, bc) = era(s);
    let (d, t) = body
        .split_once(' ')
        .ok_or_else(|| format!("`{s}` is not an ISO timestamp"))?;
    combine(s, date_part(d, bc)?, time(t)?, 0)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]` → microseconds since the Unix epoch, UTC.
pub fn timestamptz(s: &str) -> ParseResult<i64> {
    if let Some(us) = infinite_micros(s) {
        return Ok(us);
    }
    let (body, bc) = era(s);
    let (d, rest) = body
        .split_once(' ')
        .ok_or_else(|| format!("`{s}` is not an ISO timestamp with time zone"))?;
    let split = rest
        .rfind(['+', '-'])
        .ok_or_else(|| format!("`{s}` has no UTC offset"))?;
    let (t, offset) = rest.split_at(split);
    let sign: i64 = if offset.starts_with('-') { -1 } else { 1 };
    let mut secs = 0i64;
    for (i, part) in offset[1..].split(':').enumerate() {
        let v: i64 = part
            .parse()
            .map_err(|_| format!("`{s}` has a malformed UTC offset"))?;
        secs += v * [3600, 60, 1]
            .get(i)
            .copied()
            .ok_or_else(|| format!("`{s}` has a malformed UTC offset"))?;
    }
    combine(s, date_part(d, bc)?, time(t)?, sign * secs * 1_000_000)
}

fn combine(s: &str, days: i64, time_us: i64, offset_us: i64) -> ParseResult<i64> {
    days.checked_mul(US_PER_DAY)
        .and_then(|v| v.checked_add(time_us))
        .and_then(|v| v.checked_sub(offset_us))
        .ok_or_else(|| format!("`{s}` is out of range"))
}

/// Split a composite value's text form `(a,"b c",)` into its fields (`None` for NULL), undoing
/// `record_out`'s quoting: a field is quoted when it needs to be, `""` and `\\` escape inside.
pub fn composite_fields(s: &str) -> ParseResult<Vec<Option<String>>> {
    let bad = || format!("`{}` is not a composite value", truncate(s));
    let body = s
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .ok_or_else(bad)?;
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false; // inside quotes now
    let mut had_quotes = false; // this field had quotes (so it is not NULL)
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next().ok_or_else(bad)?),
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                had_quotes = true;
            }
            ',' if !quoted => {
                fields.push(field(&mut cur, &mut had_quotes));
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(bad());
    }
    fields.push(field(&mut cur, &mut had_quotes));
    Ok(fields)
}

fn field(cur: &mut String, had_quotes: &mut bool) -> Option<String> {
    let f = if cur.is_empty() && !*had_quotes {
        None
    } else {
        Some(std::mem::take(cur))
    };
    cur.clear();
    *had_quotes = false;
    f
}

/// Split a one-dimensional PostgreSQL array literal into its elements (`None` for NULL).
pub fn array_elements(s: &str) -> ParseResult<Vec<Option<String>>> {
    let body = if s.starts_with('[') {
        return Err(format!(
            "array `{}` has explicit bounds; only arrays starting at index 1 map to a list",
            truncate(s)
        ));
    } else {
        s
    };
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("`{}` is not an array literal", truncate(s)))?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut cur = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'{') {
            return Err(format!(
                "array `{}` has more than one dimension; only one-dimensional arrays map to a list",
                truncate(s)
            ));
        }
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => cur.push(c),
                        None => {
                            return Err(format!("array `{}` ends inside an escape", truncate(s)));
                        }
                    },
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => {
                        return Err(format!("array `{}` has an unterminated quote", truncate(s)));
                    }
                }
            }
        }
        loop {
            match chars.peek() {
                Some(',') | None => break,
                Some(_) if quoted => {
                    return Err(format!(
                        "array `{}` has text after a quoted element",
                        truncate(s)
                    ));
                }
                Some('\\') => {
                    chars.next();
                    if let Some(c) = chars.next() {
                        cur.push(c);
                    }
                }
                Some(&c) => {
                    cur.push(c);
                    chars.next();
                }
            }
        }
        if !quoted && cur.eq_ignore_ascii_case("NULL") {
            out.push(None);
        } else {
            out.push(Some(cur));
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(format!("`{}` is not an array literal", truncate(s))),
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal("123.45", 10, 2), Ok(12345));
        assert_eq!(decimal("-0.5", 10, 2), Ok(-50));
        assert_eq!(decimal("7", 5, 0), Ok(7));
        assert_eq!(
            decimal("99999999999999999999999999999999999999", 38, 0),
            Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(
            decimal("-0.00000000000000000000000000000000000001", 38, 38),
            Ok(-1)
        );
        assert!(decimal("NaN", 10, 2).is_err());
        assert!(decimal("1.234", 10, 2).is_err());
        assert!(decimal("123456789", 10, 2).is_err());
        assert!(decimal("", 10, 2).is_err());
        assert!(decimal("1e5", 10, 2).is_err());
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date("1970-01-01"), Ok(0));
        assert_eq!(date("2000-03-01"), Ok(11_017));
        assert_eq!(date("1969-12-31"), Ok(-1));
        assert_eq!(date("0001-01-01 BC"), Ok(-719_528)); // astronomical year 0
        assert!(date("2023-02-29").is_err());
        assert_eq!(date("infinity"), date("9999-12-31"));
        assert_eq!(date("-infinity"), date("0001-01-01"));
        assert_eq!(
            timestamp("infinity"),
            timestamp("9999-12-31 23:59:59.999999")
        );
        assert_eq!(
            timestamptz("-infinity"),
            timestamptz("0001-01-01 00:00:00+00")
        );
        assert_eq!(time("00:00:01.5"), Ok(1_500_000));
        assert_eq!(time("24:00:00"), Ok(US_PER_DAY));
        assert!(time("25:00:00").is_err());
        assert_eq!(timestamp("1970-01-02 00:00:00.000001"), Ok(US_PER_DAY + 1));
        assert_eq!(timestamptz("1970-01-01 01:00:00+01"), Ok(0));
        assert_eq!(
            timestamptz("1970-01-01 00:00:00-05:30"),
            Ok(5 * 3_600_000_000 + 30 * 60_000_000)
        );
        assert_eq!(
            timestamptz("2024-06-01 12:34:56.789+00"),
            timestamp("2024-06-01 12:34:56.789")
        );
        assert_eq!(date("10000-01-01"), Ok(2_932_897));
    }

    #[test]
    fn fast_paths_agree_with_the_general_parsers() {
        for t in [
            "00:00:00",
            "23:59:59.999999",
            "12:34:56.7",
            "24:00:00",
            "01:02:03.000450",
        ] {
            assert_eq!(time_fields_fast(t.as_bytes()), time_fields(t), "{t}");
        }
        // Not the common shape: left to the general parser, which decides.
        for t in [
            "1:02:03",
            "12:34:56.",
            "12:34:56.1234567",
            "12:34:5x",
            "12:34:56+02",
        ] {
            assert_eq!(time_fields_fast(t.as_bytes()), None, "{t}");
        }
        assert!(time("12:34:56.1234567").is_err());
        assert!(time("12:3a:56").is_err());
        for d in ["1970-01-01", "2024-02-29", "0001-12-31"] {
            assert_eq!(date_fields_fast(d.as_bytes()), date_fields(d), "{d}");
        }
        assert_eq!(date_fields_fast(b"10000-01-01"), None);
        assert_eq!(date_fields_fast(b"2024-0a-01"), None);
        assert!(date("2024-13-01").is_err());
    }

    #[test]
    fn floats_bools_bytes_uuids() {
        assert!(float64("NaN").map(f64::is_nan).unwrap_or(false));
        assert_eq!(float64("-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(float64("1.7976931348623157e+308"), Ok(f64::MAX));
        assert_eq!(float32("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(boolean("t"), Ok(true));
        assert!(boolean("true").is_err());
        assert_eq!(bytea("\\x00ff10"), Ok(vec![0, 255, 16]));
        assert!(bytea("\\x0").is_err());
        assert!(bytea("abc").is_err());
        assert_eq!(
            uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").map(|u| u[0]),
            Ok(0xa0)
        );
        assert!(uuid("a0eebc99").is_err());
    }

    #[test]
    fn arrays() {
        assert_eq!(
            array_elements(r#"{1,NULL,"NULL","a \"b\", c",x\,y}"#),
            Ok(vec![
                Some("1".into()),
                None,
                Some("NULL".into()),
                Some("a \"b\", c".into()),
                Some("x,y".into())
            ])
        );
        assert_eq!(array_elements("{}"), Ok(vec![]));
        assert_eq!(array_elements(r#"{""}"#), Ok(vec![Some(String::new())]));
        assert!(array_elements("{{1,2},{3,4}}").is_err());
        assert!(array_elements("[0:1]={1,2}").is_err());
        assert!(array_elements("{\"unterminated}").is_err());
    }
}
