//! The metrics and health server, over real TCP.
#![allow(clippy::unwrap_used)] // test helpers: a failure is the test's failure

use philotes_core::ErrorKind;

/// `GET path` on `addr` through the probe `philotes healthcheck` uses.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    philotes_telemetry::probe(&addr.to_string(), path)
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_liveness_and_readiness() {
    philotes_telemetry::set_pipeline("orders");
    let server = philotes_telemetry::serve("127.0.0.1:0")
        .await
        .unwrap()
        .unwrap();
    let addr = server.addr;
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE philotes_buffer_depth gauge"),
        "{body}"
    );
    assert!(body.contains("philotes_build_info{version="), "{body}");
    assert!(
        body.contains("philotes_buffer_depth{pipeline=\"orders\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("philotes_source_connected{pipeline=\"orders\"} 0"),
        "{body}"
    );

    let health = philotes_telemetry::health();
    health.expect("source", "connecting");
    health.ready("lake");
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "not ready");
    assert_eq!(v["checks"]["source"], "connecting");
    assert_eq!(v["checks"]["lake"], "ok");
    // Liveness does not depend on what readiness waits for.
    let (code, _) = get(addr, "/healthz").await;
    assert_eq!(code, 200);

    health.ready("source");
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    health.not_ready("source", "the source is unreachable: connection refused");
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("connection refused"), "{body}");

    let (code, _) = get(addr, "/nothing").await;
    assert_eq!(code, 404);

    // A taken address is a configuration error naming the setting.
    let err = philotes_telemetry::serve(&addr.to_string())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("--metrics-addr"), "{err}");

    assert!(philotes_telemetry::serve("off").await.unwrap().is_none());
    drop(server);
}
