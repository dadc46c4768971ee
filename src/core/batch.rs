//! A batch of rollbacks as the domain sees it: the orders, what happened to each, the
//! summary of a run and the live figures of one in progress, and the order file format.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::core::error::{Error, Result};

/// One order to roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    /// The order.
    pub order_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
}

/// What happened to one order.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Rolled back now.
    RolledBack {
        /// Cash given back.
        refunded: Decimal,
        /// Margin released.
        margin_released: Decimal,
        /// Attempts it took.
        attempts: u32,
    },
    /// Rolled back before (a rerun, or another operator).
    AlreadyRolledBack,
    /// Refused by the database, with its reason; nothing changed.
    Refused {
        /// The stable error code.
        error_code: String,
        /// The explanation.
        message: String,
    },
    /// An error the retries did not get past.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Not attempted: the batch was cancelled first.
    NotAttempted,
}

/// The end of a batch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// The batch id on the audit rows.
    pub batch_id: Uuid,
    /// Orders in the batch.
    pub total: usize,
    /// Rolled back by this run.
    pub rolled_back: usize,
    /// Found already rolled back.
    pub already_rolled_back: usize,
    /// Refused, per order, with the reason.
    pub refused: Vec<(Uuid, String, String)>,
    /// Failed, per order, with the error.
    pub failed: Vec<(Uuid, String)>,
    /// Not attempted because the batch was cancelled.
    pub not_attempted: usize,
    /// Cash given back by this run.
    pub refunded: Decimal,
    /// Margin released by this run.
    pub margin_released: Decimal,
    /// Retries that were needed.
    pub retries: u64,
    /// Wall time.
    pub elapsed_ms: u128,
    /// Whether the batch was cancelled.
    pub cancelled: bool,
}

impl Summary {
    /// What happened to the orders, in one sentence: "58 rolled back, 2 already rolled back,
    /// 0 refused, 0 failed", and how many were not attempted when any were not.
    pub fn outcome_sentence(&self) -> String {
        let mut s = format!(
            "{} rolled back, {} already rolled back, {} refused, {} failed",
            self.rolled_back,
            self.already_rolled_back,
            self.refused.len(),
            self.failed.len()
        );
        if self.not_attempted > 0 {
            s.push_str(&format!(", {} not attempted", self.not_attempted));
        }
        s
    }

    /// True when every order is now rolled back.
    pub fn complete(&self) -> bool {
        self.refused.is_empty() && self.failed.is_empty() && self.not_attempted == 0 && !self.cancelled
    }
}

/// Reads the order ids of a `--orders` file: one per line; blank lines and `#` comments
/// are skipped. A malformed line is an error naming it, and nothing runs.
pub fn parse_order_file(text: &str) -> Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // A byte-order mark (an editor's) is not part of the first id.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let id = Uuid::parse_str(line).map_err(|_| {
            // The line as far as an id would reach: a junk line may be megabytes long.
            let shown: String = line.chars().take(48).collect();
            let more = if line.chars().nth(48).is_some() { "…" } else { "" };
            Error::BadInput(format!(
                "line {}: not an order id (UUID): {}{more}",
                n + 1,
                crate::core::sanitize::line(&shown)
            ))
        })?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(Error::BadInput("the file lists no order ids".into()));
    }
    Ok(ids)
}

/// Live figures of a running batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRun {
    /// Orders finished.
    pub done: u64,
    /// Orders in the batch.
    pub total: u64,
    /// Rolled back.
    pub rolled_back: u64,
    /// Refused or failed.
    pub problems: u64,
    /// Cash given back by the orders heard of so far.
    pub refunded: rust_decimal::Decimal,
    /// The latest outcomes, newest first.
    pub recent: VecDeque<(BatchItem, Outcome)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_file_skips_comments_and_names_bad_lines() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let text = format!("# burst\n{a}\n\n  {b}  # second\n{a}\n");
        assert_eq!(parse_order_file(&text).ok(), Some(vec![a, b]));
        let err = parse_order_file(&format!("{a}\nnot-a-uuid\n")).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("line 2: not an order id (UUID): not-a-uuid"));
        assert!(parse_order_file("# nothing\n").is_err());
        assert_eq!(parse_order_file(&format!("\u{feff}{a}\r\n{b}\r\n")).ok(), Some(vec![a, b]));
        let long = parse_order_file(&"x".repeat(10_000_000)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(long.len() < 100 && long.ends_with('…'), "{long}");
    }
}
