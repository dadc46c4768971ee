//! A batch of rollbacks as the domain sees it: the orders, what happened to each, the
//! summary of a run and the live figures of one in progress, and the order file format.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::core::error::{Error, Result};

mod proof;

pub use proof::{OperationTotals, Proof, postcheck, touched_accounts};

/// One order to roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    /// The order.
    pub order_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
}

/// What happened to one order: done (rolled back, or found so), not done (refused, failed,
/// not attempted), or unknown (the call may have committed and the database could not be
/// asked which).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Rolled back by this run.
    RolledBack {
        /// Cash given back.
        refunded: Decimal,
        /// Margin released.
        margin_released: Decimal,
        /// Attempts it took.
        attempts: u32,
        /// The reply was lost; the database's rows show this run rolled it back.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reply_lost: bool,
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
    /// The call may have committed (its reply was lost) and the database could not be
    /// asked: neither counted as done nor as not done until someone looks.
    Unknown {
        /// What cut the reply off.
        error: String,
    },
}

impl Outcome {
    /// Whether the order is known to be rolled back now (by this run or before).
    pub fn done(&self) -> bool {
        matches!(self, Outcome::RolledBack { .. } | Outcome::AlreadyRolledBack)
    }
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
    /// Orders whose call may have committed and whose state could not be read afterwards,
    /// with what cut the reply off.
    pub unknown: Vec<(Uuid, String)>,
    /// Of the orders rolled back, those whose reply was lost and whose rollback by this
    /// run the database's rows prove.
    pub reply_lost: usize,
    /// The users whose orders this run rolled back, each once, sorted.
    #[serde(skip)]
    pub users: Vec<Uuid>,
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

/// What a batch run knows besides its orders' outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTally {
    /// The batch id on the audit rows.
    pub batch_id: Uuid,
    /// Orders in the batch.
    pub total: usize,
    /// Retries that were needed.
    pub retries: u64,
    /// Wall time.
    pub elapsed_ms: u128,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

impl Summary {
    /// The summary of a run from each order's outcome.
    pub fn of(t: BatchTally, outcomes: &[(BatchItem, Outcome)]) -> Summary {
        let mut s = Summary {
            batch_id: t.batch_id,
            total: t.total,
            rolled_back: 0,
            already_rolled_back: 0,
            refused: Vec::new(),
            failed: Vec::new(),
            not_attempted: 0,
            unknown: Vec::new(),
            reply_lost: 0,
            users: Vec::new(),
            refunded: Decimal::ZERO,
            margin_released: Decimal::ZERO,
            retries: t.retries,
            elapsed_ms: t.elapsed_ms,
            cancelled: t.cancelled,
        };
        for (item, outcome) in outcomes {
            match outcome {
                Outcome::RolledBack { refunded, margin_released, reply_lost, .. } => {
                    s.rolled_back += 1;
                    s.reply_lost += usize::from(*reply_lost);
                    s.refunded += refunded;
                    s.margin_released += margin_released;
                    s.users.push(item.user_id);
                }
                Outcome::AlreadyRolledBack => s.already_rolled_back += 1,
                Outcome::Refused { error_code, message } => {
                    s.refused.push((item.order_id, error_code.clone(), message.clone()))
                }
                Outcome::Failed { error } => s.failed.push((item.order_id, error.clone())),
                Outcome::NotAttempted => s.not_attempted += 1,
                Outcome::Unknown { error } => s.unknown.push((item.order_id, error.clone())),
            }
        }
        s.users.sort();
        s.users.dedup();
        s
    }

    /// What happened to the orders, in one sentence: "58 rolled back, 2 already rolled back,
    /// 0 refused, 0 failed", how many of those rolled back were confirmed from the database
    /// after their reply was lost, how many were not attempted, and how many are unknown.
    pub fn outcome_sentence(&self) -> String {
        let lost = match self.reply_lost {
            0 => String::new(),
            n => format!(" ({n} confirmed from the database after the reply was lost)"),
        };
        let mut s = format!(
            "{} rolled back{lost}, {} already rolled back, {} refused, {} failed",
            self.rolled_back,
            self.already_rolled_back,
            self.refused.len(),
            self.failed.len()
        );
        if self.not_attempted > 0 {
            s.push_str(&format!(", {} not attempted", self.not_attempted));
        }
        if !self.unknown.is_empty() {
            s.push_str(&format!(
                ", {} unknown (the reply was lost and the database could not be asked: they may be rolled back)",
                self.unknown.len()
            ));
        }
        s
    }

    /// True when every order is now rolled back.
    pub fn complete(&self) -> bool {
        self.refused.is_empty()
            && self.failed.is_empty()
            && self.unknown.is_empty()
            && self.not_attempted == 0
            && !self.cancelled
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

/// One queue per worker, every order of a user in the same queue and in the given order,
/// so workers never wait on each other's profile locks; each user goes to the least loaded
/// queue. Each order keeps its place in the batch.
pub fn queues_by_user(items: &[BatchItem], workers: usize) -> Vec<Vec<(usize, BatchItem)>> {
    let workers = workers.max(1);
    let mut queues: Vec<Vec<(usize, BatchItem)>> = vec![Vec::new(); workers];
    let mut owner: std::collections::BTreeMap<Uuid, usize> = std::collections::BTreeMap::new();
    let mut load = vec![0usize; workers];
    for (i, item) in items.iter().enumerate() {
        let w = *owner.entry(item.user_id).or_insert_with(|| (0..workers).min_by_key(|&w| load[w]).unwrap_or(0));
        load[w] += 1;
        queues[w].push((i, *item));
    }
    queues
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

    #[test]
    fn a_user_stays_on_one_queue_in_order() {
        let users: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let items: Vec<BatchItem> =
            (0..12).map(|n| BatchItem { order_id: Uuid::new_v4(), user_id: users[n % 3] }).collect();
        let queues = queues_by_user(&items, 2);
        assert_eq!(queues.iter().map(Vec::len).sum::<usize>(), 12);
        for u in &users {
            let holding: Vec<usize> = (0..2).filter(|&q| queues[q].iter().any(|(_, i)| i.user_id == *u)).collect();
            assert_eq!(holding.len(), 1, "a user's orders on one queue");
            let places: Vec<usize> =
                queues[holding[0]].iter().filter(|(_, i)| i.user_id == *u).map(|(p, _)| *p).collect();
            assert!(places.windows(2).all(|w| w[0] < w[1]), "in the given order: {places:?}");
        }
        assert_eq!(queues_by_user(&items, 0).len(), 1);
    }
}
