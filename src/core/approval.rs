//! Four-eyes approval (migration 19): what the database's policy says, what a request
//! covers, and how a decision reads. The database enforces it; these are its answers.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::format::money;
use crate::core::journal::event;
use crate::core::sanitize::line;

/// What kind of work an approval covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// A batch of orders (a symbol and window, or a file).
    Batch,
    /// One order's whole transaction group.
    Group,
    /// The execution system taken back to an earlier release.
    ReleaseRollback,
    /// The circuit breaker closed.
    BreakerClose,
}

impl ApprovalKind {
    /// The name the database uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Batch => "batch",
            ApprovalKind::Group => "group",
            ApprovalKind::ReleaseRollback => "release_rollback",
            ApprovalKind::BreakerClose => "breaker_close",
        }
    }
}

/// The policy as `approval_policy_show()` answers, with what this login has used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Whether any of it applies.
    pub enabled: bool,
    /// Every release rollback needs a second person.
    pub release_rollback: bool,
    /// At Level 3, every batch and group rollback does.
    pub level3_batches: bool,
    /// At Level 3, closing the circuit breaker does.
    pub level3_breaker_close: bool,
    /// One login may roll back at most this many orders unapproved per window.
    pub batch_orders: i64,
    /// And refund at most this much.
    #[serde(with = "rust_decimal::serde::str")]
    pub batch_refunded: Decimal,
    /// And make at most this many unapproved rollbacks (a batch counts once).
    pub single_limit: i64,
    /// The window, in minutes.
    pub window_minutes: i64,
    /// How long a request waits, and an approval lasts.
    pub expiry_minutes: i64,
    /// The highest level among the incidents open in the database's journal copies.
    pub open_level: i64,
    /// The login asking.
    pub login: String,
    /// What that login rolled back unapproved within the window.
    pub used: PolicyUsed,
    /// When the owner last changed it.
    pub changed_at: Option<DateTime<Utc>>,
    /// Who did.
    pub changed_by: Option<String>,
}

/// A login's unapproved rollbacks within the policy's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyUsed {
    /// Rollbacks (a batch counts once).
    pub operations: i64,
    /// Orders.
    pub orders: i64,
    /// Refunded.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
}

impl ApprovalPolicy {
    /// The policy in lines, for `policy show` and the console.
    pub fn lines(&self) -> Vec<String> {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut out =
            vec![format!("Four-eyes approval: {}", if self.enabled { "ON (enforced by the database)" } else { "OFF" })];
        out.push(format!("  every release rollback needs a second person: {}", yes(self.release_rollback)));
        out.push(format!("  every batch and group rollback at Level 3 does: {}", yes(self.level3_batches)));
        out.push(format!("  closing the circuit breaker at Level 3 does: {}", yes(self.level3_breaker_close)));
        out.push(format!(
            "  without approval one login may, within {} minutes: roll back {} orders, refund {}, make {} rollbacks",
            self.window_minutes,
            self.batch_orders,
            money(self.batch_refunded),
            self.single_limit
        ));
        out.push(format!("  a request waits, and an approval lasts, {} minutes", self.expiry_minutes));
        out.push(format!(
            "  {} has used: {} rollbacks, {} orders, {} refunded",
            line(&self.login),
            self.used.operations,
            self.used.orders,
            money(self.used.refunded)
        ));
        out.push(match self.open_level {
            1..=3 => format!("  open incident level the database sees: {}", self.open_level),
            _ => "  open incident level the database sees: none".into(),
        });
        out
    }
}

/// `approval_needed`: whether work needs a second person, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalNeed {
    /// It does.
    pub required: bool,
    /// Why, one sentence per rule.
    pub reasons: Vec<String>,
    /// Executed orders in it, as the server counts.
    pub orders: i64,
    /// What they refund, as the server counts.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    /// The level the rules were applied at.
    pub level: i64,
}

/// A request as stored (`approval_requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Its id.
    pub id: Uuid,
    /// The operation that will use it.
    pub operation_id: Uuid,
    /// batch, group, release_rollback or breaker_close.
    pub kind: String,
    /// The requester's incident.
    pub incident_id: Option<String>,
    /// The level the requester declared.
    pub level: i16,
    /// Why the work is to be done.
    pub reason: String,
    /// The release, for a release rollback.
    pub target: Option<String>,
    /// Orders in the scope.
    pub order_count: i32,
    /// Of which executed (what will move).
    pub executed_count: i32,
    /// What they refund, as the server counted it.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    /// md5 of the scope.
    pub scope_hash: String,
    /// What the requester saw besides the figures.
    pub preview: serde_json::Value,
    /// Why the policy asks for a second person.
    pub required_because: serde_json::Value,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Who (operator name).
    pub requested_by: String,
    /// With which login.
    pub requested_login: String,
    /// Until when it may be decided, then used.
    pub expires_at: DateTime<Utc>,
    /// approved, denied, cancelled, or none yet.
    pub decision: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who.
    pub decided_by: Option<String>,
    /// With which login.
    pub decided_login: Option<String>,
    /// Why.
    pub decision_reason: Option<String>,
    /// First used.
    pub used_at: Option<DateTime<Utc>>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for a second person.
    Pending,
    /// Approved and not expired.
    Approved,
    /// Denied.
    Denied,
    /// Withdrawn by the requester.
    Cancelled,
    /// Past its time (undecided, or approved and not used in time).
    Expired,
}

impl ApprovalRequest {
    /// Where it stands at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> RequestState {
        match self.decision.as_deref() {
            Some("denied") => RequestState::Denied,
            Some("cancelled") => RequestState::Cancelled,
            Some("approved") if self.used_at.is_some() || now < self.expires_at => RequestState::Approved,
            None if now < self.expires_at => RequestState::Pending,
            _ => RequestState::Expired,
        }
    }

    /// What it covers, in a few words.
    pub fn scope(&self) -> String {
        match self.kind.as_str() {
            "release_rollback" => format!("release rollback to {}", line(self.target.as_deref().unwrap_or("?"))),
            "breaker_close" => "closing the circuit breaker".into(),
            kind => format!(
                "{kind} of {} order(s) ({} executed), refund {}",
                self.order_count,
                self.executed_count,
                money(self.refunded)
            ),
        }
    }

    /// What it covers, in fewer words (for a list row).
    pub fn brief(&self) -> String {
        match self.kind.as_str() {
            "release_rollback" => format!("release -> {}", line(self.target.as_deref().unwrap_or("?"))),
            "breaker_close" => "close the breaker".into(),
            kind => format!("{kind} of {}, {}", self.order_count, money(self.refunded)),
        }
    }

    /// Its state in a word or two, with the decider.
    pub fn state_text(&self, now: DateTime<Utc>) -> String {
        let by = line(self.decided_by.as_deref().unwrap_or("?")).into_owned();
        match self.state(now) {
            RequestState::Pending => {
                format!("WAITING ({} min left)", ((self.expires_at - now).num_seconds().max(0) + 59) / 60)
            }
            RequestState::Approved if self.used_at.is_some() => format!("approved by {by}, used"),
            RequestState::Approved => format!("APPROVED by {by}"),
            RequestState::Denied => format!("DENIED by {by}"),
            RequestState::Cancelled => "withdrawn".into(),
            RequestState::Expired => "expired".into(),
        }
    }

    /// What the requester saw besides the figures, one printable `key: value` per member.
    pub fn preview_items(&self) -> Vec<String> {
        let Some(p) = self.preview.as_object() else { return Vec::new() };
        p.iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => line(s).into_owned(),
                    other => line(&other.to_string()).into_owned(),
                };
                format!("{}: {v}", line(k))
            })
            .collect()
    }

    /// The reasons the policy gave, as text.
    pub fn required_because(&self) -> Vec<String> {
        self.required_because
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(|s| line(s).into_owned())).collect())
            .unwrap_or_default()
    }

    /// The journal's record of an action on it.
    pub fn event(&self, action: &str, reason: &str, by: &str) -> event::Approval {
        event::Approval {
            id: self.id,
            action: action.into(),
            kind: self.kind.clone(),
            orders: u64::try_from(self.order_count).unwrap_or(0),
            refunded: self.refunded,
            target: self.target.clone(),
            reason: reason.into(),
            by: by.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(decision: Option<&str>, used: bool, expires_in: i64) -> ApprovalRequest {
        let now = Utc::now();
        ApprovalRequest {
            id: Uuid::nil(),
            operation_id: Uuid::nil(),
            kind: "batch".into(),
            incident_id: None,
            level: 3,
            reason: "burst".into(),
            target: None,
            order_count: 60,
            executed_count: 60,
            refunded: Decimal::new(8644385313400, 8),
            scope_hash: String::new(),
            preview: serde_json::json!({}),
            required_because: serde_json::json!(["every batch rollback at Level 3 needs a second person"]),
            requested_at: now,
            requested_by: "alice".into(),
            requested_login: "alice".into(),
            expires_at: now + chrono::Duration::minutes(expires_in),
            decision: decision.map(str::to_string),
            decided_at: decision.map(|_| now),
            decided_by: decision.map(|_| "bob".to_string()),
            decided_login: None,
            decision_reason: None,
            used_at: used.then_some(now),
        }
    }

    #[test]
    fn a_request_reads_as_it_stands() {
        let now = Utc::now();
        assert_eq!(request(None, false, 5).state(now), RequestState::Pending);
        assert_eq!(request(None, false, -1).state(now), RequestState::Expired);
        assert_eq!(request(Some("approved"), false, 5).state(now), RequestState::Approved);
        assert_eq!(request(Some("approved"), false, -1).state(now), RequestState::Expired);
        // A batch that began in time goes on using its approval.
        assert_eq!(request(Some("approved"), true, -1).state(now), RequestState::Approved);
        assert_eq!(request(Some("denied"), false, 5).state(now), RequestState::Denied);
        assert_eq!(request(Some("approved"), false, 5).state_text(now), "APPROVED by bob");
        assert_eq!(request(None, false, 5).scope(), "batch of 60 order(s) (60 executed), refund 86443.853134");
    }
}
