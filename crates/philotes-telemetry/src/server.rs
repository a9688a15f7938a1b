//! The HTTP server of `/metrics`, `/healthz` and `/readyz`, on its own address.
//!
//! Bound before the role starts its work, so a taken port is an error at start-up naming the
//! setting, not a silent absence of metrics. No authentication: it serves no data and changes
//! nothing, and Prometheus and the kubelet must reach it (the chart's NetworkPolicy limits who
//! can).

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use philotes_core::{Error, ErrorKind, Result};

use crate::health::health;
use crate::metrics::{CONTENT_TYPE, render};

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `off` (or empty): no server.
pub fn is_off(addr: &str) -> bool {
    let a = addr.trim();
    a.is_empty() || a.eq_ignore_ascii_case("off")
}

/// Serve metrics and health at `addr` (`host:port`; port 0 picks a free one), or nothing when
/// `addr` is `off`.
pub async fn serve(addr: &str) -> Result<Option<Server>> {
    if is_off(addr) {
        return Ok(None);
    }
    let fix = "set --metrics-addr (PHILOTES_METRICS_ADDR) to a free host:port, or to `off`";
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot listen on {addr} for metrics and health: {e}; {fix}"),
        )
    })?;
    let bound = listener.local_addr().map_err(|e| {
        Error::new(ErrorKind::Internal, "the metrics listener has no address").with_source(e)
    })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics and health server stopped");
        }
    });
    tracing::info!(addr = %bound, "metrics at /metrics, health at /healthz and /readyz");
    Ok(Some(Server { addr: bound, task }))
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render()).into_response()
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "alive"})).into_response()
}

async fn readyz() -> Response {
    let (ready, body) = health().to_json();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// `GET path` from a role serving at `addr` (as `--metrics-addr` names it; an unspecified host
/// means this machine): its status code and body. For `philotes healthcheck`, which images
/// without a shell or curl run as their health probe.
pub async fn probe(addr: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = match addr.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => addr.to_string(),
    };
    let failed = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::Source,
            format!("{what} {target}: {e}; is the role running with --metrics-addr {addr}?"),
        )
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&target)
            .await
            .map_err(|e| failed("cannot connect to", e))?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {target}\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| failed("cannot ask", e))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| failed("no answer from", e))?;
        Ok::<_, Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Source,
                format!("no answer from {target} within 5 s"),
            )
        })??;
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
