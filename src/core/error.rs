//! Errors of the headless commands and the exit codes they map to.

use std::fmt;

/// Exit code: everything passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a check failed, a violation was found, or a rollback did not complete.
pub const EXIT_CHECK_FAILED: i32 = 1;
/// Exit code: the input was malformed; nothing was changed.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the database could not be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// An error a command reports to the user. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input (ids, times, files, flags); nothing was changed.
    #[error("{0}")]
    BadInput(String),
    /// The database server cannot be reached or refused the login.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// A check failed or a violation was found; the report says which.
    #[error("{0}")]
    CheckFailed(String),
    /// The sandbox PostgreSQL cannot be set up or started.
    #[error("{0}")]
    Sandbox(String),
    /// A database error while running a command.
    #[error("database error: {0}")]
    Database(DbErrorText),
    /// Any other failure (I/O on files, terminal).
    #[error("{0}")]
    Other(String),
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
            Error::BadInput(_) => EXIT_BAD_INPUT,
            Error::Unreachable(_) | Error::Sandbox(_) => EXIT_UNREACHABLE,
            Error::CheckFailed(_) | Error::Database(_) | Error::Other(_) => EXIT_CHECK_FAILED,
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

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Other(e.to_string())
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
