//! How long the console took to show itself and its first page of orders, measured from
//! the start of `main` and said once in the log: the figures a person waits for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static LAUNCHED: OnceLock<Instant> = OnceLock::new();
static MARKS: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());
static REPORTED: AtomicBool = AtomicBool::new(false);

/// The process's start: the first thing `main` does.
pub fn launched() {
    let _ = LAUNCHED.set(Instant::now());
}

/// Notes that `what` happened now (only until the report is written).
pub(crate) fn mark(what: &'static str) {
    let Some(t0) = LAUNCHED.get() else { return };
    if REPORTED.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(mut m) = MARKS.lock()
        && m.len() < 32
    {
        m.push((what, t0.elapsed()));
    }
}

/// Logs the marks so far in one line, once: when the first page of orders is on screen.
pub(crate) fn report() {
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(mut m) = MARKS.lock() else { return };
    let line = m.iter().map(|(what, at)| format!("{what} {:.1} ms", at.as_secs_f64() * 1000.0)).collect::<Vec<_>>();
    tracing::info!("startup: {}", line.join(", "));
    m.clear();
    m.shrink_to_fit();
}
