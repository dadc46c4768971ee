//! The SQLSTATEs the console acts on, by name, and the one retry loop for calls that are a
//! single transaction: retried whole after a serialization failure, a deadlock or a lock
//! timeout, so a retry can never double up.

use std::future::Future;
use std::time::Duration;

use crate::core::error::{Error, Result};

/// `serialization_failure`.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// `deadlock_detected`.
pub const DEADLOCK_DETECTED: &str = "40P01";
/// `lock_not_available` (lock_timeout).
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `query_canceled`: pg_cancel_backend, statement_timeout, or the console's own cancel.
pub const QUERY_CANCELED: &str = "57014";
/// `insufficient_privilege`.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// SQLSTATEs after which the whole call is retried: serialization failure, deadlock,
/// lock timeout.
pub fn is_retryable(sqlstate: Option<&str>) -> bool {
    matches!(sqlstate, Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED | LOCK_NOT_AVAILABLE))
}

/// Whether an error is the server cancelling the query.
pub fn is_cancel(e: &Error) -> bool {
    e.sqlstate() == Some(QUERY_CANCELED)
}

/// The SQLSTATE of a sqlx error, without converting it.
pub fn sqlstate_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// Runs `call` until it succeeds, fails for good, or `max_attempts` are used up; sleeps
/// `backoff(attempt)` between attempts. Returns the last result and the attempts made.
pub async fn retrying<T, F, Fut>(max_attempts: u32, backoff: impl Fn(u32) -> Duration, mut call: F) -> (Result<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if is_retryable(e.sqlstate()) && attempt < max_attempts => {
                tokio::time::sleep(backoff(attempt)).await;
            }
            other => return (other, attempt),
        }
    }
}
