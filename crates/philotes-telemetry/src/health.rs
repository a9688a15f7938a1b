//! Readiness: the components a role needs, each either ready or failing with a reason.
//!
//! A role names what it depends on when it starts ([`Health::expect`]: the source, the lake,
//! the control database) and reports each as it connects, fails and reconnects. `/readyz` is
//! 200 only when all are ready; otherwise 503 with every failing component and its reason, so
//! `kubectl describe` and the dashboard can say what is wrong without reading the log.
//! Liveness (`/healthz`) does not look here at all.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// The state of one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Ready,
    NotReady(String),
}

/// Readiness of this process's components.
#[derive(Clone, Debug, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
}

static HEALTH: LazyLock<Health> = LazyLock::new(Health::default);

/// The process's readiness (one per process, as the metrics).
pub fn health() -> &'static Health {
    &HEALTH
}

impl Health {
    fn set(&self, component: &'static str, check: Check) {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component, check);
    }

    /// `component` is needed; not ready (for `why`) until [`Health::ready`] is called.
    pub fn expect(&self, component: &'static str, why: &str) {
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        checks
            .entry(component)
            .or_insert_with(|| Check::NotReady(why.to_string()));
    }

    pub fn ready(&self, component: &'static str) {
        self.set(component, Check::Ready);
    }

    pub fn not_ready(&self, component: &'static str, reason: impl Into<String>) {
        self.set(component, Check::NotReady(reason.into()));
    }

    /// Whether every component is ready, and each one's state.
    pub fn report(&self) -> (bool, BTreeMap<&'static str, Check>) {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let ready = checks.values().all(|c| *c == Check::Ready);
        (ready, checks)
    }

    /// The readiness answer as JSON: `{"status": "ready"|"not ready", "checks": {name: "ok" |
    /// reason}}`.
    pub fn to_json(&self) -> (bool, serde_json::Value) {
        let (ready, checks) = self.report();
        let checks: serde_json::Map<String, serde_json::Value> = checks
            .into_iter()
            .map(|(k, c)| {
                let v = match c {
                    Check::Ready => "ok".to_string(),
                    Check::NotReady(r) => r,
                };
                (k.to_string(), serde_json::Value::String(v))
            })
            .collect();
        let status = if ready { "ready" } else { "not ready" };
        (
            ready,
            serde_json::json!({ "status": status, "checks": checks }),
        )
    }
}
