//! The incident as a pure state machine. Its state is the fold of its journal entries
//! (`apply`); what a person or the console does is first checked against that state
//! (`decide`), which returns the records to append. Nothing here does I/O, so every
//! transition and timer is tested with a fixed clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::checklist::{Checklist, Item};
use super::{IncidentHeader, Level, Phase};
use crate::core::journal::event::{self, Event, EventData};

mod observation;
mod refusal;
pub mod times;

pub use observation::{Observation, RESOLUTION_NOTICE};
pub use refusal::{NotAnIncident, REASON_MAX_CHARS, Refusal, reason_ok};
use refusal::{field_name, text_ok};
use times::{Closure, TimeKind, TimeMark, Times};

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
    Done { at: DateTime<Utc>, by: String, auto: bool, approved_by: Option<String> },
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

/// Something recorded with its time and author: checks, rollbacks, messages, notes,
/// maintenance switches, and entries of kinds this version does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// What.
    pub event: Event,
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
    /// Tick an approval item, naming who approved.
    Approve { item: String, approver: String },
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
    /// Set (or correct) one of the incident's times. `source` is "commander" or
    /// "observed: <what>"; `now` is the clock the time is checked against.
    SetTime { which: TimeKind, at: DateTime<Utc>, source: String, now: DateTime<Utc> },
    /// Close the incident at `now`, with the reason: records `resolved` (when not set) and
    /// `incident_closed`; the update timers stop.
    Close { reason: String, now: DateTime<Utc> },
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
    /// One symbol's maintenance periods, oldest first, each with its symbol.
    pub symbol_maintenance: Vec<(String, MaintenancePeriod)>,
    pub fields: BTreeMap<String, String>,
    pub waived: BTreeSet<String>,
    /// Checks, rollbacks, audits, messages, notes, reports: in order.
    pub records: Vec<Record>,
    /// Impact began, detected, mitigated, resolved: as set (detected defaults to the
    /// opening, see [`Incident::detected_at`]; impact began is never guessed).
    pub times: Times,
    /// Closed, when it was.
    pub closed: Option<Closure>,
    /// Entries folded in.
    pub entries: u64,
}

impl Incident {
    /// The first record of a new incident.
    pub fn open_record(id: &str, title: &str, level: Level, reason: &str) -> Result<Event, Refusal> {
        let title = text_ok(title, "a title", 200)?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Refusal::BadIncidentId);
        }
        Ok(Event::IncidentOpened(event::IncidentOpened {
            id: id.to_string(),
            title,
            level,
            reason: reason.trim().to_string(),
        }))
    }

    /// Folds journal entries (event, when, by whom) into the incident. The first must open it.
    pub fn from_records<'a>(
        entries: impl IntoIterator<Item = (&'a Event, DateTime<Utc>, &'a str)>,
    ) -> Result<Incident, NotAnIncident> {
        let mut it = entries.into_iter();
        let Some((first, at, by)) = it.next() else { return Err(NotAnIncident::Empty) };
        let opened = match first {
            Event::IncidentOpened(opened) => opened,
            Event::Unknown(u) if u.kind() == "incident_opened" => return Err(NotAnIncident::BadOpening),
            other => return Err(NotAnIncident::StartsWith(other.kind().to_string())),
        };
        // The id names directories and is printed everywhere: as strict on replay as when
        // it was written (a hand-edited journal must not smuggle anything in).
        let id = &opened.id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(NotAnIncident::BadId);
        }
        let mut inc = Incident {
            id: id.clone(),
            title: opened.title.clone(),
            opened_at: at,
            opened_by: by.to_string(),
            level: opened.level,
            level_history: vec![LevelChange {
                at,
                by: by.to_string(),
                from: None,
                to: opened.level,
                reason: opened.reason.clone(),
            }],
            phase: Phase::Assessment,
            phase_history: vec![(Phase::Assessment, at)],
            items: BTreeMap::new(),
            item_roles: BTreeMap::new(),
            roles: BTreeMap::new(),
            handovers: Vec::new(),
            maintenance: Vec::new(),
            symbol_maintenance: Vec::new(),
            fields: BTreeMap::new(),
            waived: BTreeSet::new(),
            records: Vec::new(),
            times: Times::default(),
            closed: None,
            entries: 1,
        };
        for (event, at, by) in it {
            inc.apply(event, at, by);
        }
        Ok(inc)
    }

    /// Applies one journal entry. Unknown kinds are kept as records (newer consoles may
    /// write kinds this one does not know).
    pub fn apply(&mut self, event: &Event, at: DateTime<Utc>, by: &str) {
        self.entries += 1;
        match event {
            Event::LevelChanged(d) => {
                self.level_history.push(LevelChange {
                    at,
                    by: by.into(),
                    from: Some(self.level),
                    to: d.to,
                    reason: d.reason.clone(),
                });
                self.level = d.to;
            }
            Event::PhaseChanged(d) => {
                self.phase = d.to;
                self.phase_history.push((d.to, at));
            }
            Event::ItemTicked(d) => {
                let approved_by = d.approved_by.clone();
                self.items.insert(d.item.clone(), ItemState::Done { at, by: by.into(), auto: d.auto, approved_by });
            }
            Event::ItemSkipped(d) => {
                self.items.insert(d.item.clone(), ItemState::Skipped { at, by: by.into(), reason: d.reason.clone() });
            }
            Event::ItemAssigned(d) => {
                self.item_roles.insert(d.item.clone(), d.role);
            }
            Event::RoleAssigned(d) => {
                if let Some(prev) = self.roles.get(&d.role) {
                    self.handovers.push((d.role, prev.person.clone(), d.person.clone(), at, by.into()));
                }
                self.roles.insert(d.role, Assignment { person: d.person.clone(), since: at, by: by.into() });
            }
            Event::FieldSet(d) => {
                self.waived.remove(&d.name);
                self.fields.insert(d.name.clone(), d.value.clone());
            }
            Event::FieldWaived(d) => {
                self.waived.insert(d.name.clone());
            }
            Event::Maintenance(d) => {
                match &d.symbol {
                    Some(symbol) => self.symbol_switched(symbol, d.on, d.verified, &d.reason, at),
                    None => self.maintenance_switched(d.on, d.verified, &d.reason, at),
                }
                self.record(event, at, by);
            }
            // Seen in the database, not probed here: never verified.
            Event::MaintenanceSeen(d) => {
                self.maintenance_switched(d.on, false, &d.reason, at);
                self.record(event, at, by);
            }
            Event::TimeSet(d) => {
                let mark = TimeMark { at: d.at, source: d.source.clone(), by: by.into(), recorded_at: at };
                self.times.set(d.which, mark);
            }
            Event::IncidentClosed(d) => {
                // The first close stands; a second one (two consoles at once) changes nothing.
                if self.closed.is_none() {
                    self.closed = Some(Closure { at, by: by.into(), reason: d.reason.clone() });
                }
            }
            Event::IncidentOpened(_)
            | Event::Note(_)
            | Event::Precheck(_)
            | Event::RollbackIntended(_)
            | Event::Rollback(_)
            | Event::RollbackSettled(_)
            | Event::Postcheck(_)
            | Event::Audit(_)
            | Event::MessageCopied(_)
            | Event::ReportWritten(_)
            | Event::ReleaseRollback(_)
            | Event::ServiceRollback(_)
            | Event::BundleWritten(_)
            | Event::Breaker(_)
            | Event::Approval(_)
            | Event::Unknown(_) => self.record(event, at, by),
        }
    }

    /// Maintenance switched on or off: a new period, the open one closed, or the open one
    /// confirmed by the probe.
    fn maintenance_switched(&mut self, on: bool, verified: bool, reason: &str, at: DateTime<Utc>) {
        match self.maintenance.last_mut() {
            Some(p) if p.off_at.is_none() && on => p.verified |= verified,
            Some(p) if p.off_at.is_none() && !on => p.off_at = Some(at),
            _ if on => self.maintenance.push(MaintenancePeriod {
                on_at: at,
                off_at: None,
                reason: reason.to_string(),
                verified,
            }),
            _ => {}
        }
    }

    fn symbol_switched(&mut self, symbol: &str, on: bool, verified: bool, reason: &str, at: DateTime<Utc>) {
        let open = self.symbol_maintenance.iter_mut().rev().find(|(s, p)| s == symbol && p.off_at.is_none());
        match open {
            Some((_, p)) if on => p.verified |= verified,
            Some((_, p)) => p.off_at = Some(at),
            None if on => self.symbol_maintenance.push((
                symbol.to_string(),
                MaintenancePeriod { on_at: at, off_at: None, reason: reason.to_string(), verified },
            )),
            None => {}
        }
    }

    fn record(&mut self, event: &Event, at: DateTime<Utc>, by: &str) {
        self.records.push(Record { at, by: by.into(), event: event.clone() });
    }

    /// Checks a step against the state; returns the records to append (in order).
    pub fn decide(&self, step: Step, checklist: &Checklist) -> Result<Vec<Event>, Refusal> {
        match step {
            Step::SetLevel { to, reason } => {
                let reason = reason_ok(&reason, "a reason for the level change")?;
                if to == self.level {
                    return Err(Refusal::SameLevel(to));
                }
                Ok(vec![Event::LevelChanged(event::LevelChanged { from: self.level, to, reason })])
            }
            Step::Advance { to } => {
                if to <= self.phase {
                    return Err(Refusal::PhaseBackwards(self.phase));
                }
                let mut out = vec![Event::PhaseChanged(event::PhaseChanged { from: self.phase, to })];
                // Items left open in the phases being left stay open, and say so.
                let open: Vec<String> = Phase::ALL
                    .iter()
                    .filter(|p| **p >= self.phase && **p < to)
                    .flat_map(|p| checklist.for_phase(*p, self.level))
                    .filter(|i| self.item_state(&i.id) == &ItemState::Open)
                    .map(|i| i.id.clone())
                    .collect();
                if !open.is_empty() {
                    let text = format!("left open when moving to {}: {}", to.label(), open.join(", "));
                    out.push(Event::Note(event::Note { text, system: true }));
                }
                Ok(out)
            }
            Step::Tick { item } => {
                let it = self.item_for_level(checklist, &item)?;
                self.require_open(&it.id)?;
                if it.approval {
                    return Err(Refusal::NeedsApprover(it.id.clone()));
                }
                Ok(vec![Event::ItemTicked(event::ItemTicked { item: it.id.clone(), auto: false, approved_by: None })])
            }
            Step::Approve { item, approver } => {
                let it = self.item_for_level(checklist, &item)?;
                self.require_open(&it.id)?;
                let approver = text_ok(&approver, "who approved", 200)?;
                Ok(vec![Event::ItemTicked(event::ItemTicked {
                    item: it.id.clone(),
                    auto: false,
                    approved_by: Some(approver),
                })])
            }
            Step::Skip { item, reason } => {
                let it = self.item_for_level(checklist, &item)?;
                self.require_open(&it.id)?;
                let reason = reason_ok(&reason, "a reason to skip")?;
                Ok(vec![Event::ItemSkipped(event::ItemSkipped { item: it.id.clone(), reason })])
            }
            Step::AssignItem { item, role } => {
                let it = self.item_for_level(checklist, &item)?;
                Ok(vec![Event::ItemAssigned(event::ItemAssigned { item: it.id.clone(), role })])
            }
            Step::AssignRole { role, person } => {
                let person = text_ok(&person, "a person", 200)?;
                if self.roles.get(&role).is_some_and(|a| a.person == person) {
                    return Err(Refusal::AlreadyHolds { person, role });
                }
                Ok(vec![Event::RoleAssigned(event::RoleAssigned { role, person })])
            }
            Step::Note { text } => {
                Ok(vec![Event::Note(event::Note { text: text_ok(&text, "a note", 4000)?, system: false })])
            }
            Step::SetField { name, value } => {
                let name = field_name(&name)?;
                Ok(vec![Event::FieldSet(event::FieldSet { name, value: text_ok(&value, "a value", 4000)? })])
            }
            Step::Waive { name } => Ok(vec![Event::FieldWaived(event::FieldWaived { name: field_name(&name)? })]),
            Step::SetTime { which, at, source, now } => {
                let source = text_ok(&source, "the time's source", 200)?;
                self.times.check(which, at, now)?;
                Ok(vec![Event::TimeSet(event::TimeSet { which, at, source })])
            }
            Step::Close { reason, now } => {
                if let Some(c) = &self.closed {
                    return Err(Refusal::AlreadyClosed(c.at));
                }
                let reason = reason_ok(&reason, "a reason to close the incident")?;
                let mut out = Vec::new();
                if self.times.resolved.is_none() {
                    self.times.check(TimeKind::Resolved, now, now)?;
                    out.push(Event::TimeSet(event::TimeSet {
                        which: TimeKind::Resolved,
                        at: now,
                        source: "commander (closed the incident)".into(),
                    }));
                }
                out.push(Event::IncidentClosed(event::IncidentClosed { reason }));
                Ok(out)
            }
            Step::Observe(o) => {
                let mut out = vec![o.record()];
                // Level 1 is answered automatically: what the console saw itself ticks
                // its items. At Levels 2 and 3 a person ticks them, except what only the
                // console can prove (a release or service rollback verified).
                {
                    for signal in o.signal().unwrap_or_default().into_iter().filter(|s| s.ticks_at(self.level)) {
                        for it in checklist.items().iter().filter(|i| i.applies(self.level) && i.auto == Some(signal)) {
                            if self.item_state(&it.id) == &ItemState::Open {
                                out.push(Event::ItemTicked(event::ItemTicked {
                                    item: it.id.clone(),
                                    auto: true,
                                    approved_by: None,
                                }));
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    fn item_for_level<'c>(&self, checklist: &'c Checklist, id: &str) -> Result<&'c Item, Refusal> {
        let it =
            checklist.get(id.trim()).ok_or_else(|| Refusal::NoItem(crate::core::sanitize::line(id).into_owned()))?;
        if !it.applies(self.level) {
            return Err(Refusal::NotAtLevel { item: it.id.clone(), level: self.level });
        }
        Ok(it)
    }

    fn require_open(&self, id: &str) -> Result<(), Refusal> {
        match self.item_state(id) {
            ItemState::Open => Ok(()),
            ItemState::Done { .. } => Err(Refusal::AlreadyDone(id.to_string())),
            ItemState::Skipped { .. } => Err(Refusal::Skipped(id.to_string())),
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

    /// The symbols whose new orders are stopped one by one now, sorted, with their periods.
    pub fn symbols_stopped(&self) -> Vec<(&str, &MaintenancePeriod)> {
        let mut on: Vec<(&str, &MaintenancePeriod)> =
            self.symbol_maintenance.iter().filter(|(_, p)| p.off_at.is_none()).map(|(s, p)| (s.as_str(), p)).collect();
        on.sort_by(|a, b| a.0.cmp(b.0));
        on
    }

    /// The records of one kind, each with its data: `records_of::<event::Rollback>()`.
    pub fn records_of<'s, T: EventData + 's>(&'s self) -> impl Iterator<Item = (&'s Record, &'s T)> + 's {
        self.records.iter().filter_map(|r| T::of(&r.event).map(|data| (r, data)))
    }

    /// Whether the outcome of the rollback `operation` is in the journal.
    pub fn outcome_recorded(&self, operation: uuid::Uuid) -> bool {
        self.records_of::<event::Rollback>().any(|(_, r)| r.operation == Some(operation))
    }

    /// The figures the database last showed for an operation, settled after the fact, if
    /// that was after its outcome was recorded (an outcome written later knows better).
    pub fn settled(&self, operation: uuid::Uuid) -> Option<&event::RollbackSettled> {
        let mut last = None;
        for r in &self.records {
            match &r.event {
                Event::RollbackSettled(s) if s.operation == operation => last = Some(s),
                Event::Rollback(o) if o.operation == Some(operation) => last = None,
                _ => {}
            }
        }
        last
    }

    /// What the journal says an operation did, as (orders, refunded): its settled figures,
    /// else its outcome's; none without either.
    pub fn operation_figures(&self, operation: uuid::Uuid) -> Option<(u64, String)> {
        if let Some(s) = self.settled(operation) {
            return Some((s.orders, s.refunded.clone()));
        }
        self.records_of::<event::Rollback>()
            .filter(|(_, r)| r.operation == Some(operation))
            .last()
            .map(|(_, r)| (r.orders, r.refunded.clone()))
    }

    /// The users an operation rolled back orders of, as the journal knows them (its settled
    /// figures, else its outcome's); none without either, or for a batch journaled before
    /// users were.
    pub fn operation_users(&self, operation: uuid::Uuid) -> Option<Vec<uuid::Uuid>> {
        if let Some(s) = self.settled(operation) {
            return Some(s.user_ids.clone());
        }
        self.records_of::<event::Rollback>()
            .filter(|(_, r)| r.operation == Some(operation))
            .last()
            .and_then(|(_, r)| self.users_rolled_back(r))
    }

    /// The users whose orders a rollback entry rolled back: what the database later showed
    /// (its settled figures), else the entry's own list, else a single rollback's user. None
    /// for a batch journaled before its users were: only its count of them is known.
    pub fn users_rolled_back(&self, r: &event::Rollback) -> Option<Vec<uuid::Uuid>> {
        if let Some(s) = r.operation.and_then(|op| self.settled(op)) {
            return Some(s.user_ids.clone());
        }
        if !r.user_ids.is_empty() || r.orders == 0 {
            return Some(r.user_ids.clone());
        }
        r.user.map(|u| vec![u])
    }

    /// The rollbacks intended whose outcome the journal does not have, oldest first: the
    /// journal failed after the money moved, or the process died, or it still runs.
    pub fn intents_without_outcome(&self) -> impl Iterator<Item = (&Record, &event::RollbackIntended)> + '_ {
        self.records_of::<event::RollbackIntended>().filter(|(_, i)| !self.outcome_recorded(i.operation))
    }

    /// When the last message to this audience was copied out.
    pub fn last_message(&self, audience: &str) -> Option<DateTime<Utc>> {
        self.records_of::<event::MessageCopied>().filter(|(_, m)| m.audience == audience).map(|(r, _)| r.at).max()
    }

    /// When the incident was detected: the time set, else when it was opened.
    pub fn detected_at(&self) -> DateTime<Utc> {
        self.times.detected.as_ref().map_or(self.opened_at, |m| m.at)
    }

    /// When the next internal update is due: none once the incident is closed.
    pub fn next_update_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.closed.is_some() {
            return None;
        }
        crate::core::comms::cadence::next_update_due(self.level, self.last_message("internal"), self.opened_at, now)
    }

    /// When the next customer notice is due: none once the incident is closed.
    pub fn customer_notice_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.closed.is_some() {
            return None;
        }
        crate::core::comms::cadence::customer_notice_due(self.level, self.last_message("customer"), self.opened_at, now)
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

#[cfg(test)]
mod tests;
