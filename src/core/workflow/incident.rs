//! The incident as a pure state machine. Its state is the fold of its journal entries
//! (`apply`); what a person or the console does is first checked against that state
//! (`decide`), which returns the records to append. Nothing here does I/O, so every
//! transition and timer is tested with a fixed clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::checklist::{AutoSignal, Checklist, Item};
use super::{IncidentHeader, Level, Phase};

/// A role of the response team, as the source document lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Overall coordination.
    IncidentCommander,
    /// System restoration.
    TechnicalLead,
    /// Database rollback coordination.
    DatabaseAdmin,
    /// Security incident assessment.
    SecurityLead,
    /// Stakeholder communication.
    CommunicationsLead,
    /// Incident logging.
    DocumentationLead,
}

impl Role {
    /// Every role, in the source's order.
    pub const ALL: [Role; 6] = [
        Role::IncidentCommander,
        Role::TechnicalLead,
        Role::DatabaseAdmin,
        Role::SecurityLead,
        Role::CommunicationsLead,
        Role::DocumentationLead,
    ];

    /// The name used in files and commands.
    pub fn key(self) -> &'static str {
        match self {
            Role::IncidentCommander => "incident_commander",
            Role::TechnicalLead => "technical_lead",
            Role::DatabaseAdmin => "database_admin",
            Role::SecurityLead => "security_lead",
            Role::CommunicationsLead => "communications_lead",
            Role::DocumentationLead => "documentation_lead",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Role::IncidentCommander => "Incident Commander",
            Role::TechnicalLead => "Technical Lead",
            Role::DatabaseAdmin => "Database Admin",
            Role::SecurityLead => "Security Lead",
            Role::CommunicationsLead => "Communications Lead",
            Role::DocumentationLead => "Documentation Lead",
        }
    }

    /// Parses "technical_lead", "technical-lead", "Technical Lead".
    pub fn parse(s: &str) -> Option<Role> {
        let k = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Role::ALL.into_iter().find(|r| r.key() == k)
    }
}

/// Where an item of the checklist is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemState {
    /// Not done.
    Open,
    /// Done, by a person or observed by the console.
    Done { at: DateTime<Utc>, by: String, auto: bool },
    /// Skipped, with the reason.
    Skipped { at: DateTime<Utc>, by: String, reason: String },
}

/// A change of level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelChange {
    pub at: DateTime<Utc>,
    pub by: String,
    pub from: Option<Level>,
    pub to: Level,
    pub reason: String,
}

/// Who holds a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub person: String,
    pub since: DateTime<Utc>,
    pub by: String,
}

/// A period of maintenance mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenancePeriod {
    pub on_at: DateTime<Utc>,
    pub off_at: Option<DateTime<Utc>>,
    pub reason: String,
    /// The probe saw new orders refused.
    pub verified: bool,
}

/// Something recorded with its time and author: checks, rollbacks, messages, notes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub by: String,
    pub kind: String,
    pub data: Value,
}

/// What the console saw happen (recorded in the journal, and maybe ticking items).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A pre-check ran.
    Precheck { order: Uuid, user: Uuid, ready: bool, failed: Vec<String> },
    /// A rollback (single, transaction group or batch) ended.
    Rollback {
        /// single, transaction or batch.
        mode: String,
        /// The order it started from (none for a batch).
        order: Option<Uuid>,
        /// Its user (none for a batch).
        user: Option<Uuid>,
        /// Orders rolled back.
        orders: u64,
        /// Users touched.
        users: u64,
        /// Cash given back, as a decimal string.
        refunded: String,
        /// Whether it completed.
        success: bool,
        /// What happened, in words.
        detail: String,
        /// The reason recorded on the orders.
        reason: String,
    },
    /// A post-check ran.
    Postcheck { order: Uuid, successful: bool, failed: Vec<String> },
    /// Maintenance mode was switched, and whether the probe confirmed it.
    Maintenance { on: bool, reason: String, verified: bool },
    /// The database's maintenance mode differs from the journal's: someone switched it
    /// outside this console (another console, the CLI elsewhere, psql). Not probed here.
    MaintenanceSeen { on: bool, reason: String, by: Option<String>, since: Option<DateTime<Utc>> },
    /// The ledger audit ran.
    Audit { violations: u64 },
    /// A message was copied out (and written to a file).
    MessageCopied { template: String, audience: String, path: String },
    /// The post-incident report was written.
    ReportWritten { path: String, hash: String },
}

impl Observation {
    fn signal(&self) -> Option<Vec<AutoSignal>> {
        match self {
            Observation::Postcheck { successful: true, .. } => Some(vec![AutoSignal::PostcheckPassed]),
            Observation::Maintenance { on: true, verified: true, .. } => Some(vec![AutoSignal::MaintenanceVerified]),
            Observation::Audit { violations: 0 } => Some(vec![AutoSignal::AuditClean]),
            Observation::MessageCopied { audience, template, .. } => Some(if audience == "customer" {
                vec![AutoSignal::CustomerNoticeSent]
            } else if template == "internal_alert" {
                vec![AutoSignal::InternalAlertSent]
            } else {
                vec![]
            }),
            Observation::ReportWritten { .. } => Some(vec![AutoSignal::ReportWritten]),
            _ => None,
        }
    }

    fn record(&self) -> (&'static str, Value) {
        match self {
            Observation::Precheck { order, user, ready, failed } => {
                ("precheck", json!({ "order": order, "user": user, "ready": ready, "failed": failed }))
            }
            Observation::Rollback { mode, order, user, orders, users, refunded, success, detail, reason } => (
                "rollback",
                json!({ "mode": mode, "order": order, "user": user, "orders": orders, "users": users,
                        "refunded": refunded, "success": success, "detail": detail, "reason": reason }),
            ),
            Observation::Postcheck { order, successful, failed } => {
                ("postcheck", json!({ "order": order, "successful": successful, "failed": failed }))
            }
            Observation::Maintenance { on, reason, verified } => {
                ("maintenance", json!({ "on": on, "reason": reason, "verified": verified }))
            }
            Observation::MaintenanceSeen { on, reason, by, since } => (
                "maintenance",
                json!({ "on": on, "reason": reason, "verified": false, "seen_in_database": true,
                        "by": by, "since": since }),
            ),
            Observation::Audit { violations } => ("audit", json!({ "violations": violations })),
            Observation::MessageCopied { template, audience, path } => {
                ("message_copied", json!({ "template": template, "audience": audience, "path": path }))
            }
            Observation::ReportWritten { path, hash } => ("report_written", json!({ "path": path, "hash": hash })),
        }
    }
}

/// What a person does to the incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Raise or lower the level, with the reason.
    SetLevel { to: Level, reason: String },
    /// Move to a later phase.
    Advance { to: Phase },
    /// Tick an item.
    Tick { item: String },
    /// Skip an item, with the reason.
    Skip { item: String, reason: String },
    /// Give an item to a role.
    AssignItem { item: String, role: Role },
    /// Give a role to a person (a hand-over when someone held it).
    AssignRole { role: Role, person: String },
    /// A note typed by the commander.
    Note { text: String },
    /// Fill a message field (impact, estimated resolution, ...).
    SetField { name: String, value: String },
    /// Waive a message field explicitly.
    Waive { name: String },
    /// Record what the console observed.
    Observe(Observation),
}

/// The incident, as its journal says.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub level: Level,
    pub level_history: Vec<LevelChange>,
    pub phase: Phase,
    /// When each phase was entered.
    pub phase_history: Vec<(Phase, DateTime<Utc>)>,
    pub items: BTreeMap<String, ItemState>,
    pub item_roles: BTreeMap<String, Role>,
    pub roles: BTreeMap<Role, Assignment>,
    /// Every hand-over: role, from, to, when, by.
    pub handovers: Vec<(Role, String, String, DateTime<Utc>, String)>,
    pub maintenance: Vec<MaintenancePeriod>,
    pub fields: BTreeMap<String, String>,
    pub waived: BTreeSet<String>,
    /// Checks, rollbacks, audits, messages, notes, reports: in order.
    pub records: Vec<Record>,
    /// Entries folded in.
    pub entries: u64,
}

/// The longest reason (of a rollback, a level change, a skip, maintenance mode).
pub const REASON_MAX_CHARS: usize = 1000;

/// A reason, checked as every reason is (`what` names it in the message): required, one
/// line, at most 1000 characters, nothing hidden. Returns it trimmed.
pub fn reason_ok(s: &str, what: &str) -> Result<String, String> {
    text_ok(s, what, REASON_MAX_CHARS)
}

/// A person's text: required, at most `max` characters, no control or invisible
/// characters (line breaks allowed in long texts: notes and message fields).
fn text_ok(s: &str, what: &str, max: usize) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("{what} is required"));
    }
    if t.chars().count() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    if let Some(c) = crate::core::sanitize::first_hidden(t, max > 1000) {
        return Err(format!(
            "{what} holds a control or invisible character ({})",
            crate::core::sanitize::line(&c.to_string())
        ));
    }
    Ok(t.to_string())
}

fn level_of(v: &Value) -> Option<Level> {
    v.as_u64().and_then(|n| u8::try_from(n).ok()).and_then(Level::from_number)
}

impl Incident {
    /// The first record of a new incident.
    pub fn open_record(id: &str, title: &str, level: Level, reason: &str) -> Result<(&'static str, Value), String> {
        let title = text_ok(title, "a title", 200)?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("an incident id is letters, digits and dashes".into());
        }
        Ok(("incident_opened", json!({ "id": id, "title": title, "level": level.number(), "reason": reason.trim() })))
    }

    /// Folds journal entries into the incident. The first must open it.
    pub fn from_records<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a Value, DateTime<Utc>, &'a str)>,
    ) -> Result<Incident, String> {
        let mut it = entries.into_iter();
        let Some((kind, data, at, by)) = it.next() else { return Err("the journal is empty".into()) };
        if kind != "incident_opened" {
            return Err(format!("the journal starts with {kind}, not incident_opened"));
        }
        let level = level_of(&data["level"]).ok_or("incident_opened without a level 1-3")?;
        // The id names directories and is printed everywhere: as strict on replay as when
        // it was written (a hand-edited journal must not smuggle anything in).
        let id = data["id"].as_str().unwrap_or("");
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("incident_opened with an id that is not letters, digits and dashes".into());
        }
        let mut inc = Incident {
            id: data["id"].as_str().unwrap_or("").to_string(),
            title: data["title"].as_str().unwrap_or("").to_string(),
            opened_at: at,
            opened_by: by.to_string(),
            level,
            level_history: vec![LevelChange {
                at,
                by: by.to_string(),
                from: None,
                to: level,
                reason: data["reason"].as_str().unwrap_or("").to_string(),
            }],
            phase: Phase::Assessment,
            phase_history: vec![(Phase::Assessment, at)],
            items: BTreeMap::new(),
            item_roles: BTreeMap::new(),
            roles: BTreeMap::new(),
            handovers: Vec::new(),
            maintenance: Vec::new(),
            fields: BTreeMap::new(),
            waived: BTreeSet::new(),
            records: Vec::new(),
            entries: 1,
        };
        for (kind, data, at, by) in it {
            inc.apply(kind, data, at, by);
        }
        Ok(inc)
    }

    /// Applies one journal entry. Unknown kinds are kept as records (newer consoles may
    /// write kinds this one does not know).
    pub fn apply(&mut self, kind: &str, data: &Value, at: DateTime<Utc>, by: &str) {
        self.entries += 1;
        let s = |k: &str| data[k].as_str().unwrap_or("").to_string();
        match kind {
            "level_changed" => {
                if let Some(to) = level_of(&data["to"]) {
                    self.level_history.push(LevelChange {
                        at,
                        by: by.into(),
                        from: Some(self.level),
                        to,
                        reason: s("reason"),
                    });
                    self.level = to;
                }
            }
            "phase_changed" => {
                if let Some(to) = data["to"].as_str().and_then(Phase::parse) {
                    self.phase = to;
                    self.phase_history.push((to, at));
                }
            }
            "item_ticked" => {
                let auto = data["auto"].as_bool().unwrap_or(false);
                self.items.insert(s("item"), ItemState::Done { at, by: by.into(), auto });
            }
            "item_skipped" => {
                self.items.insert(s("item"), ItemState::Skipped { at, by: by.into(), reason: s("reason") });
            }
            "item_assigned" => {
                if let Some(r) = Role::parse(&s("role")) {
                    self.item_roles.insert(s("item"), r);
                }
            }
            "role_assigned" => {
                if let Some(r) = Role::parse(&s("role")) {
                    let person = s("person");
                    if let Some(prev) = self.roles.get(&r) {
                        self.handovers.push((r, prev.person.clone(), person.clone(), at, by.into()));
                    }
                    self.roles.insert(r, Assignment { person, since: at, by: by.into() });
                }
            }
            "field_set" => {
                self.waived.remove(&s("name"));
                self.fields.insert(s("name"), s("value"));
            }
            "field_waived" => {
                self.waived.insert(s("name"));
            }
            "maintenance" => {
                let on = data["on"].as_bool().unwrap_or(false);
                let verified = data["verified"].as_bool().unwrap_or(false);
                match self.maintenance.last_mut() {
                    Some(p) if p.off_at.is_none() && on => p.verified |= verified,
                    Some(p) if p.off_at.is_none() && !on => p.off_at = Some(at),
                    _ if on => self.maintenance.push(MaintenancePeriod {
                        on_at: at,
                        off_at: None,
                        reason: s("reason"),
                        verified,
                    }),
                    _ => {}
                }
                self.records.push(Record { at, by: by.into(), kind: kind.into(), data: data.clone() });
            }
            _ => self.records.push(Record { at, by: by.into(), kind: kind.into(), data: data.clone() }),
        }
    }

    /// Checks a step against the state; returns the records to append (in order).
    pub fn decide(&self, step: Step, checklist: &Checklist) -> Result<Vec<(&'static str, Value)>, String> {
        match step {
            Step::SetLevel { to, reason } => {
                let reason = reason_ok(&reason, "a reason for the level change")?;
                if to == self.level {
                    return Err(format!("the incident is already Level {} ({})", to.number(), to.label()));
                }
                Ok(vec![("level_changed", json!({ "from": self.level.number(), "to": to.number(), "reason": reason }))])
            }
            Step::Advance { to } => {
                if to <= self.phase {
                    return Err(format!(
                        "phases only move forward (now {}); a correction is a note",
                        self.phase.label()
                    ));
                }
                let mut out = vec![("phase_changed", json!({ "from": self.phase.key(), "to": to.key() }))];
                // Items left open in the phases being left stay open, and say so.
                let open: Vec<String> = Phase::ALL
                    .iter()
                    .filter(|p| **p >= self.phase && **p < to)
                    .flat_map(|p| checklist.for_phase(*p, self.level))
                    .filter(|i| self.item_state(&i.id) == &ItemState::Open)
                    .map(|i| i.id.clone())
                    .collect();
                if !open.is_empty() {
                    out.push(("note", json!({ "text": format!("left open when moving to {}: {}", to.label(), open.join(", ")), "system": true })));
                }
                Ok(out)
            }
            Step::Tick { item } => {
                let it = self.item_for_level(checklist, &item)?;
                self.require_open(&it.id)?;
                Ok(vec![("item_ticked", json!({ "item": it.id, "auto": false }))])
            }
            Step::Skip { item, reason } => {
                let it = self.item_for_level(checklist, &item)?;
                self.require_open(&it.id)?;
                let reason = reason_ok(&reason, "a reason to skip")?;
                Ok(vec![("item_skipped", json!({ "item": it.id, "reason": reason }))])
            }
            Step::AssignItem { item, role } => {
                let it = self.item_for_level(checklist, &item)?;
                Ok(vec![("item_assigned", json!({ "item": it.id, "role": role.key() }))])
            }
            Step::AssignRole { role, person } => {
                let person = text_ok(&person, "a person", 200)?;
                if self.roles.get(&role).is_some_and(|a| a.person == person) {
                    return Err(format!("{} already holds {}", person, role.label()));
                }
                Ok(vec![("role_assigned", json!({ "role": role.key(), "person": person }))])
            }
            Step::Note { text } => Ok(vec![("note", json!({ "text": text_ok(&text, "a note", 4000)? }))]),
            Step::SetField { name, value } => {
                let name = field_name(&name)?;
                Ok(vec![("field_set", json!({ "name": name, "value": text_ok(&value, "a value", 4000)? }))])
            }
            Step::Waive { name } => Ok(vec![("field_waived", json!({ "name": field_name(&name)? }))]),
            Step::Observe(o) => {
                let mut out = vec![o.record()];
                // Level 1 is answered automatically: what the console saw itself ticks
                // its items. At Levels 2 and 3 a person ticks them.
                if self.level == Level::Minor {
                    for signal in o.signal().unwrap_or_default() {
                        for it in checklist.items().iter().filter(|i| i.applies(self.level) && i.auto == Some(signal)) {
                            if self.item_state(&it.id) == &ItemState::Open {
                                out.push(("item_ticked", json!({ "item": it.id, "auto": true })));
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    fn item_for_level<'c>(&self, checklist: &'c Checklist, id: &str) -> Result<&'c Item, String> {
        let it = checklist
            .get(id.trim())
            .ok_or_else(|| format!("no checklist item \"{}\"", crate::core::sanitize::line(id)))?;
        if !it.applies(self.level) {
            return Err(format!("\"{}\" is not part of a Level {} response", it.id, self.level.number()));
        }
        Ok(it)
    }

    fn require_open(&self, id: &str) -> Result<(), String> {
        match self.item_state(id) {
            ItemState::Open => Ok(()),
            ItemState::Done { .. } => Err(format!("\"{id}\" is already done")),
            ItemState::Skipped { .. } => Err(format!("\"{id}\" was skipped")),
        }
    }

    /// The state of an item (open when never touched).
    pub fn item_state(&self, id: &str) -> &ItemState {
        self.items.get(id).unwrap_or(&ItemState::Open)
    }

    /// When the current phase began.
    pub fn phase_started(&self) -> DateTime<Utc> {
        self.phase_history.last().map_or(self.opened_at, |p| p.1)
    }

    /// When the current phase's time box ends (none for post-incident).
    pub fn phase_deadline(&self) -> Option<DateTime<Utc>> {
        self.phase.time_box().map(|b| self.phase_started() + b)
    }

    /// Whether the current phase ran past its time box.
    pub fn phase_overdue(&self, now: DateTime<Utc>) -> bool {
        self.phase_deadline().is_some_and(|d| now > d)
    }

    /// Time spent in each phase entered so far.
    pub fn time_in_phases(&self, now: DateTime<Utc>) -> Vec<(Phase, Duration)> {
        self.phase_history
            .iter()
            .enumerate()
            .map(|(i, (p, at))| {
                let end = self.phase_history.get(i + 1).map_or(now, |n| n.1);
                (*p, end - *at)
            })
            .collect()
    }

    /// Items of the current level not done or skipped, in checklist order.
    pub fn open_items<'c>(&self, checklist: &'c Checklist) -> Vec<&'c Item> {
        checklist
            .items()
            .iter()
            .filter(|i| i.applies(self.level) && self.item_state(&i.id) == &ItemState::Open)
            .collect()
    }

    /// The open maintenance period, if maintenance mode is on.
    pub fn maintenance_on(&self) -> Option<&MaintenancePeriod> {
        self.maintenance.last().filter(|p| p.off_at.is_none())
    }

    /// The records of one kind.
    pub fn records_of<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s Record> + 's {
        self.records.iter().filter(move |r| r.kind == kind)
    }

    /// When the last message to this audience was copied out.
    pub fn last_message(&self, audience: &str) -> Option<DateTime<Utc>> {
        self.records_of("message_copied").filter(|r| r.data["audience"] == audience).map(|r| r.at).max()
    }

    /// What the header shows.
    pub fn header(&self) -> IncidentHeader {
        IncidentHeader {
            id: self.id.clone(),
            title: self.title.clone(),
            level: self.level,
            phase: self.phase,
            phase_since: self.phase_started(),
        }
    }
}

fn field_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("a field name is a-z, 0-9 and _: \"{}\"", crate::core::sanitize::line(name)));
    }
    Ok(n.to_string())
}

#[cfg(test)]
mod tests;
