//! Errors of the headless commands and the exit codes they map to.

use std::fmt;
use std::path::PathBuf;

/// Exit code: everything passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a check failed, a violation was found, or a rollback did not complete.
pub const EXIT_CHECK_FAILED: i32 = 1;
/// Exit code: the input was malformed; nothing was changed.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the database could not be reached.
pub const EXIT_UNREACHABLE: i32 = 3;
/// Exit code: an action that moves money was not done because its intent could not be
/// written to the incident's journal; nothing was changed.
pub const EXIT_NOT_JOURNALED: i32 = 4;
/// Exit code: a rollback ran (money may have moved) but its outcome could not be written
/// to the incident's journal; the database is the record.
pub const EXIT_OUTCOME_NOT_JOURNALED: i32 = 5;

/// An error a command reports to the user. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input (ids, times, files, flags); nothing was changed.
    #[error("{0}")]
    BadInput(String),
    /// The database server cannot be reached or refused the login.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// A call that moves money lost its reply and the database could not be asked
    /// whether it committed: it may have.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A check failed or a violation was found; the report says which.
    #[error("{0}")]
    CheckFailed(String),
    /// The sandbox PostgreSQL cannot be set up or started.
    #[error("{0}")]
    Sandbox(String),
    /// A database error while running a command.
    #[error("database error: {0}")]
    Database(DbErrorText),
    /// The incident workflow refused a step or a text; nothing was recorded.
    #[error(transparent)]
    Refused(#[from] crate::core::workflow::incident::Refusal),
    /// A journal that does not describe an incident.
    #[error("the journal does not describe an incident: {0}")]
    NotAnIncident(#[from] crate::core::workflow::incident::NotAnIncident),
    /// A file or directory could not be read, written or created.
    #[error("cannot {action} {}: {source}", shown(path))]
    File {
        /// What was being done ("read", "write", "create", "lock", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No home directory to keep incidents, configuration or logs in.
    #[error("cannot determine the user's {0} directory (is HOME set?)")]
    NoHome(&'static str),
    /// The database answered in a shape this version does not read.
    #[error("unexpected answer from {what}: {detail}")]
    UnexpectedAnswer {
        /// The function or query.
        what: String,
        /// What did not fit.
        detail: String,
    },
    /// A value could not be written as JSON.
    #[error("cannot write {what} as JSON: {source}")]
    Encode {
        /// What it was.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A helper program (pgbench) could not run or failed.
    #[error("{tool}: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// What happened.
        detail: String,
    },
    /// The intent of an action that moves money could not be written to the incident's
    /// journal (appended and synced), so the action did not run.
    #[error(
        "not done: the intent could not be written to {journal}: {source}. Nothing was changed. \
         Fix the journal (space, permissions, `incident verify`), or act without it with --no-journal \
         (the waiver is recorded in the database's audit log)"
    )]
    NotJournaled {
        /// Which journal ("the journal of incident INC-…", or "the incidents directory"
        /// when not even the current incident could be read).
        journal: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// A task of this process stopped before it finished (it panicked or was aborted).
    #[error("{what} stopped: {detail}")]
    Task {
        /// The task.
        what: &'static str,
        /// How.
        detail: String,
    },
}

impl Error {
    /// A file error: `action` as in "cannot {action} {path}".
    pub fn file(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File { action, path: path.into(), source }
    }

    /// A task (`spawn`, `spawn_blocking`) that ended without its answer.
    pub fn task(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Task { what, detail: detail.to_string() }
    }
}

/// A path as it may be printed: control characters shown, not executed.
fn shown(path: &std::path::Path) -> String {
    crate::core::sanitize::line(&path.display().to_string()).into_owned()
}

/// The printable part of a database error: SQLSTATE and message, no connection details.
#[derive(Debug)]
pub struct DbErrorText {
    /// The SQLSTATE, when the server sent one.
    pub code: Option<String>,
    /// The message, sanitized for the terminal.
    pub message: String,
}

impl fmt::Display for DbErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadInput(_) | Error::Refused(_) => EXIT_BAD_INPUT,
            Error::Unreachable(_) | Error::Sandbox(_) | Error::OutcomeUnknown(_) => EXIT_UNREACHABLE,
            Error::NotJournaled { .. } => EXIT_NOT_JOURNALED,
            Error::CheckFailed(_)
            | Error::Database(_)
            | Error::NotAnIncident(_)
            | Error::File { .. }
            | Error::NoHome(_)
            | Error::UnexpectedAnswer { .. }
            | Error::Encode { .. }
            | Error::Tool { .. }
            | Error::Terminal(_)
            | Error::Task { .. } => EXIT_CHECK_FAILED,
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Database(e) => e.code.as_deref(),
            _ => None,
        }
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
