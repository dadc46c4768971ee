//! Why the workflow refuses: the checks on a person's text (reasons, names, notes, field
//! names), the refusals of a step, and a journal that does not describe an incident.

use super::Role;
use crate::core::workflow::{Level, Phase};

/// The longest reason (of a rollback, a level change, a skip, maintenance mode).
pub const REASON_MAX_CHARS: usize = 1000;

/// Why the workflow refuses a step or a text; nothing is recorded. The message says what
/// to do differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required text is empty.
    #[error("{what} is required")]
    Missing {
        /// What it is ("a reason to skip").
        what: &'static str,
    },
    /// A text is too long.
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// What it is.
        what: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A text holds a control or invisible character.
    #[error("{what} holds a control or invisible character ({shown})")]
    Hidden {
        /// What it is.
        what: &'static str,
        /// The character, made visible.
        shown: String,
    },
    /// An incident id that is not letters, digits and dashes.
    #[error("an incident id is letters, digits and dashes")]
    BadIncidentId,
    /// The level asked for is the level already.
    #[error("the incident is already Level {} ({})", .0.number(), .0.label())]
    SameLevel(Level),
    /// Phases only move forward.
    #[error("phases only move forward (now {}); a correction is a note", .0.label())]
    PhaseBackwards(Phase),
    /// The person already holds the role.
    #[error("{person} already holds {}", .role.label())]
    AlreadyHolds {
        /// Who.
        person: String,
        /// The role.
        role: Role,
    },
    /// No checklist item by that id (shown sanitized).
    #[error("no checklist item \"{0}\"")]
    NoItem(String),
    /// The item belongs to other levels.
    #[error("\"{item}\" is not part of a Level {} response", .level.number())]
    NotAtLevel {
        /// The item.
        item: String,
        /// The incident's level.
        level: Level,
    },
    /// An approval item is ticked by naming who approved.
    #[error("\"{0}\" is an approval: name who approved it (in the CLI: --approved-by)")]
    NeedsApprover(String),
    /// The item is done already.
    #[error("\"{0}\" is already done")]
    AlreadyDone(String),
    /// The item was skipped.
    #[error("\"{0}\" was skipped")]
    Skipped(String),
    /// A time that is in the future or out of order with the others.
    #[error(transparent)]
    Time(#[from] super::times::TimeRefusal),
    /// The incident was closed already.
    #[error("the incident was closed at {}", .0.format("%Y-%m-%d %H:%M:%S UTC"))]
    AlreadyClosed(chrono::DateTime<chrono::Utc>),
    /// A field name that is not a-z, 0-9 and _ (shown sanitized).
    #[error("a field name is a-z, 0-9 and _: \"{0}\"")]
    BadFieldName(String),
}

/// Why a journal does not describe an incident.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnIncident {
    /// No entries.
    #[error("the journal is empty")]
    Empty,
    /// The first entry is another kind.
    #[error("the journal starts with {0}, not incident_opened")]
    StartsWith(String),
    /// The opening entry is not as this version writes it.
    #[error("incident_opened without a level 1-3, or not as this version writes it")]
    BadOpening,
    /// The opening entry's id could name a directory it must not.
    #[error("incident_opened with an id that is not letters, digits and dashes")]
    BadId,
}

/// A reason, checked as every reason is (`what` names it in the message): required, one
/// line, at most 1000 characters, nothing hidden. Returns it trimmed.
pub fn reason_ok(s: &str, what: &'static str) -> Result<String, Refusal> {
    text_ok(s, what, REASON_MAX_CHARS)
}

/// A person's text: required, at most `max` characters, no control or invisible
/// characters (line breaks allowed in long texts: notes and message fields).
pub(super) fn text_ok(s: &str, what: &'static str, max: usize) -> Result<String, Refusal> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Refusal::Missing { what });
    }
    if t.chars().count() > max {
        return Err(Refusal::TooLong { what, max });
    }
    if let Some(c) = crate::core::sanitize::first_hidden(t, max > 1000) {
        return Err(Refusal::Hidden { what, shown: crate::core::sanitize::line(&c.to_string()).into_owned() });
    }
    Ok(t.to_string())
}

pub(super) fn field_name(name: &str) -> Result<String, Refusal> {
    let n = name.trim();
    if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(Refusal::BadFieldName(crate::core::sanitize::line(name).into_owned()));
    }
    Ok(n.to_string())
}
