//! The SQLSTATEs the console acts on, by name, and the one retry loop for calls that are a
//! single transaction: retried whole after a serialization failure, a deadlock or a lock
//! timeout, so a retry can never double up.

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

/// Whether a call that failed with `e` may nevertheless have committed: the server did not
/// answer with an error of the statement (the connection broke, the reply was cut or did
/// not parse, the server went away). Such a call's result is read back from the database
/// before anything is reported. An error the statement itself raised (a SQLSTATE other
/// than the server going away) rolled its transaction back.
pub fn may_have_committed(e: &Error) -> bool {
    match e {
        Error::Database(d) => d.code.is_none(),
        Error::Unreachable(_) | Error::UnexpectedAnswer { .. } | Error::Task { .. } => true,
        _ => false,
    }
}

/// The retry rule, in one place: after an attempt, another is made only for a retryable
/// error, while attempts are left and the caller's backoff gives a wait (`None`: the work
/// was cancelled).
///
/// ```text
/// let mut retry = Retry::new(8);
/// let result = loop {
///     let r = call(&mut *conn).await;
///     if !retry.again(&r, |n| Some(Duration::from_millis(10 << n))).await {
///         break r;
///     }
/// };
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    max_attempts: u32,
    attempt: u32,
}

impl Retry {
    /// At most `max_attempts` attempts in all.
    pub fn new(max_attempts: u32) -> Self {
        Retry { max_attempts, attempt: 1 }
    }

    /// Attempts made so far (the current one included).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Whether to try again after `result`; when so, it has waited the backoff.
    pub async fn again<T>(&mut self, result: &Result<T>, backoff: impl FnOnce(u32) -> Option<Duration>) -> bool {
        let Err(e) = result else { return false };
        if !is_retryable(e.sqlstate()) || self.attempt >= self.max_attempts {
            return false;
        }
        let Some(wait) = backoff(self.attempt) else { return false };
        tokio::time::sleep(wait).await;
        self.attempt += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::DbErrorText;

    fn failure(code: &str) -> Error {
        Error::Database(DbErrorText { code: Some(code.into()), message: "x".into() })
    }

    async fn run(max: u32, results: &[Result<u32>], cancel_at: Option<u32>) -> (Option<u32>, u32) {
        let mut retry = Retry::new(max);
        let mut calls = 0;
        loop {
            let r = match &results[calls.min(results.len() - 1)] {
                Ok(v) => Ok(*v),
                Err(e) => Err(failure(e.sqlstate().unwrap_or_default())),
            };
            calls += 1;
            let backoff = |n| (Some(n) != cancel_at).then_some(Duration::ZERO);
            if !retry.again(&r, backoff).await {
                return (r.ok(), retry.attempts());
            }
        }
    }

    #[tokio::test]
    async fn retries_only_what_can_succeed_later_and_stops_when_told() {
        let deadlock = || Err(failure(DEADLOCK_DETECTED));
        assert_eq!(run(5, &[deadlock(), deadlock(), Ok(7)], None).await, (Some(7), 3));
        // Not retryable: one attempt.
        assert_eq!(run(5, &[Err(failure("23505"))], None).await, (None, 1));
        // Used up.
        assert_eq!(run(4, &[Err(failure(SERIALIZATION_FAILURE))], None).await, (None, 4));
        // Cancelled after the second attempt: no third.
        assert_eq!(run(5, &[Err(failure(LOCK_NOT_AVAILABLE))], Some(2)).await, (None, 2));
    }
}
