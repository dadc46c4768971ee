//! Telling people what is happening: message templates filled from the incident (strictly:
//! a missing variable is an error that names it), required fields a person must fill or
//! waive, a leak check on customer text, drafts whose edits survive re-filling, copying
//! through OSC 52 (the file written every time is `store::files`), and the update cadence
//! per level.
//!
//! Errors are [`CommsError`] so the console can react to each case (show the missing
//! fields, highlight the leaked text); they convert into [`crate::core::error::Error`] for the
//! headless commands.

pub(crate) mod cadence;
mod clipboard;
pub(crate) mod context;
mod header;
mod leak;
mod merge;
mod templates;

use std::fmt;

pub use cadence::{customer_notice_due, is_overdue, next_update_due, time_left, update_interval};
pub use clipboard::{osc52, osc52_tmux};
pub use context::{
    AuditResult, CheckLine, CheckResult, InternalRefs, JournalSummary, LevelChange, MaintenancePeriod,
    MaintenanceState, MessageContext, OpenItem, PhaseSpan, RoleAssignment, RollbackRecord, SentMessage, TimelineEntry,
};
pub use leak::{Leak, LeakKind, scan_leaks};
pub use merge::{Draft, refill};
pub use templates::{
    Audience, Blockers, Rendered, TO_FILL_PREFIX, TemplateInfo, TemplateSource, TemplateStore, UserTemplate,
    WAIVED_MARKER, field_words, placeholder, sentence_of,
};

/// What went wrong preparing a message.
#[derive(Debug, thiserror::Error)]
pub enum CommsError {
    /// No template by that name.
    #[error("no template named {name:?} (known: {known})")]
    UnknownTemplate {
        /// The name asked for.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// The template refers to a variable the context does not have.
    #[error("template {template}: missing variable `{variable}`{}", line_suffix(*.line))]
    MissingVariable {
        /// The template's file name.
        template: String,
        /// The variable, as written in the template (e.g. `audit.at`).
        variable: String,
        /// The line in the template, when known.
        line: Option<usize>,
    },
    /// The template cannot be used: a syntax error, a bad header, an unreadable file.
    #[error("template {template}: {message}")]
    BadTemplate {
        /// The template's file name.
        template: String,
        /// What is wrong, with the line when known.
        message: String,
    },
    /// Required fields are neither filled nor waived; the message cannot be copied yet.
    #[error("{template}: required fields still empty: {} (fill them or waive them)", .fields.join(", "))]
    FieldsMissing {
        /// The template's name.
        template: String,
        /// The fields, in the template's order.
        fields: Vec<String>,
    },
    /// A customer message contains internal details; it cannot be copied.
    #[error("{template}: internal details in a customer message: {}", Joined(.leaks))]
    Leak {
        /// The template's name.
        template: String,
        /// What was found.
        leaks: Vec<Leak>,
    },
    /// The context is not shaped as templates expect (not an object, fields not strings).
    #[error("message context: {0}")]
    BadContext(String),
}

/// Result of this module.
pub type Result<T, E = CommsError> = std::result::Result<T, E>;

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

struct Joined<'a>(&'a [Leak]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

impl From<CommsError> for crate::core::error::Error {
    fn from(e: CommsError) -> Self {
        use crate::core::error::Error;
        let text = crate::core::sanitize::line(&e.to_string()).into_owned();
        match e {
            // The person can fix these by changing what they pass or fill in.
            CommsError::UnknownTemplate { .. }
            | CommsError::MissingVariable { .. }
            | CommsError::BadTemplate { .. }
            | CommsError::FieldsMissing { .. }
            | CommsError::BadContext(_) => Error::BadInput(text),
            // A check ran and failed: the message must not go out as it is.
            CommsError::Leak { .. } => Error::CheckFailed(text),
        }
    }
}
