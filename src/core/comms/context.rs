//! The incident as message templates see it. Typed here; turned into template variables by
//! [`MessageContext::to_value`], which is the one place that decides names and formats.
//!
//! Absent facts (no audit yet, maintenance never on, no next update at Level 1) are left
//! *undefined*, not `null`: in strict mode printing them is an error that names them, so a
//! template can never print an empty hole or the word "none" by accident.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::cadence;
pub use crate::core::format::money;
use crate::core::workflow::{Level, Phase};

/// The role whose holder signs internal messages.
pub const COMMANDER_ROLE: &str = "Incident Commander";

/// Everything a message template may use. Build with [`MessageContext::new`], then fill in.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContext {
    /// The company signing customer messages.
    pub company: String,
    /// The system concerned, as customers know it.
    pub system: String,
    /// Incident id, e.g. INC-20261126-0748.
    pub incident_id: String,
    /// What happened, in a few words (internal wording).
    pub title: String,
    /// Current level.
    pub level: Level,
    /// Current phase.
    pub phase: Phase,
    /// When the current phase began.
    pub phase_since: DateTime<Utc>,
    /// When the incident began.
    pub started_at: DateTime<Utc>,
    /// When the incident was declared resolved, if it was.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Impact began, detected, mitigated, resolved, as the commander set them.
    pub times: IncidentTimes,
    /// When the incident was closed and why, if it was: no update is due after it.
    pub closed: Option<(DateTime<Utc>, String)>,
    /// The time the message is filled at.
    pub now: DateTime<Utc>,
    /// Time spent in each phase so far, in order.
    pub phases: Vec<PhaseSpan>,
    /// Orders affected (counted by the console).
    pub orders_affected: u64,
    /// Users affected (counted by the console).
    pub users_affected: u64,
    /// Every rollback attempted, in order.
    pub rollbacks: Vec<RollbackRecord>,
    /// Maintenance mode now.
    pub maintenance: MaintenanceState,
    /// Every period maintenance mode was on, in order.
    pub maintenance_periods: Vec<MaintenancePeriod>,
    /// Release and service rollbacks (Level 3), in order: when, and what happened.
    pub system_rollbacks: Vec<(DateTime<Utc>, String)>,
    /// Who holds which role, in display order.
    pub roles: Vec<RoleAssignment>,
    /// When the next internal update is due (`None`: on change, Level 1).
    pub next_update_due: Option<DateTime<Utc>>,
    /// When the next customer notice is due, if there is a deadline.
    pub next_customer_notice_due: Option<DateTime<Utc>>,
    /// The latest ledger audit, if one ran.
    pub audit: Option<AuditResult>,
    /// Level changes, in order.
    pub level_history: Vec<LevelChange>,
    /// The journal, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Messages copied or exported, in order.
    pub messages_sent: Vec<SentMessage>,
    /// Checklist items neither ticked nor skipped.
    pub open_items: Vec<OpenItem>,
    /// The journal's state, for the report's closing line.
    pub journal: Option<JournalSummary>,
    /// Internal identifiers known to the incident; never allowed in customer text.
    pub internal: InternalRefs,
    /// Values a person typed for the templates' fields (impact, estimated resolution, ...).
    pub fields: BTreeMap<String, String>,
    /// Fields a person explicitly chose not to fill.
    pub waived: BTreeSet<String>,
}

/// The incident's times as messages say them. Impact began is never guessed: unset, it
/// is absent, and the duration counts from the detection instead (and says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentTimes {
    /// When customers were first affected, with where the time came from.
    pub impact_began: Option<(DateTime<Utc>, String)>,
    /// When it was detected (the incident's opening unless set).
    pub detected: DateTime<Utc>,
    /// Where the detection time came from ("incident opened" unless set).
    pub detected_source: String,
    /// When the harm stopped spreading, if set.
    pub mitigated: Option<DateTime<Utc>>,
    /// When service was restored, if set.
    pub resolved: Option<DateTime<Utc>>,
}

impl IncidentTimes {
    /// Only the detection known: the incident's opening.
    pub fn detected_at_opening(opened: DateTime<Utc>) -> Self {
        IncidentTimes {
            impact_began: None,
            detected: opened,
            detected_source: "incident opened".into(),
            mitigated: None,
            resolved: None,
        }
    }
}

/// Time spent in one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSpan {
    /// The phase.
    pub phase: Phase,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` for the current phase.
    pub ended_at: Option<DateTime<Utc>>,
}

/// One rollback, with the checks around it.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackRecord {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The order named in the call (internal).
    pub order_id: String,
    /// Its owner (internal).
    pub user_id: String,
    /// "order" or "transaction" (every order of the order's transaction).
    pub scope: String,
    /// The reason given.
    pub reason: String,
    /// Whether it rolled back.
    pub succeeded: bool,
    /// "rolled_back" or the stable error code.
    pub outcome: String,
    /// False for a rollback intended whose outcome the journal does not have: it may have
    /// moved money or not, and only the database can say.
    pub outcome_recorded: bool,
    /// Orders it reversed.
    pub orders_reversed: u64,
    /// Amount returned to the user, commission included.
    pub refunded: Decimal,
    /// The pre-check before it, if one ran.
    pub precheck: Option<CheckResult>,
    /// The post-check after it, if one ran.
    pub postcheck: Option<CheckResult>,
}

/// The result of a pre-check or post-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Ready (pre-check) or successful (post-check).
    pub passed: bool,
    /// Each check.
    pub checks: Vec<CheckLine>,
}

/// One check of a pre-check or post-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// Its name.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found, if it said.
    pub detail: Option<String>,
}

/// Maintenance mode now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceState {
    /// Whether new orders are refused.
    pub on: bool,
    /// Since when (when on).
    pub since: Option<DateTime<Utc>>,
    /// Why (when on).
    pub reason: Option<String>,
    /// Symbols whose new orders are stopped one by one (the others trade), sorted.
    pub symbols: Vec<String>,
}

/// One period of maintenance mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenancePeriod {
    /// Turned on at.
    pub from: DateTime<Utc>,
    /// Turned off at; `None` while still on.
    pub until: Option<DateTime<Utc>>,
    /// Why.
    pub reason: String,
}

/// A person in a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The role, e.g. "Database Admin".
    pub role: String,
    /// The person's name.
    pub name: String,
}

/// The result of `ledger_audit()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditResult {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Invariant violations found; 0 = consistent.
    pub violations: u64,
}

/// A level change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelChange {
    /// When.
    pub at: DateTime<Utc>,
    /// From.
    pub from: Level,
    /// To.
    pub to: Level,
    /// Why (required when changing the level).
    pub reason: String,
    /// Who.
    pub operator: String,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub operator: String,
    /// What kind of action, e.g. "rollback", "maintenance", "note".
    pub kind: String,
    /// What happened.
    pub text: String,
}

/// A message copied or exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// When.
    pub at: DateTime<Utc>,
    /// Which template.
    pub template: String,
    /// The file written, if any.
    pub path: Option<String>,
}

/// A checklist item still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenItem {
    /// Its phase.
    pub phase: Phase,
    /// The item.
    pub item: String,
    /// The role or person it is assigned to.
    pub assignee: Option<String>,
}

/// The journal's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSummary {
    /// Number of entries.
    pub entries: u64,
    /// Hash of the last entry.
    pub final_hash: String,
    /// Whether the chain was verified when the report was written.
    pub verified: bool,
}

/// Internal identifiers: the templates for internal audiences may show them, customer
/// text must not contain them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalRefs {
    /// Order ids involved.
    pub order_ids: Vec<String>,
    /// User ids involved.
    pub user_ids: Vec<String>,
    /// Database and service host names.
    pub hosts: Vec<String>,
}

impl MessageContext {
    /// A context for an incident with nothing recorded yet; the cadence deadlines are
    /// computed from the level as if no update had been sent.
    pub fn new(
        incident_id: impl Into<String>,
        title: impl Into<String>,
        level: Level,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        MessageContext {
            company: "Trade-X-Pro-Global".to_string(),
            system: "Order Execution Platform".to_string(),
            incident_id: incident_id.into(),
            title: title.into(),
            level,
            phase: Phase::Assessment,
            phase_since: started_at,
            started_at,
            resolved_at: None,
            times: IncidentTimes::detected_at_opening(started_at),
            closed: None,
            now,
            phases: vec![PhaseSpan { phase: Phase::Assessment, started_at, ended_at: None }],
            orders_affected: 0,
            users_affected: 0,
            rollbacks: Vec::new(),
            maintenance: MaintenanceState::default(),
            maintenance_periods: Vec::new(),
            system_rollbacks: Vec::new(),
            roles: Vec::new(),
            next_update_due: cadence::next_update_due(level, None, started_at, now),
            next_customer_notice_due: cadence::customer_notice_due(level, None, started_at, now),
            audit: None,
            level_history: Vec::new(),
            timeline: Vec::new(),
            messages_sent: Vec::new(),
            open_items: Vec::new(),
            journal: None,
            internal: InternalRefs::default(),
            fields: BTreeMap::new(),
            waived: BTreeSet::new(),
        }
    }

    /// Sets a person-filled field.
    pub fn set_field(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.insert(name.into(), value.into());
    }

    /// Marks a field as deliberately left out.
    pub fn waive(&mut self, name: impl Into<String>) {
        self.waived.insert(name.into());
    }

    /// Every internal identifier this context knows: its `internal` lists and the ids of
    /// its rollbacks.
    pub fn internal_values(&self) -> Vec<String> {
        let i = &self.internal;
        let rb = self.rollbacks.iter().flat_map(|r| [r.order_id.clone(), r.user_id.clone()]);
        i.order_ids.iter().chain(&i.user_ids).chain(&i.hosts).cloned().chain(rb).collect()
    }

    /// The template variables. See the module's templates for how they are used.
    pub fn to_value(&self) -> Value {
        let mut root = Map::new();
        root.insert("company".into(), json!(self.company));
        root.insert("system".into(), json!(self.system));
        root.insert("generated_at".into(), json!(time(self.now)));
        self.put_incident_and_phase(&mut root);
        root.insert(
            "impact".into(),
            json!({"orders_affected": self.orders_affected, "users_affected": self.users_affected}),
        );
        root.insert("rollbacks".into(), self.rollbacks_value());
        root.insert("maintenance".into(), self.maintenance_value());
        // Absent when there were none, so that contexts of incidents without them read as before.
        if !self.system_rollbacks.is_empty() {
            root.insert(
                "system_rollbacks".into(),
                Value::Array(
                    self.system_rollbacks.iter().map(|(at, text)| json!({"at": time(*at), "text": text})).collect(),
                ),
            );
        }
        self.put_team_and_cadence(&mut root);
        self.put_history(&mut root);
        if let Some(j) = &self.journal {
            root.insert(
                "journal".into(),
                json!({"entries": j.entries, "final_hash": j.final_hash, "verified": j.verified}),
            );
        }
        root.insert(
            "internal".into(),
            json!({"order_ids": self.internal.order_ids, "user_ids": self.internal.user_ids, "hosts": self.internal.hosts}),
        );
        root.insert("fields".into(), json!(self.fields));
        root.insert("waived".into(), json!(self.waived));
        Value::Object(root)
    }

    /// `incident`, `level`, `phase` and `phases`: where the incident stands.
    fn put_incident_and_phase(&self, root: &mut Map<String, Value>) {
        let now = self.now;
        let mut incident = Map::new();
        incident.insert("id".into(), json!(self.incident_id));
        incident.insert("title".into(), json!(self.title));
        incident.insert("started_at".into(), json!(time(self.started_at)));
        incident.insert("elapsed".into(), json!(duration(self.resolved_at.unwrap_or(now) - self.started_at)));
        incident.insert("resolved".into(), json!(self.resolved_at.is_some()));
        incident.insert("status".into(), json!(self.status()));
        put_time(&mut incident, "resolved_at", self.resolved_at);
        incident.insert("closed".into(), json!(self.closed.is_some()));
        if let Some((at, reason)) = &self.closed {
            incident.insert("closed_at".into(), json!(time(*at)));
            incident.insert("close_reason".into(), json!(reason));
        }
        root.insert("incident".into(), Value::Object(incident));
        root.insert("times".into(), self.times_value());

        root.insert(
            "level".into(),
            json!({
                "number": self.level.number(),
                "label": self.level.label(),
                "name": format!("Level {} ({})", self.level.number(), self.level.label()),
            }),
        );

        let mut phase = Map::new();
        phase.insert("label".into(), json!(self.phase.label()));
        phase.insert("since".into(), json!(time(self.phase_since)));
        phase.insert("elapsed".into(), json!(duration(now - self.phase_since)));
        // A closed incident's phase is over its time box no longer: its clock stopped.
        let over = self.closed.is_none() && self.phase.time_box().is_some_and(|b| now - self.phase_since > b);
        phase.insert("overdue".into(), json!(over));
        if let Some(b) = self.phase.time_box() {
            phase.insert("time_box".into(), json!(duration(b)));
        }
        root.insert("phase".into(), Value::Object(phase));
        root.insert("phases".into(), Value::Array(self.phases.iter().map(|p| phase_span(p, now)).collect()));
    }

    /// `roles`, `team`, `commander`, the update cadence and the last `audit`.
    fn put_team_and_cadence(&self, root: &mut Map<String, Value>) {
        let roles: Map<String, Value> = self.roles.iter().map(|r| (r.role.clone(), json!(r.name))).collect();
        root.insert("roles".into(), Value::Object(roles));
        root.insert(
            "team".into(),
            Value::Array(self.roles.iter().map(|r| json!({"role": r.role, "name": r.name})).collect()),
        );
        if let Some(r) = self.roles.iter().find(|r| r.role == COMMANDER_ROLE) {
            root.insert("commander".into(), json!(r.name));
        }

        root.insert("update_every".into(), json!(cadence::update_interval_words(self.level)));
        if let Some(d) = cadence::update_interval(self.level) {
            root.insert("update_every_minutes".into(), json!(d.num_minutes()));
        }
        put_time(root, "next_update_due", self.next_update_due);
        put_time(root, "next_customer_notice_due", self.next_customer_notice_due);

        if let Some(a) = &self.audit {
            root.insert(
                "audit".into(),
                json!({"at": time(a.at), "consistent": a.violations == 0, "violations": a.violations}),
            );
        }
    }

    /// `level_history`, `timeline`, `messages_sent` and `open_items`: what happened, as lists.
    fn put_history(&self, root: &mut Map<String, Value>) {
        let history: Vec<Value> = self
            .level_history
            .iter()
            .map(|c| {
                json!({
                    "at": time_s(c.at), "from": c.from.number(), "from_label": c.from.label(),
                    "to": c.to.number(), "to_label": c.to.label(), "reason": c.reason, "operator": c.operator,
                })
            })
            .collect();
        root.insert("level_history".into(), Value::Array(history));
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|e| json!({"at": time_s(e.at), "operator": e.operator, "kind": e.kind, "text": e.text}))
            .collect();
        root.insert("timeline".into(), Value::Array(timeline));
        let sent: Vec<Value> = self
            .messages_sent
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("at".into(), json!(time_s(m.at)));
                o.insert("template".into(), json!(m.template));
                if let Some(p) = &m.path {
                    o.insert("path".into(), json!(p));
                }
                Value::Object(o)
            })
            .collect();
        root.insert("messages_sent".into(), Value::Array(sent));
        let open: Vec<Value> = self
            .open_items
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("phase".into(), json!(i.phase.label()));
                o.insert("item".into(), json!(i.item));
                if let Some(a) = &i.assignee {
                    o.insert("assignee".into(), json!(a));
                }
                Value::Object(o)
            })
            .collect();
        root.insert("open_items".into(), Value::Array(open));
    }

    /// `times`: impact began, detected, mitigated, resolved (each absent when not known,
    /// but detected) and the duration: from impact began, else from the detection, to the
    /// resolution, else now; `duration_from` says which start it counts from.
    fn times_value(&self) -> Value {
        let t = &self.times;
        let mut o = Map::new();
        if let Some((at, source)) = &t.impact_began {
            o.insert("impact_began".into(), json!(time(*at)));
            o.insert("impact_began_source".into(), json!(source));
        }
        o.insert("detected".into(), json!(time(t.detected)));
        o.insert("detected_source".into(), json!(t.detected_source));
        put_time(&mut o, "mitigated", t.mitigated);
        put_time(&mut o, "resolved", t.resolved);
        let (from, start) = match &t.impact_began {
            Some((at, _)) => ("impact began", *at),
            None => ("detection (impact began not set)", t.detected),
        };
        let end = t.resolved.or(self.resolved_at).unwrap_or(self.now);
        o.insert("duration".into(), json!(duration(end - start)));
        o.insert("duration_from".into(), json!(from));
        o.insert("duration_ended".into(), json!(t.resolved.or(self.resolved_at).is_some()));
        Value::Object(o)
    }

    /// "Investigating", "Containing", "Recovering", "Resolved", "Closed": the status line
    /// of the source's internal alert, derived from the phase so it cannot drift from it.
    fn status(&self) -> &'static str {
        if self.closed.is_some() {
            return "Closed";
        }
        if self.resolved_at.is_some() {
            return "Resolved";
        }
        match self.phase {
            Phase::Assessment => "Investigating",
            Phase::Response => "Containing",
            Phase::Recovery => "Recovering",
            Phase::PostIncident => "Resolved",
        }
    }

    fn rollbacks_value(&self) -> Value {
        let succeeded = self.rollbacks.iter().filter(|r| r.succeeded).count();
        let unrecorded = self.rollbacks.iter().filter(|r| !r.outcome_recorded).count();
        // Money moved by every rollback whose outcome is known, complete or not: a batch with
        // one refusal still rolled back the rest.
        let refunded: Decimal = self.rollbacks.iter().filter(|r| r.outcome_recorded).map(|r| r.refunded).sum();
        let reversed: u64 = self.rollbacks.iter().filter(|r| r.outcome_recorded).map(|r| r.orders_reversed).sum();
        let items: Vec<Value> = self
            .rollbacks
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("at".into(), json!(time_s(r.at)));
                o.insert("order_id".into(), json!(r.order_id));
                o.insert("user_id".into(), json!(r.user_id));
                o.insert("scope".into(), json!(r.scope));
                o.insert("reason".into(), json!(r.reason));
                o.insert("succeeded".into(), json!(r.succeeded));
                o.insert("outcome".into(), json!(r.outcome));
                o.insert("orders_reversed".into(), json!(r.orders_reversed));
                o.insert("refunded".into(), json!(money(r.refunded)));
                // Only when it is so: reports of journals without intents stay as they were.
                if !r.outcome_recorded {
                    o.insert("outcome_recorded".into(), json!(false));
                }
                if let Some(c) = &r.precheck {
                    o.insert("precheck".into(), check_value(c));
                }
                if let Some(c) = &r.postcheck {
                    o.insert("postcheck".into(), check_value(c));
                }
                Value::Object(o)
            })
            .collect();
        let mut v = json!({
            "total": self.rollbacks.len(),
            "succeeded": succeeded,
            "failed": self.rollbacks.len() - succeeded - unrecorded,
            "orders_reversed": reversed,
            "refunded_total": money(refunded),
            "items": items,
        });
        // Present only when there are any, as `outcome_recorded` above.
        if unrecorded > 0 {
            v["unrecorded"] = json!(unrecorded);
        }
        v
    }

    fn maintenance_value(&self) -> Value {
        let m = &self.maintenance;
        let mut o = Map::new();
        o.insert("on".into(), json!(m.on));
        if m.on {
            put_time(&mut o, "since", m.since);
            if let Some(r) = m.reason.as_deref().filter(|r| !r.trim().is_empty()) {
                o.insert("reason".into(), json!(r));
            }
        }
        let periods: Vec<Value> = self
            .maintenance_periods
            .iter()
            .map(|p| {
                let mut o = Map::new();
                o.insert("from".into(), json!(time(p.from)));
                put_time(&mut o, "until", p.until);
                o.insert("duration".into(), json!(duration(p.until.unwrap_or(self.now) - p.from)));
                o.insert("reason".into(), json!(p.reason));
                Value::Object(o)
            })
            .collect();
        o.insert("periods".into(), Value::Array(periods));
        // One symbol's maintenance: `symbols` (absent when none) and their names joined.
        if !m.symbols.is_empty() {
            o.insert("symbols".into(), json!(m.symbols));
            o.insert("symbols_text".into(), json!(m.symbols.join(", ")));
        }
        Value::Object(o)
    }
}

fn phase_span(p: &PhaseSpan, now: DateTime<Utc>) -> Value {
    let spent = p.ended_at.unwrap_or(now) - p.started_at;
    let mut o = Map::new();
    o.insert("phase".into(), json!(p.phase.label()));
    o.insert("started_at".into(), json!(time(p.started_at)));
    put_time(&mut o, "ended_at", p.ended_at);
    o.insert("current".into(), json!(p.ended_at.is_none()));
    o.insert("duration".into(), json!(duration(spent)));
    o.insert("minutes".into(), json!(spent.num_minutes().max(0)));
    if let Some(b) = p.phase.time_box() {
        o.insert("time_box".into(), json!(duration(b)));
    }
    o.insert("over_time_box".into(), json!(p.phase.time_box().is_some_and(|b| spent > b)));
    Value::Object(o)
}

fn check_value(c: &CheckResult) -> Value {
    let checks: Vec<Value> = c
        .checks
        .iter()
        .map(|l| {
            let mut o = Map::new();
            o.insert("check".into(), json!(l.check));
            o.insert("passed".into(), json!(l.passed));
            if let Some(d) = l.detail.as_deref().filter(|d| !d.trim().is_empty()) {
                o.insert("detail".into(), json!(d));
            }
            Value::Object(o)
        })
        .collect();
    json!({"passed": c.passed, "checks": checks})
}

fn put_time(o: &mut Map<String, Value>, key: &str, t: Option<DateTime<Utc>>) {
    if let Some(t) = t {
        o.insert(key.into(), json!(time(t)));
    }
}

/// A time in messages: UTC with the date, because incidents cross midnight and time zones.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time in the report's records, to the second.
pub fn time_s(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration for people: "12m", "1h 05m", "2d 3h 00m"; negative counts as zero.
pub fn duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{m}m"),
        (0, h) => format!("{h}h {m:02}m"),
        (d, h) => format!("{d}d {h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests;
