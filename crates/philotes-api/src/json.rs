//! Request bodies: JSON only, bounded in size, unknown fields refused, every problem named by
//! its field — and checked in full before anything is changed.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A body type's own rules beyond its shape (lengths, allowed characters).
pub trait Validate {
    fn validate(&self) -> Vec<FieldError>;
}

/// A JSON body that parsed into `T` and passed `T`'s validation; also its raw bytes (for the
/// idempotency check).
pub struct Body<T> {
    pub value: T,
    pub raw: axum::body::Bytes,
}

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let raw = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
        let value = parse::<T>(&raw)?;
        let errors = value.validate();
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        Ok(Body { value, raw })
    }
}

/// Parse `raw` as `T`, naming the field of the first problem.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    // Every body is an object (serde would also read a struct from an array of its fields).
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok()
    {
        return Err(ApiError::invalid(vec![FieldError {
            field: String::new(),
            message: "the body must be a JSON object".into(),
        }]));
    }
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("the body is not valid JSON: {inner}"));
        }
        let field = if path == "." { String::new() } else { path };
        // serde's message without its " at line 1 column 9" suffix.
        let message = inner.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        ApiError::invalid(vec![FieldError { field, message }])
    })
}

/// Collects field problems while a body is validated.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(FieldError {
                field: field.to_string(),
                message: message.into(),
            });
        }
    }

    /// A name: 1 to 63 of `a-z 0-9 - _`, starting with a letter or digit.
    pub fn name(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && value
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        self.check(
            ok,
            field,
            "1 to 63 characters of a-z, 0-9, - and _, starting with a letter or a digit",
        );
    }

    /// Text of 1 to `max` characters without control characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        let ok = !value.is_empty()
            && value.chars().count() <= max
            && !value.chars().any(char::is_control);
        self.check(
            ok,
            field,
            format!("1 to {max} characters, no control characters"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
        port: u16,
    }

    #[test]
    fn problems_name_their_field() {
        let e = parse::<Thing>(br#"{"name": "a", "port": "x"}"#).err();
        let p = e.map(|e| e.problem());
        assert_eq!(p.as_ref().map(|p| p.status), Some(422));
        assert_eq!(p.as_ref().map(|p| p.errors[0].field.as_str()), Some("port"));
        let p = parse::<Thing>(br#"{"name": "a", "port": 1, "extra": 1}"#)
            .err()
            .map(|e| e.problem());
        assert!(
            p.as_ref()
                .is_some_and(|p| p.errors[0].message.contains("unknown field `extra`")),
            "{p:?}"
        );
        let p = parse::<Thing>(b"{").err().map(|e| e.problem());
        assert_eq!(p.map(|p| p.status), Some(400));
        let p = parse::<Thing>(br#"{"name": "a", "port": 70000}"#)
            .err()
            .map(|e| e.problem());
        assert_eq!(p.map(|p| p.errors[0].field.clone()), Some("port".into()));
    }

    #[test]
    fn a_page_has_at_most_limit_items_and_a_cursor_only_when_more_follow() {
        let p = ListParams {
            limit: Some(2),
            after: None,
        };
        assert_eq!(
            p.page(vec![1, 2, 3], |i| cursor(*i)),
            (vec![1, 2], Some("2".into()))
        );
        assert_eq!(p.page(vec![1, 2], |i| cursor(*i)), (vec![1, 2], None));
        assert_eq!(p.page(Vec::<i64>::new(), |i| cursor(*i)), (vec![], None));
    }

    #[test]
    fn names() {
        let mut p = Problems::default();
        p.name("a", "prod-db_1");
        assert!(p.0.is_empty());
        for bad in ["", "-x", "Big", "a b", &"x".repeat(64)] {
            let mut p = Problems::default();
            p.name("a", bad);
            assert_eq!(p.0.len(), 1, "{bad}");
        }
    }
}

/// `?limit=&after=` of every list: up to `limit` items (default 50, at most 500) after the
/// cursor `after` (the `next` of the previous page; opaque, lowercase hex).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many items at most (1 to 500; default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page (empty: the first page).
    #[param(pattern = "^[0-9a-f]{0,16}$")]
    pub after: Option<String>,
}

impl ListParams {
    /// Parse the query of `uri`, refusing unknown parameters and bad values with a 4xx.
    pub fn from_uri(uri: &axum::http::Uri) -> Result<ListParams, ApiError> {
        let q = axum::extract::Query::<ListParams>::try_from_uri(uri).map_err(|e| {
            ApiError::invalid(vec![FieldError {
                field: "query".into(),
                message: e.body_text(),
            }])
        })?;
        let mut p = q.0;
        let mut problems = Problems::default();
        if let Some(l) = p.limit {
            problems.check((1..=500).contains(&l), "limit", "between 1 and 500");
        }
        if let Some(a) = &p.after {
            problems.check(
                a.len() <= 16
                    && a.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "after",
                "the `next` of a page this list returned",
            );
        }
        if !problems.0.is_empty() {
            return Err(ApiError::invalid(problems.0));
        }
        if p.after.as_deref() == Some("") {
            p.after = None;
        }
        Ok(p)
    }

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50)
    }

    /// One page of `items` (fetched with `LIMIT limit() + 1`): at most `limit()` of them, and
    /// the `next` cursor (`cursor` of the last) when more follow.
    pub fn page<T>(
        &self,
        mut items: Vec<T>,
        cursor: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let limit = usize::try_from(self.limit()).unwrap_or(usize::MAX);
        if items.len() <= limit {
            return (items, None);
        }
        items.truncate(limit);
        let next = items.last().map(cursor);
        (items, next)
    }

    /// The cursor of a list ordered by a numeric id (0: from the start).
    pub fn after_id(&self) -> i64 {
        self.after
            .as_deref()
            .and_then(|a| u64::from_str_radix(a, 16).ok())
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// The cursor that follows `id` in a list ordered by a numeric id.
pub fn cursor(id: i64) -> String {
    format!("{id:x}")
}

/// A whole number sent as `5432` or `5432.0` (JSON Schema counts both as integers).
pub fn integral<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = serde_json::Number::deserialize(d)?;
    let v = n
        .as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}")))?;
    T::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is out of range")))
}

/// [`integral`], for an optional field.
pub fn integral_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(serde::Deserialize)]
    struct W<T: TryFrom<i64>>(#[serde(deserialize_with = "integral")] T);
    Option::<W<T>>::deserialize(d).map(|o| o.map(|w| w.0))
}

/// A field that is present (even as `null`) is `Some`: in a PATCH, `null` clears a setting
/// and an absent field leaves it as it is.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// [`integral`], for a PATCH field ([`present`]: `null` clears it).
pub fn integral_present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    integral_opt(d).map(Some)
}

/// A nested object: refused when sent as anything else (serde would read a struct from an
/// array of its fields too).
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    let v = serde_json::Value::deserialize(d)?;
    if !v.is_object() {
        return Err(D::Error::custom("expected an object"));
    }
    serde_json::from_value(v).map_err(D::Error::custom)
}

/// [`object`], or `null` for `None`.
pub fn object_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        v if v.is_object() => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected an object")),
    }
}
