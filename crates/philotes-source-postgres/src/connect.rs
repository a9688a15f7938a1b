//! Connecting to the source: one parsed connection string, two kinds of connection.
//!
//! A source URL serves both a normal SQL connection (tokio-postgres: catalog queries, COPY)
//! and a replication connection (pgwire-replication: slots, exported snapshots, the stream).
//! libpq's `sslmode` values are parsed here once, because tokio-postgres knows only
//! disable/prefer/require and we promise `verify-ca`/`verify-full` as well.

use std::path::PathBuf;
use std::sync::Arc;

use philotes_core::secret::redact_conninfo;
use philotes_core::{Error, ErrorKind, Result, Secret};
use tokio_postgres::config::{Host, SslMode as PgSslMode};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Session settings pinned on every source connection, so values print the same way in COPY
/// output and in the replication stream (UTC instants, ISO dates, exact floats, hex bytea).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// A parsed source connection string.
#[derive(Clone)]
pub struct SourceConn {
    config: tokio_postgres::Config,
    pub host: String,
    pub port: u16,
    pub user: String,
    password: Secret,
    pub dbname: String,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<PathBuf>,
    redacted: String,
    /// What this database is, for error messages ("the source PostgreSQL").
    what: &'static str,
}

impl std::fmt::Debug for SourceConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl SourceConn {
    /// The configured source (`None`: not set; `purpose` ends the error's sentence), parsed,
    /// connected, with `sslmode=prefer` settled on what the server offered.
    pub async fn open(
        source: Option<&Secret>,
        purpose: &str,
    ) -> Result<(SourceConn, tokio_postgres::Client)> {
        let source = source.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "no source: set --source or PHILOTES_SOURCE to the PostgreSQL URL {purpose}"
                ),
            )
        })?;
        let mut conn = SourceConn::parse(source)?;
        let client = conn.connect().await?;
        conn.settle_prefer(&client).await?;
        Ok((conn, client))
    }

    /// Parse a `postgres://` URL or a `key=value` connection string.
    pub fn parse(conninfo: &Secret) -> Result<SourceConn> {
        let raw = conninfo.expose();
        let redacted = redact_conninfo(raw);
        let (rest, ssl_mode, ssl_root_cert) =
            split_ssl_params(raw).map_err(|e| e.with("source", &redacted))?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            Error::new(
                ErrorKind::Config,
                format!("the source connection string is not valid: {e}; write it as postgres://user:password@host:5432/dbname"),
            )
            .with("source", &redacted)
        })?;
        config.options(SESSION_OPTIONS);
        config.application_name("philotes");
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".into());
        let password = Secret::new(
            config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
        );
        let dbname = config
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        if config.get_user().is_none() {
            config.user(&user);
        }
        Ok(SourceConn {
            config,
            host,
            port,
            user,
            password,
            dbname,
            ssl_mode,
            ssl_root_cert,
            redacted,
            what: "the source PostgreSQL",
        })
    }

    /// Name what this database is in error messages (the same parsing and TLS serve the control
    /// database).
    pub fn named(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// Connections opened from now on carry this `application_name` (what `pg_stat_activity`
    /// shows: the control database lists a pool's workers by it).
    pub fn application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// The connection string with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    fn connect_error(&self, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::new(
            ErrorKind::Source,
            format!("cannot connect to {}: check that it runs, that the host, port, user and password are right, and that pg_hba.conf lets this host in", self.what),
        )
        .with("source", &self.redacted)
        .with_source(e)
    }

    /// Open a normal SQL connection; its driver task runs in the background.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        if self.ssl_mode == SslMode::Disable {
            let (client, conn) = self
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| self.connect_error(e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "source connection closed");
                }
            });
            return Ok(client);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.rustls_config()?);
        let (client, conn) = self
            .config
            .connect(tls)
            .await
            .map_err(|e| self.connect_error(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "source connection closed");
            }
        });
        Ok(client)
    }

    /// Settle `sslmode=prefer` into require or disable by asking an open connection whether
    /// it is encrypted, so the replication connections (which cannot fall back) do the same.
    pub async fn settle_prefer(&mut self, client: &tokio_postgres::Client) -> Result<()> {
        if self.ssl_mode != SslMode::Prefer {
            return Ok(());
        }
        let row = client
            .query_one("SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)", &[])
            .await
            .map_err(|e| crate::catalog::source_error("checking whether the connection is encrypted", e))?;
        let ssl: bool = row.get(0);
        self.ssl_mode = if ssl {
            SslMode::Require
        } else {
            SslMode::Disable
        };
        if !ssl {
            tracing::warn!(
                "the source connection is not encrypted (sslmode=prefer and the server offers no TLS); set sslmode=verify-full in production"
            );
        }
        Ok(())
    }

    /// The rustls client configuration for this `sslmode`: `require`/`prefer` encrypt without
    /// checking the certificate (as libpq does), `verify-ca`/`verify-full` check it against
    /// `sslrootcert` or the system's roots, and the host name.
    fn rustls_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ErrorKind::Config, "TLS setup failed").with_source(e))?;
        let config = match self.ssl_mode {
            SslMode::VerifyCa | SslMode::VerifyFull => builder
                .with_root_certificates(self.root_store()?)
                .with_no_client_auth(),
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth(),
        };
        Ok(config)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore> {
        let mut store = rustls::RootCertStore::empty();
        match &self.ssl_root_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("cannot read sslrootcert {}", path.display()),
                    )
                    .with_source(e)
                })?;
                let mut reader = std::io::BufReader::new(pem.as_slice());
                for cert in rustls_pemfile_certs(&mut reader) {
                    store.add(cert).map_err(|e| {
                        Error::new(
                            ErrorKind::Config,
                            format!(
                                "sslrootcert {} holds an unusable certificate",
                                path.display()
                            ),
                        )
                        .with_source(e)
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = store.add(cert);
                }
            }
        }
        if store.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "no CA certificate to verify the source with: set sslrootcert=/path/to/ca.pem in the source URL",
            ));
        }
        Ok(store)
    }

    /// The replication connection settings for slot `slot` and publication `publication`.
    pub fn replication_config(
        &self,
        slot: &str,
        publication: &str,
    ) -> pgwire_replication::ReplicationConfig {
        use pgwire_replication::TlsConfig;
        let tls = match self.ssl_mode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer | SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(self.ssl_root_cert.clone()),
            SslMode::VerifyFull => TlsConfig::verify_full(self.ssl_root_cert.clone()),
        };
        pgwire_replication::ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.expose().to_string(),
            self.dbname.clone(),
            slot.to_string(),
            publication.to_string(),
        )
        .with_port(self.port)
        .with_tls(tls)
        .with_options(SESSION_OPTIONS)
        .with_application_name("philotes")
    }
}

fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut buf = Vec::new();
    if reader.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    rustls::pki_types::CertificateDer::pem_slice_iter(&buf)
        .filter_map(|c| c.ok())
        .collect()
}

/// Remove `sslmode` and `sslrootcert` from a connection string and parse them.
fn split_ssl_params(raw: &str) -> Result<(String, SslMode, Option<PathBuf>)> {
    let mut mode = None;
    let mut root = None;
    let rest = if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        match raw.split_once('?') {
            None => raw.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some(("sslmode", v)) => mode = Some(v.to_string()),
                        Some(("sslrootcert", v)) => root = Some(PathBuf::from(percent_decode(v))),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for kv in raw.split_whitespace() {
            match kv.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_string()),
                Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
                _ => kept.push(kv),
            }
        }
        kept.join(" ")
    };
    let mode = match mode.as_deref() {
        None | Some("prefer") | Some("allow") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
                ),
            ));
        }
    };
    Ok((rest, mode, root))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `sslmode=require` semantics: encrypt, but do not check who answers.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_with_ssl_params_and_hides_password() {
        let c = SourceConn::parse(&Secret::new(
            "postgres://app:hunter2@db.example:6432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
        ))
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()),
            ("db.example", 6432, "app", "shop")
        );
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn keyvalue_form_and_bad_sslmode() {
        let c = SourceConn::parse(&Secret::new(
            "host=h port=5 user=u dbname=d sslmode=disable",
        ))
        .unwrap();
        assert_eq!((c.port, c.ssl_mode), (5, SslMode::Disable));
        let err = SourceConn::parse(&Secret::new("postgres://h/d?sslmode=maybe")).unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = SourceConn::parse(&Secret::new("postgres://u:hunter2@h/d?bogus=1")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
