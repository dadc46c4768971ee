//! Database errors as the domain's errors: the SQLSTATE and a sanitized message, with a
//! hint where the server's own would mislead, and no connection details.

use crate::core::error::{DbErrorText, Error};

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned());
                // Login refused, unknown database, server shutting down: the database
                // is not usable from here, whatever the query was.
                let unreachable =
                    code.as_deref().is_some_and(|c| c.starts_with("28") || c == "3D000" || c.starts_with("57P"));
                // The HINT says what to do next; keep it with the message.
                let hint = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.hint())
                    .map(|h| format!(" (hint: {})", crate::core::sanitize::line(h)))
                    .unwrap_or_default();
                // A table or function of ours missing: most likely the wrong database, or
                // one never migrated.
                // (PostgreSQL's own hint for a missing function, about type casts, misleads.)
                let hint = if matches!(code.as_deref(), Some("42P01" | "42883")) {
                    " (is this the right database, and migrated? `incident-console migrate --dry-run` shows what \
                     is missing)"
                        .to_string()
                } else {
                    hint
                };
                let message = format!("{}{hint}", crate::core::sanitize::line(db.message()));
                if unreachable { Error::Unreachable(message) } else { Error::Database(DbErrorText { code, message }) }
            }
            E::Io(io) => Error::Unreachable(crate::core::sanitize::line(&io.to_string()).into_owned()),
            E::Tls(t) => Error::Unreachable(format!("TLS: {}", crate::core::sanitize::line(&t.to_string()))),
            E::PoolTimedOut => Error::Unreachable("timed out waiting for a connection".into()),
            E::PoolClosed => Error::Unreachable("the connection pool is closed".into()),
            E::Configuration(c) => {
                Error::BadInput(format!("invalid database URL: {}", crate::core::sanitize::line(&c.to_string())))
            }
            other => Error::Database(DbErrorText {
                code: None,
                message: crate::core::sanitize::line(&other.to_string()).into_owned(),
            }),
        }
    }
}
