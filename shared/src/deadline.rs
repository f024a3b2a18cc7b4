//! The time a request has left. On Lambda the invocation's deadline comes with each
//! request (its context's `deadline`); a wait inside the request (a collector's mark on
//! an upload's bytes, a slot for a password check) ends early enough before it that the
//! answer (a 503 with `Retry-After`) still reaches the client, rather than the gateway's
//! bare error after the function is stopped. Under `depot serve` no deadline is set and
//! waits keep their own bounds.
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// What a wait leaves before the deadline: time to answer, and for the answer to travel.
pub const MARGIN: Duration = Duration::from_secs(3);

/// Runs `f` (a request's handling) with a deadline.
pub async fn scope<F: Future>(at: Instant, f: F) -> F::Output {
    DEADLINE.scope(at, f).await
}

/// The deadline of the running request, if it has one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// When a wait of at most `max` that starts now must end: `max` from now, or the margin
/// before the request's deadline, whichever comes first.
pub fn wait_until(max: Duration) -> Instant {
    let now = Instant::now();
    let cap = now + max;
    match current() {
        Some(d) => d.checked_sub(MARGIN).unwrap_or(now).max(now).min(cap),
        None => cap,
    }
}

/// The deadline an epoch-milliseconds instant (a Lambda context's) is, from now.
pub fn from_epoch_millis(ms: u64) -> Instant {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_end_a_margin_before_the_deadline() {
        let max = Duration::from_secs(30);
        let free = wait_until(max);
        assert!(free > Instant::now() + Duration::from_secs(29), "no deadline: the wait's own bound");
        let at = Instant::now() + Duration::from_secs(10);
        let bounded = scope(at, async { wait_until(max) }).await;
        assert!(
            bounded <= at - MARGIN && bounded > Instant::now() + Duration::from_secs(6),
            "10 s left: 7 s of waiting"
        );
        let near = scope(Instant::now() + Duration::from_secs(1), async { wait_until(max) }).await;
        assert!(near <= Instant::now(), "less than the margin left: no waiting at all");
        let later = from_epoch_millis(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 5000,
        );
        let left = later - Instant::now();
        assert!(left > Duration::from_millis(4800) && left <= Duration::from_secs(5), "{left:?}");
    }
}
