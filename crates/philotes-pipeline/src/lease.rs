//! Which pipelines this process streams now, that is, holds the lease of (the advisory lock on
//! the source; see `preflight::take_lease`). The lock lives on the source, where the control
//! database cannot see it, so the process keeps its own list: a managed ingest claims work that
//! must run where the pipeline runs (a verification through the API reads the lake the
//! streaming process writes, e.g. its embedded catalog) only for the pipelines listed here,
//! never for one it merely stands by for.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static HELD: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// Listed while alive: made once the lease is taken, dropped when the pipeline ends.
#[derive(Debug)]
pub struct Held(String);

/// List `slot` as streamed by this process until the returned guard is dropped.
pub fn hold(slot: &str) -> Held {
    if let Ok(mut h) = HELD.lock() {
        *h.entry(slot.to_string()).or_default() += 1;
    }
    Held(slot.to_string())
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut h) = HELD.lock()
            && let Some(n) = h.get_mut(&self.0)
        {
            *n -= 1;
            if *n == 0 {
                h.remove(&self.0);
            }
        }
    }
}

/// The slots of the pipelines this process streams now.
pub fn held() -> Vec<String> {
    HELD.lock()
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_listed_while_a_guard_lives() {
        let a = hold("lease_test_a");
        let b = hold("lease_test_a");
        assert!(held().contains(&"lease_test_a".to_string()));
        drop(a);
        assert!(held().contains(&"lease_test_a".to_string()));
        drop(b);
        assert!(!held().contains(&"lease_test_a".to_string()));
    }
}
