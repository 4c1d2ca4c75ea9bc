//! Polling until a condition holds, with a timeout that fails the test naming what it waited for.

use std::time::{Duration, Instant};

/// Polls `done` every 100 ms until it holds; panics naming `what` after `timeout`. Returns how
/// long it took. For plain threads (child processes, sockets); async tests use [`wait_for`].
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

/// [`wait_until`] inside a tokio test: polls every 20 ms without blocking the runtime.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
