//! A wrapper for passwords and keys that never prints its content.
//!
//! Connection strings, S3 keys and catalog tokens travel through configuration, logs and error
//! messages. Wrapping them means a `{:?}` or `{}` anywhere in that path shows `***` instead of
//! the secret; code that really needs the value asks for it with [`Secret::expose`].

use std::fmt;

/// A value that must never appear in logs or errors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that hands it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Replace the password in a PostgreSQL URL (`postgres://user:pw@host/db`) or key/value
/// connection string (`password=pw`) with `***`, for logs and error messages.
pub fn redact_conninfo(conninfo: &str) -> String {
    if let Some(scheme_end) = conninfo.find("://") {
        let rest = &conninfo[scheme_end + 3..];
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &conninfo[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return redact_query_password(conninfo);
    }
    conninfo
        .split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query_password(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let params: Vec<String> = url[q + 1..]
        .split('&')
        .map(|p| {
            if p.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{}?{}", &url[..q], params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_urls_and_keyvalue() {
        assert_eq!(
            redact_conninfo("postgres://app:hunter2@db:5432/shop?sslmode=require"),
            "postgres://app:***@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            redact_conninfo("postgres://db/shop?user=a&password=hunter2"),
            "postgres://db/shop?user=a&password=***"
        );
        assert_eq!(
            redact_conninfo("host=db password=hunter2 user=a"),
            "host=db password=*** user=a"
        );
        assert_eq!(
            redact_conninfo("postgres://app@db/shop"),
            "postgres://app@db/shop"
        );
    }
}
