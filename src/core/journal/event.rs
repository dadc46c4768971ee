//! What a journal entry says happened: one [`Event`] variant per `kind`, each with its
//! `data` as a typed struct, and [`Event::Unknown`] for everything else.
//!
//! # Byte for byte
//!
//! Every struct here serializes to exactly the members the kind has always had, with the
//! same JSON types (a `refunded` amount is a decimal string, a `level` a number, a batch
//! rollback's `order` is `null`, not absent). Reading does not trust that: a known kind is
//! only typed when its struct writes back to a value *equal* to the `data` read (same
//! members, same types, same values); anything else is kept whole as [`Event::Unknown`].
//! So every event read from a line writes back to the same canonical bytes, the same hash,
//! whatever was on disk.
//!
//! # Unknown kinds
//!
//! A newer console may write kinds this one does not know, and a hand may have edited a
//! line. Such entries are kept as [`Event::Unknown`] with their kind and raw data: they
//! verify, fold (as records) and show in the timeline as `kind: data`, but change no state.
//! The members of a kind are therefore fixed: a version that needs other members writes a
//! new kind. The one exception is a member written only when it has a value (`rollback`'s
//! `operation`): lines without it keep their bytes and read as before, and a version that
//! does not know the member keeps the lines with it as unknown, still verified and shown.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::core::workflow::incident::Role;
use crate::core::workflow::incident::times::TimeKind;
use crate::core::workflow::{Level, Phase};

/// What happened: one variant per journal `kind`. Adding a kind means a variant here, its
/// name in [`Event::kind`] and [`Event::from_parts`]; the compiler then points at every
/// match that must handle it (the fold, the timeline's text).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `incident_opened`: the first entry of every journal.
    IncidentOpened(IncidentOpened),
    /// `level_changed`.
    LevelChanged(LevelChanged),
    /// `phase_changed`.
    PhaseChanged(PhaseChanged),
    /// `item_ticked`: a checklist item done, by a person or observed.
    ItemTicked(ItemTicked),
    /// `item_skipped`.
    ItemSkipped(ItemSkipped),
    /// `item_assigned`: an item given to a role.
    ItemAssigned(ItemAssigned),
    /// `role_assigned`: a role given to a person.
    RoleAssigned(RoleAssigned),
    /// `note`: typed by a person, or written by the console (`system`).
    Note(Note),
    /// `field_set`: a message field filled.
    FieldSet(FieldSet),
    /// `field_waived`: a message field waived.
    FieldWaived(FieldWaived),
    /// `precheck`: a rollback's pre-check ran.
    Precheck(Precheck),
    /// `rollback_intended`: a rollback (single, transaction group or batch) is about to
    /// run; written, and synced to disk, before any money moves.
    RollbackIntended(RollbackIntended),
    /// `rollback`: a rollback (single, transaction group or batch) ended.
    Rollback(Rollback),
    /// `rollback_settled`: what the database shows an earlier rollback of this incident did,
    /// where its `rollback` entry could not know (a lost reply, unknown outcomes, an
    /// interrupted run, an intent with no outcome).
    RollbackSettled(RollbackSettled),
    /// `postcheck`: a rollback's post-check ran.
    Postcheck(Postcheck),
    /// `maintenance`: maintenance mode switched by this console or the CLI.
    Maintenance(Maintenance),
    /// `maintenance` with `seen_in_database`: switched outside this console.
    MaintenanceSeen(MaintenanceSeen),
    /// `audit`: the ledger audit ran.
    Audit(Audit),
    /// `message_copied`: a message was copied out and written to a file.
    MessageCopied(MessageCopied),
    /// `report_written`: the post-incident report was written.
    ReportWritten(ReportWritten),
    /// `time_set`: one of the incident's times (impact began, detected, mitigated,
    /// resolved) set or corrected.
    TimeSet(TimeSet),
    /// `incident_closed`: the incident is over; its update timers stop.
    IncidentClosed(IncidentClosed),
    /// `release_rollback`: the execution system taken back to an earlier release.
    ReleaseRollback(ReleaseRollback),
    /// `service_rollback`: the deployed service taken back to an earlier version.
    ServiceRollback(ServiceRollback),
    /// `bundle_written`: the incident's evidence bundle was written.
    BundleWritten(BundleWritten),
    /// `breaker`: the circuit breaker opened or closed.
    Breaker(Breaker),
    /// `approval`: a request for a second person filed, decided, withdrawn or used.
    Approval(Approval),
    /// A kind this version does not know, or data it does not read exactly: kept as read.
    Unknown(Unknown),
}

/// `incident_opened`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentOpened {
    /// The incident's id (letters, digits, dashes).
    pub id: String,
    /// What happened, in a few words.
    pub title: String,
    /// The level it was opened at, written as its number.
    #[serde(with = "level_number")]
    pub level: Level,
    /// Why that level.
    pub reason: String,
}

/// `level_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelChanged {
    /// The level before, as its number.
    #[serde(with = "level_number")]
    pub from: Level,
    /// The level after, as its number.
    #[serde(with = "level_number")]
    pub to: Level,
    /// Why.
    pub reason: String,
}

/// `phase_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseChanged {
    /// The phase left.
    pub from: Phase,
    /// The phase entered.
    pub to: Phase,
}

/// `item_ticked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemTicked {
    /// The checklist item's id.
    pub item: String,
    /// Observed by the console rather than ticked by a person.
    pub auto: bool,
    /// For an approval item: who approved, in the ticker's words (name and role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// `item_skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemSkipped {
    /// The checklist item's id.
    pub item: String,
    /// Why it was skipped.
    pub reason: String,
}

/// `item_assigned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAssigned {
    /// The checklist item's id.
    pub item: String,
    /// The role that owns it.
    pub role: Role,
}

/// `role_assigned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleAssigned {
    /// The role.
    pub role: Role,
    /// Who holds it now.
    pub person: String,
}

/// `note`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// The text (line breaks allowed).
    pub text: String,
    /// Written by the console itself; the member is only present when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
}

/// `field_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSet {
    /// The field's name (a-z, 0-9, _).
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `field_waived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldWaived {
    /// The field's name.
    pub name: String,
}

/// `precheck`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precheck {
    /// The order checked.
    pub order: Uuid,
    /// Its user.
    pub user: Uuid,
    /// Whether the rollback may go ahead.
    pub ready: bool,
    /// The checks that failed.
    pub failed: Vec<String>,
}

/// `rollback_intended`: what a rollback is about to do, before it runs. Its outcome is the
/// `rollback` with the same `operation`; an intent without one means the outcome was never
/// written (the journal failed after the money moved, or the process died): the database
/// says what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackIntended {
    /// Identifies the rollback: its outcome's `operation`, and the `batch_id` of its audit rows.
    pub operation: Uuid,
    /// single, transaction or batch.
    pub mode: String,
    /// The order it starts from; `null` for a batch.
    pub order: Option<Uuid>,
    /// Its user; `null` for a batch.
    pub user: Option<Uuid>,
    /// Orders it is to roll back (the pre-check's or the preview's count).
    pub orders: u64,
    /// Cash it is to give back (the pre-check's or the preview's figure), as a decimal string.
    pub refund: String,
    /// The reason to be recorded on the orders.
    pub reason: String,
}

/// `rollback_settled`: the figures of an operation as its audit rows show them, read after
/// the fact; they replace what the journal said of it before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackSettled {
    /// The operation (its intent's and outcome's `operation`, its audit rows' `batch_id`).
    pub operation: Uuid,
    /// Orders its audit rows show rolled back.
    pub orders: u64,
    /// Cash they gave back, as a decimal string.
    pub refunded: String,
    /// What the journal said of it before, in words.
    pub was: String,
    /// The users whose orders its audit rows show rolled back. Written only when known, so
    /// an entry written before it keeps its bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<Uuid>,
}

/// `rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// single, transaction or batch.
    pub mode: String,
    /// The order it started from; `null` for a batch.
    pub order: Option<Uuid>,
    /// Its user; `null` for a batch.
    pub user: Option<Uuid>,
    /// Orders rolled back.
    pub orders: u64,
    /// Users touched.
    pub users: u64,
    /// Cash given back, as a decimal string.
    pub refunded: String,
    /// Whether it completed.
    pub success: bool,
    /// What happened, in words.
    pub detail: String,
    /// The reason recorded on the orders.
    pub reason: String,
    /// The `operation` of the intent this is the outcome of. Written only when known, so a
    /// rollback recorded before intents existed keeps its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Uuid>,
    /// The users whose orders it rolled back (each once), so that users affected count
    /// people, not runs. Written only when some were, so a rollback recorded before it
    /// keeps its bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<Uuid>,
}

/// `postcheck`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postcheck {
    /// The order checked.
    pub order: Uuid,
    /// Whether every check passed.
    pub successful: bool,
    /// The checks that failed.
    pub failed: Vec<String>,
}

/// `release_rollback`: the execution system taken back to an earlier release, and its proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRollback {
    /// The release it went back to.
    pub target: String,
    /// The releases reverted, newest first.
    pub reverted: Vec<String>,
    /// What was archived: one line per column or table (values, checksum, archive set).
    pub archived: Vec<String>,
    /// Every check of the proof held.
    pub proved: bool,
    /// The checks that failed.
    pub failed: Vec<String>,
    /// Objects changed by hand that the revert discarded (accepted drift).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Why.
    pub reason: String,
}

/// `service_rollback`: the deployed service taken back to an earlier version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRollback {
    /// The version it ran before (None: could not be read).
    pub from: Option<String>,
    /// The version it was to run.
    pub expected: String,
    /// The version it runs after (None: could not be read).
    pub after: Option<String>,
    /// The version is the expected one and the probe passed.
    pub passed: bool,
    /// What happened, in a sentence.
    pub verdict: String,
}

/// `breaker`: the circuit breaker opened (every rollback refused) or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// Open or closed.
    pub open: bool,
    /// Why.
    pub reason: String,
    /// person, postcheck_failed, ledger_audit or failures.
    pub source: String,
}

/// `approval`: four-eyes approval of dangerous work, as this incident saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The request's id.
    pub id: Uuid,
    /// requested, approved, denied, cancelled or used.
    pub action: String,
    /// batch, group, release_rollback or breaker_close.
    pub kind: String,
    /// Orders in its scope (0 for a release or the breaker).
    pub orders: u64,
    /// What they refund, as the server counted it.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: rust_decimal::Decimal,
    /// The release it takes the system back to, if that is its kind.
    pub target: Option<String>,
    /// The request's reason (requested, used) or the decision's (approved, denied, cancelled).
    pub reason: String,
    /// Who requested (requested, used, cancelled) or decided (approved, denied).
    pub by: String,
}

/// `bundle_written`: the incident's evidence bundle was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleWritten {
    /// Where.
    pub path: String,
    /// SHA-256 of its manifest (which lists every file's).
    pub manifest_sha256: String,
    /// Files in it.
    pub files: u64,
    /// Signed with the configured key.
    pub signed: bool,
}

/// `maintenance`, as switched by this console or the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Maintenance {
    /// On or off.
    pub on: bool,
    /// Why.
    pub reason: String,
    /// The probe saw new orders refused (on) or accepted (off).
    pub verified: bool,
    /// One symbol's maintenance (the book trades on); absent: every symbol's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// `maintenance` seen in the database: someone switched it outside this console. Written
/// with `"verified":false,"seen_in_database":true` besides its fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaintenanceSeen {
    /// On or off.
    pub on: bool,
    /// The reason the database holds.
    pub reason: String,
    /// Who switched it, if the database says.
    pub by: Option<String>,
    /// Since when, if the database says.
    pub since: Option<DateTime<Utc>>,
}

/// How [`MaintenanceSeen`] is written: its fields and the two constant members.
#[derive(Serialize)]
struct MaintenanceSeenData<'a> {
    on: bool,
    reason: &'a str,
    verified: bool,
    seen_in_database: bool,
    by: &'a Option<String>,
    since: &'a Option<DateTime<Utc>>,
}

impl Serialize for MaintenanceSeen {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MaintenanceSeenData {
            on: self.on,
            reason: &self.reason,
            verified: false,
            seen_in_database: true,
            by: &self.by,
            since: &self.since,
        }
        .serialize(serializer)
    }
}

/// `audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Ledger invariants violated.
    pub violations: u64,
}

/// `message_copied`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageCopied {
    /// The template's name.
    pub template: String,
    /// Its audience (customer, internal, ...).
    pub audience: String,
    /// The file it was written to.
    pub path: String,
}

/// `report_written`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportWritten {
    /// The report's file.
    pub path: String,
    /// Lowercase hex SHA-256 of its text.
    pub hash: String,
}

/// `time_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeSet {
    /// impact_began, detected, mitigated or resolved.
    pub which: TimeKind,
    /// The time (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// "commander" when a person typed it, "observed: <what>" when taken from the database.
    pub source: String,
}

/// `incident_closed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentClosed {
    /// Why it is over.
    pub reason: String,
}

/// An entry this version does not read: its kind and data exactly as on disk. Only
/// [`Event::from_parts`] makes one, so that it never holds what a typed variant would.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    kind: String,
    data: Value,
}

impl Unknown {
    /// The entry's `kind`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The entry's `data`, as read.
    pub fn data(&self) -> &Value {
        &self.data
    }
}

impl Event {
    /// The `kind` written in the journal.
    pub fn kind(&self) -> &str {
        match self {
            Event::IncidentOpened(_) => "incident_opened",
            Event::LevelChanged(_) => "level_changed",
            Event::PhaseChanged(_) => "phase_changed",
            Event::ItemTicked(_) => "item_ticked",
            Event::ItemSkipped(_) => "item_skipped",
            Event::ItemAssigned(_) => "item_assigned",
            Event::RoleAssigned(_) => "role_assigned",
            Event::Note(_) => "note",
            Event::FieldSet(_) => "field_set",
            Event::FieldWaived(_) => "field_waived",
            Event::Precheck(_) => "precheck",
            Event::RollbackIntended(_) => "rollback_intended",
            Event::Rollback(_) => "rollback",
            Event::RollbackSettled(_) => "rollback_settled",
            Event::Postcheck(_) => "postcheck",
            Event::Maintenance(_) | Event::MaintenanceSeen(_) => "maintenance",
            Event::Audit(_) => "audit",
            Event::MessageCopied(_) => "message_copied",
            Event::ReportWritten(_) => "report_written",
            Event::TimeSet(_) => "time_set",
            Event::IncidentClosed(_) => "incident_closed",
            Event::ReleaseRollback(_) => "release_rollback",
            Event::ServiceRollback(_) => "service_rollback",
            Event::BundleWritten(_) => "bundle_written",
            Event::Breaker(_) => "breaker",
            Event::Approval(_) => "approval",
            Event::Unknown(u) => &u.kind,
        }
    }

    /// The `data` written in the journal: always a JSON object (for an unknown kind, what
    /// was read; the journal refuses to append anything else).
    pub fn data(&self) -> Value {
        let data = match self {
            Event::IncidentOpened(d) => serde_json::to_value(d),
            Event::LevelChanged(d) => serde_json::to_value(d),
            Event::PhaseChanged(d) => serde_json::to_value(d),
            Event::ItemTicked(d) => serde_json::to_value(d),
            Event::ItemSkipped(d) => serde_json::to_value(d),
            Event::ItemAssigned(d) => serde_json::to_value(d),
            Event::RoleAssigned(d) => serde_json::to_value(d),
            Event::Note(d) => serde_json::to_value(d),
            Event::FieldSet(d) => serde_json::to_value(d),
            Event::FieldWaived(d) => serde_json::to_value(d),
            Event::Precheck(d) => serde_json::to_value(d),
            Event::RollbackIntended(d) => serde_json::to_value(d),
            Event::Rollback(d) => serde_json::to_value(d),
            Event::RollbackSettled(d) => serde_json::to_value(d),
            Event::Postcheck(d) => serde_json::to_value(d),
            Event::Maintenance(d) => serde_json::to_value(d),
            Event::MaintenanceSeen(d) => serde_json::to_value(d),
            Event::Audit(d) => serde_json::to_value(d),
            Event::MessageCopied(d) => serde_json::to_value(d),
            Event::ReportWritten(d) => serde_json::to_value(d),
            Event::TimeSet(d) => serde_json::to_value(d),
            Event::IncidentClosed(d) => serde_json::to_value(d),
            Event::ReleaseRollback(d) => serde_json::to_value(d),
            Event::ServiceRollback(d) => serde_json::to_value(d),
            Event::BundleWritten(d) => serde_json::to_value(d),
            Event::Breaker(d) => serde_json::to_value(d),
            Event::Approval(d) => serde_json::to_value(d),
            Event::Unknown(u) => return u.data.clone(),
        };
        // Plain structs of strings, numbers and lists always serialize; were one ever not
        // to, `null` is refused by the journal's append rather than written.
        data.unwrap_or(Value::Null)
    }

    /// The event a line's `kind` and `data` describe: typed when the data is exactly what
    /// this version writes for the kind, else [`Event::Unknown`] with both kept as read.
    pub fn from_parts(kind: &str, data: Value) -> Event {
        let typed = match kind {
            "incident_opened" => exact(&data, Event::IncidentOpened),
            "level_changed" => exact(&data, Event::LevelChanged),
            "phase_changed" => exact(&data, Event::PhaseChanged),
            "item_ticked" => exact(&data, Event::ItemTicked),
            "item_skipped" => exact(&data, Event::ItemSkipped),
            "item_assigned" => exact(&data, Event::ItemAssigned),
            "role_assigned" => exact(&data, Event::RoleAssigned),
            "note" => exact(&data, Event::Note),
            "field_set" => exact(&data, Event::FieldSet),
            "field_waived" => exact(&data, Event::FieldWaived),
            "precheck" => exact(&data, Event::Precheck),
            "rollback_intended" => exact(&data, Event::RollbackIntended),
            "rollback" => exact(&data, Event::Rollback),
            "rollback_settled" => exact(&data, Event::RollbackSettled),
            "postcheck" => exact(&data, Event::Postcheck),
            "maintenance" => exact(&data, Event::MaintenanceSeen).or_else(|| exact(&data, Event::Maintenance)),
            "audit" => exact(&data, Event::Audit),
            "message_copied" => exact(&data, Event::MessageCopied),
            "report_written" => exact(&data, Event::ReportWritten),
            "time_set" => exact(&data, Event::TimeSet),
            "incident_closed" => exact(&data, Event::IncidentClosed),
            "release_rollback" => exact(&data, Event::ReleaseRollback),
            "service_rollback" => exact(&data, Event::ServiceRollback),
            "bundle_written" => exact(&data, Event::BundleWritten),
            "breaker" => exact(&data, Event::Breaker),
            "approval" => exact(&data, Event::Approval),
            _ => None,
        };
        typed.unwrap_or_else(|| Event::Unknown(Unknown { kind: kind.to_string(), data }))
    }
}

/// `data` as `T`, if `T` writes it back unchanged: a member added, missing or written in
/// another form (an upper-case UUID, a float level) leaves the entry unknown rather than
/// silently different.
fn exact<T: DeserializeOwned>(data: &Value, wrap: fn(T) -> Event) -> Option<Event> {
    let event = wrap(T::deserialize(data).ok()?);
    (event.data() == *data).then_some(event)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A level as the journal writes it: its number, 1 to 3.
mod level_number {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::core::workflow::Level;

    /// Writes the level's number.
    pub fn serialize<S: Serializer>(level: &Level, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(level.number())
    }

    /// Reads 1, 2 or 3; anything else is not a level.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Level, D::Error> {
        let n = u8::deserialize(deserializer)?;
        Level::from_number(n).ok_or_else(|| D::Error::custom(format!("level {n} is not 1, 2 or 3")))
    }
}

/// The data of one kind, picked out of an [`Event`]: what
/// `Incident::records_of::<Rollback>()` selects by.
pub trait EventData {
    /// The data, if the event is of this kind.
    fn of(event: &Event) -> Option<&Self>;
}

/// `impl EventData` for data types that are each one variant's.
macro_rules! event_data {
    ($($variant:ident),* $(,)?) => {
        $(
            impl EventData for $variant {
                fn of(event: &Event) -> Option<&Self> {
                    match event {
                        Event::$variant(data) => Some(data),
                        _ => None,
                    }
                }
            }
        )*
    };
}

event_data!(
    IncidentOpened,
    LevelChanged,
    PhaseChanged,
    ItemTicked,
    ItemSkipped,
    ItemAssigned,
    RoleAssigned,
    Note,
    FieldSet,
    FieldWaived,
    Precheck,
    RollbackIntended,
    Rollback,
    RollbackSettled,
    Postcheck,
    Maintenance,
    MaintenanceSeen,
    Audit,
    MessageCopied,
    ReportWritten,
    TimeSet,
    IncidentClosed,
    ReleaseRollback,
    ServiceRollback,
    BundleWritten,
    Breaker,
    Approval,
    Unknown,
);

#[cfg(test)]
mod tests;
