//! Exponential backoff with jitter, for every retry of a transient fault (a commit, a reconnect):
//! replicas that met the same fault must not all come back in the same millisecond.

use std::time::Duration;

/// The wait before retry number `attempt` (1 for the first): `first` doubled per attempt, at
/// most `max`, then ±20 %.
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    jitter(first.saturating_mul(factor).min(max))
}

/// `d` ± 20 %.
pub fn jitter(d: Duration) -> Duration {
    // The clock's nanoseconds are random enough to spread processes apart; no RNG needed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.8 + 0.4 * f64::from(nanos % 1000) / 1000.0;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_limit_within_twenty_percent() {
        let first = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        for (attempt, base) in [
            (1, 500.0),
            (2, 1000.0),
            (3, 2000.0),
            (7, 30_000.0),
            (40, 30_000.0),
        ] {
            let ms = backoff(attempt, first, max).as_secs_f64() * 1000.0;
            assert!(
                ms >= base * 0.8 - 1e-6 && ms <= base * 1.2 + 1e-6,
                "{attempt}: {ms}"
            );
        }
    }
}
