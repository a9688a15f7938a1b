//! What every long-running role tells Prometheus and Kubernetes: metrics, liveness, readiness.
//!
//! Why one crate, and why events: every metric Philotes exports is declared once, in
//! [`metrics`], with its name, base unit and help text, and the rest of the code records them
//! only through the typed calls there ([`TableMetrics`] for one table, free functions for the
//! pipeline). So the list in `docs/metrics.md` can be checked against the code (a test renders
//! the registry and compares), labels stay low in cardinality by construction (pipeline, table,
//! a kind — never a key or an LSN), and no crate has to know how Prometheus wants a name spelt.
//!
//! The registry is one per process, like the log. A process that runs one pipeline's role sets
//! the `pipeline` label once at start ([`set_pipeline`]; before that it is `philotes`); a
//! managed role running several labels each pipeline's threads with its own
//! ([`set_thread_pipeline`]) and removes a pipeline's gauges when it lets go of it
//! ([`forget_pipeline`]).
//!
//! [`server`] serves `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` (the process
//! is alive: never depends on another system, so an outage elsewhere does not restart-loop the
//! pods) and `GET /readyz` (every component the role needs is reachable; 503 with the reasons
//! as JSON otherwise), on their own address (`--metrics-addr`).

pub mod health;
pub mod metrics;
pub mod server;

pub use health::{Health, health};
pub use metrics::{
    MaintenancePass, TableMetrics, buffer_depth, error, forget_pipeline, maintained, mirror_failed,
    mirrored, replication_lag, retry, set_pipeline, set_thread_pipeline, slot_status,
    source_connected, worker_leases,
};
pub use server::{Server, probe, serve};
