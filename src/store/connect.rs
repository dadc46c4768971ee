//! How the console reaches PostgreSQL: the URL (or the sandbox), the settings every session
//! carries, the check that the operator's name arrived, and a printable description with
//! the password hidden.
//!
//! Nothing is sent as a startup parameter but the application name: a pooler may drop
//! (PgBouncer's `ignore_startup_parameters`) or refuse `options` and `extra_float_digits`.
//! The settings are set after connecting instead, for the session or, behind a
//! transaction pooler, at the start of every transaction (`db::scope`); and after
//! connecting the server is asked what it will record (`session_operator()`): a name that
//! did not arrive, or that the login may not use, is refused before anything is written.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, Executor, PgConnection, Postgres};

use crate::core::error::{Error, Result};
use crate::store::db::{self, Db, DbConn, SessionSettings};

/// How the server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Directly, or through a pooler that keeps a server session per client (PgBouncer's
    /// session pooling): settings are set once per connection, the dashboard LISTENs.
    #[default]
    Session,
    /// Through a pooler that lends a server connection per transaction (PgBouncer's
    /// transaction pooling): every statement runs in a transaction of its own that sets
    /// the settings again, and the dashboard polls instead of listening.
    Transaction,
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "session" | "none" | "direct" => Ok(Pooling::Session),
            "transaction" => Ok(Pooling::Transaction),
            other => {
                Err(format!("{other:?} is not a pooling mode: session (direct, or a session pooler) or transaction"))
            }
        }
    }
}

/// What every session of one invocation tells the server about itself.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The name claimed for every audit row (recorded with the login).
    pub operator: String,
    /// Server-side limit on one statement (zero: none).
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock (zero: none).
    pub lock_timeout: Duration,
    /// How the server is reached.
    pub pooling: Pooling,
    /// On the sandbox, connect as its second login (the other person of four eyes).
    pub second_login: bool,
}

/// Where to connect and what every session is told about itself.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The database URL. Never printed as is: see [`redact_url`].
    pub url: String,
    /// True when the URL is the console's own sandbox cluster.
    pub is_sandbox: bool,
    /// The name claimed for every audit row (recorded with the login).
    pub operator: String,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// Server-side limit on one statement (zero: none).
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock (zero: none).
    pub lock_timeout: Duration,
    /// How the server is reached.
    pub pooling: Pooling,
}

impl ConnectSettings {
    /// Connection options for sqlx: no startup parameter a pooler would drop or refuse,
    /// and behind a transaction pooler no statement cache.
    pub fn options(&self) -> Result<PgConnectOptions> {
        let mut opts = PgConnectOptions::from_str(&libpq_compatible(&self.url)).map_err(|e| {
            Error::BadInput(format!(
                "invalid database URL {}: {}",
                redact_url(&self.url),
                strip_url(&e.to_string(), &self.url)
            ))
        })?;
        // A socket or loopback server needs no TLS; a remote one should use it when offered.
        if (opts.get_socket().is_some() || is_local_host(opts.get_host())) && !self.url.contains("sslmode=") {
            opts = opts.ssl_mode(PgSslMode::Disable);
        }
        opts = opts.application_name(&self.application_name).extra_float_digits(None);
        if self.pooling == Pooling::Transaction {
            opts = opts.statement_cache_capacity(0);
        }
        Ok(opts)
    }

    /// What every statement runs with.
    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            operator: self.operator.clone(),
            statement_timeout_ms: self.statement_timeout.as_millis().try_into().unwrap_or(u64::MAX),
            lock_timeout_ms: self.lock_timeout.as_millis().try_into().unwrap_or(u64::MAX),
            ..SessionSettings::default()
        }
    }

    /// A pool of connections with the session's settings, once the server has said the
    /// operator's name arrived and is the login's to use.
    pub async fn pool(&self, max_connections: u32) -> Result<Db> {
        let db = match self.pooling {
            Pooling::Session => Db::sessions(self.session_pool_unchecked(max_connections).await?),
            Pooling::Transaction => {
                let (opts, first) = self.first_connection().await?;
                let _ = first.close().await;
                let pool = self.pool_options(max_connections).connect_with(opts).await?;
                Db::per_transaction(pool, self.session_settings())
            }
        };
        if let Err(e) = self.check_operator(&db).await {
            db.close().await;
            return Err(e);
        }
        Ok(db)
    }

    /// One dedicated connection (batch workers), checked as [`ConnectSettings::pool`] is.
    pub async fn connection(&self) -> Result<DbConn> {
        let opts = self.options()?;
        let mut conn = PgConnection::connect_with(&opts).await?;
        let mut conn = match self.pooling {
            Pooling::Session => {
                db::apply_settings(&mut conn, &self.session_settings(), false).await?;
                DbConn::own(conn, None)
            }
            Pooling::Transaction => DbConn::own(conn, Some(self.session_settings())),
        };
        self.check_operator(&mut conn).await?;
        Ok(conn)
    }

    /// A bare connection for the console's health probe: none of the session's settings
    /// and no check of the operator's name (the probe writes nothing), so that it costs one
    /// connect; given up after `within`, since a server that stopped answering leaves a
    /// connect waiting forever.
    pub async fn probe_connection(&self, within: Duration) -> Result<PgConnection> {
        let opts = self.options()?;
        match tokio::time::timeout(within, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                Err(Error::Unreachable(format!("no answer to a new connection within {} ms", within.as_millis())))
            }
        }
    }

    /// A message about this connection fit for the screen: the URL and any piece of its
    /// password taken out, control characters too.
    pub fn scrub(&self, message: &str) -> String {
        strip_url(message, &self.url)
    }

    /// A pool for work that needs sessions of its own (migrating, seeding, benchmarks,
    /// the drill): refused behind a transaction pooler.
    pub async fn session_pool(&self, max_connections: u32, what: &str) -> Result<PgPool> {
        if self.pooling == Pooling::Transaction {
            return Err(db::needs_a_session(what));
        }
        self.session_pool_unchecked(max_connections).await
    }

    /// A connection with a session of its own: refused behind a transaction pooler.
    pub async fn session_connection(&self, what: &str) -> Result<PgConnection> {
        if self.pooling == Pooling::Transaction {
            return Err(db::needs_a_session(what));
        }
        let (_, mut conn) = self.session_first().await?;
        db::apply_settings(&mut conn, &self.session_settings(), false).await?;
        Ok(conn)
    }

    async fn session_pool_unchecked(&self, max_connections: u32) -> Result<PgPool> {
        let (opts, first) = self.session_first().await?;
        let _ = first.close().await;
        let settings = self.session_settings();
        Ok(self
            .pool_options(max_connections)
            .after_connect(move |conn, _| {
                let settings = settings.clone();
                Box::pin(async move { db::apply_settings(conn, &settings, false).await.map_err(into_sqlx) })
            })
            .connect_with(opts)
            .await?)
    }

    /// One plain attempt first: the pool would retry a refused connection until its
    /// timeout and then report only the timeout, not the cause.
    async fn first_connection(&self) -> Result<(PgConnectOptions, PgConnection)> {
        let opts = self.options()?;
        match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => Ok((opts, conn)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(Error::Unreachable("no answer within 10 s".into())),
        }
    }

    /// The first connection of a session-pooled invocation, once it is clear the server
    /// is not reached through a transaction pooler after all: there the session settings
    /// set next would stay on a server connection other clients get (their timeouts, their
    /// operator's name), and would not stay with ours. Two client connections open at
    /// once have two backends unless a pooler lends them the same one; this sees a
    /// transaction pooler that is not busy (PgBouncer hands the last used server connection
    /// out again), not every busy one, so `--pooling` stays the user's to say.
    async fn session_first(&self) -> Result<(PgConnectOptions, PgConnection)> {
        // Both at once: the second connect does not wait for the first (a connect is most
        // of what the console waits for before its first page). A refused first connection
        // is still reported by its own cause.
        let opts = self.options()?;
        let (first, second) = tokio::join!(self.first_connection(), PgConnection::connect_with(&opts));
        let (opts, mut first) = match first {
            Ok(f) => f,
            Err(e) => {
                if let Ok(second) = second {
                    let _ = second.close().await;
                }
                return Err(e);
            }
        };
        let shared = async {
            let mut second = second?;
            let pids = (db::backend_pid_unprepared(&mut first).await?, db::backend_pid_unprepared(&mut second).await?);
            let _ = second.close().await;
            Ok::<bool, Error>(pids.0 == pids.1)
        }
        .await;
        match shared {
            Ok(false) => Ok((opts, first)),
            Ok(true) => {
                let _ = first.close().await;
                Err(Error::BadInput(
                    "two connections share one server session: this is a transaction pooler (PgBouncer's \
                     pool_mode = transaction), where session settings would reach other clients. \
                     Pass --pooling transaction (or set INCIDENT_POOLING=transaction)"
                        .into(),
                ))
            }
            Err(e) => {
                let _ = first.close().await;
                Err(e)
            }
        }
    }

    fn pool_options(&self, max_connections: u32) -> PgPoolOptions {
        PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10))
    }

    /// Asks the server what this session's rows will say, and refuses a name that did not
    /// arrive or that the login may not use (a database without the question: nothing to
    /// check).
    async fn check_operator<'e, E: Executor<'e, Database = Postgres>>(&self, e: E) -> Result<()> {
        match db::session_operator(e).await? {
            Some(who) => {
                who.check(&self.operator).map_err(|why| Error::BadInput(crate::core::sanitize::line(&why).into_owned()))
            }
            None => Ok(()),
        }
    }

    /// What the console's header shows: where, and how it learns of changes.
    pub fn label(&self) -> String {
        match self.pooling {
            Pooling::Session => self.describe(),
            Pooling::Transaction => format!("tx pooler, polling · {}", self.describe()),
        }
    }

    /// What to show the user: "sandbox" or "user@host:port/db", never the password.
    pub fn describe(&self) -> String {
        if self.is_sandbox {
            return "sandbox".to_string();
        }
        match PgConnectOptions::from_str(&libpq_compatible(&self.url)) {
            Ok(o) => {
                let place = match o.get_socket() {
                    // A socket directory can be long; its last component says enough.
                    Some(dir) => format!(
                        "socket {}",
                        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
                    ),
                    None => format!("{}:{}", o.get_host(), o.get_port()),
                };
                crate::core::sanitize::line(&format!(
                    "{}@{}/{}",
                    o.get_username(),
                    place,
                    o.get_database().unwrap_or("?")
                ))
                .into_owned()
            }
            Err(_) => redact_url(&self.url),
        }
    }
}

/// A database URL that may hold a password: `Debug` and `Display` show it redacted
/// ([`redact_url`]); only [`SecretUrl::expose`] gives the URL itself, to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(pub String);

impl SecretUrl {
    /// The URL itself, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", redact_url(&self.0))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// libpq takes `postgresql://user:pw@/db?host=/socket/dir` (an empty host, the socket in
/// the query); the URL parser underneath sqlx refuses an empty host after a userinfo. A
/// placeholder host is given, which the `host` parameter then replaces.
fn libpq_compatible(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest_at) = url.find("://").map(|i| i + 3) else { return url.into() };
    let authority_end = url[rest_at..].find('/').map_or(url.len(), |i| rest_at + i);
    let authority = &url[rest_at..authority_end];
    if authority.ends_with('@') && (url.contains("?host=") || url.contains("&host=")) {
        return format!("{}localhost{}", &url[..authority_end], &url[authority_end..]).into();
    }
    url.into()
}

fn is_local_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

/// The URL with any password replaced by `***`: the userinfo's password (up to the last
/// `@`, so an unencoded `/`, `?` or `@` in it is hidden too), `password=` query
/// parameters, and `password=` in a key=value connection string.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    for (start, end) in secret_spans(url).into_iter().rev() {
        out.replace_range(start..end, "***");
    }
    crate::core::sanitize::line(&out).into_owned()
}

/// Byte ranges of the secrets in a URL or key=value connection string, in order.
fn secret_spans(url: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut after_userinfo = 0;
    if let Some(scheme_end) = url.find("://") {
        let rest = scheme_end + 3;
        if let Some(at) = url[rest..].rfind('@').map(|i| rest + i)
            && let Some(colon) = url[rest..at].find(':').map(|i| rest + i)
        {
            spans.push((colon + 1, at));
            after_userinfo = at;
        }
    }
    // password=VALUE, as a query parameter (up to '&') or a key=value pair (up to a space,
    // or quoted).
    let lower = url.to_ascii_lowercase();
    let mut from = after_userinfo;
    while let Some(k) = lower[from..].find("password").map(|i| from + i) {
        let mut v = k + "password".len();
        while url[v..].starts_with(' ') {
            v += 1;
        }
        if !url[v..].starts_with('=') {
            from = v;
            continue;
        }
        v += 1;
        while url[v..].starts_with(' ') {
            v += 1;
        }
        let end = if url[v..].starts_with('\'') {
            url[v + 1..].find('\'').map_or(url.len(), |i| v + 1 + i + 1)
        } else {
            url[v..].find(['&', ' ']).map_or(url.len(), |i| v + i)
        };
        if end > v {
            spans.push((v, end));
        }
        from = end;
    }
    spans
}

/// Removes the raw URL, and any piece of its password, from a message that might quote
/// them.
fn strip_url(message: &str, url: &str) -> String {
    let mut m = message.replace(url, &redact_url(url));
    for (start, end) in secret_spans(url) {
        let secret = &url[start..end];
        if secret.chars().count() >= 3 {
            m = m.replace(secret, "***");
        }
        // The parser may quote a piece of it (e.g. "invalid port number" after a '/').
        for piece in secret.split(['/', '?', '@', ':']).filter(|p| p.chars().count() >= 2) {
            m = m.replace(piece, "***");
        }
    }
    crate::core::sanitize::line(&m).into_owned()
}

/// An error of ours where sqlx wants one of its own (a pool's connect hook).
fn into_sqlx(e: Error) -> sqlx::Error {
    sqlx::Error::Configuration(e.to_string().into())
}

/// The operator's name as given: the flag when not blank, else the default.
pub fn operator_name(flag: Option<&str>) -> String {
    flag.map(str::trim).filter(|o| !o.is_empty()).map_or_else(default_operator, str::to_string)
}

/// Refuses an operator name that is empty, longer than 200 characters, or holds control
/// or invisible characters: it goes on every audit row and before people on terminals.
pub fn check_operator(name: &str) -> Result<()> {
    use crate::core::journal::OPERATOR_MAX_CHARS;
    let n = name.chars().count();
    if n == 0 || n > OPERATOR_MAX_CHARS {
        return Err(Error::BadInput(format!(
            "the operator name must be 1 to {OPERATOR_MAX_CHARS} characters, got {n} \
             (--operator, $INCIDENT_OPERATOR or the OS user)"
        )));
    }
    if name.chars().any(|c| c.is_control() || crate::core::sanitize::is_invisible(c)) {
        return Err(Error::BadInput(format!(
            "the operator name {} holds control or invisible characters",
            crate::core::sanitize::line(name)
        )));
    }
    Ok(())
}

/// The operator's name: the flag, else `$INCIDENT_OPERATOR`, else the OS user.
pub fn default_operator() -> String {
    for var in ["INCIDENT_OPERATOR", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            let v = v.trim();
            if !v.is_empty() {
                return v.to_string();
            }
        }
    }
    crate::store::sandbox::current_user_name().unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_libpq_socket_urls_with_a_userinfo() {
        let url = "postgresql://postgres:pw@/adv?host=/var/run/pg&port=5432";
        let s = ConnectSettings {
            url: url.into(),
            is_sandbox: false,
            operator: "t".into(),
            application_name: "t".into(),
            statement_timeout: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(1),
            pooling: Pooling::Session,
        };
        let o = s.options().expect("parsed");
        assert_eq!(o.get_socket().map(|p| p.to_string_lossy().into_owned()), Some("/var/run/pg".into()));
        assert_eq!(o.get_database(), Some("adv"));
        assert_eq!(libpq_compatible("postgres://u:p@h/db"), "postgres://u:p@h/db");
    }

    #[test]
    fn hides_passwords() {
        assert_eq!(redact_url("postgres://bob:s3cret@db.example:5432/prod"), "postgres://bob:***@db.example:5432/prod");
        assert_eq!(
            redact_url("postgres://bob@db/prod?password=x&sslmode=require"),
            "postgres://bob@db/prod?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgresql:///incident?host=/tmp/s"), "postgresql:///incident?host=/tmp/s");
        assert_eq!(redact_url("postgres://a:p@ss@h/db"), "postgres://a:***@h/db");
        // Unencoded '/' or '?' in the password: still hidden.
        assert_eq!(redact_url("postgres://bob:pa/ss@db/prod"), "postgres://bob:***@db/prod");
        assert_eq!(redact_url("postgres://bob:pa?ss@db/prod"), "postgres://bob:***@db/prod");
        // key=value connection strings.
        assert_eq!(redact_url("host=db user=bob password=s3cret"), "host=db user=bob password=***");
        assert_eq!(redact_url("host=db password = 's 3cret' user=x"), "host=db password = *** user=x");
        assert_eq!(redact_url("host=db PASSWORD=x dbname=y"), "host=db PASSWORD=*** dbname=y");
        assert_eq!(redact_url("postgres://u@h/db?sslpassword=k&x=1"), "postgres://u@h/db?sslpassword=***&x=1");
        // An error quoting a piece of the password loses it.
        let m = strip_url("invalid port number: pa", "postgres://bob:pa/ss@db/prod");
        assert!(!m.contains("pa") || m.contains("***"), "{m}");
        assert!(!strip_url("bad: s3cret", "host=db password=s3cret").contains("s3cret"));
    }
}

#[cfg(test)]
mod describe_tests {
    use super::*;

    fn settings(url: &str) -> ConnectSettings {
        ConnectSettings {
            url: url.into(),
            is_sandbox: false,
            operator: "t".into(),
            application_name: "t".into(),
            statement_timeout: Duration::ZERO,
            lock_timeout: Duration::ZERO,
            pooling: Pooling::Session,
        }
    }

    #[test]
    fn scrubs_the_password_and_control_characters_from_a_message() {
        let s = settings("postgres://bob:s3cret@db.example:6432/prod");
        let m = s.scrub("cannot reach postgres://bob:s3cret@db.example:6432/prod (s3cret refused)\x1b[2J");
        assert!(!m.contains("s3cret") && !m.contains('\x1b'), "{m}");
        assert!(m.contains("bob:***@db.example"), "{m}");
    }

    #[test]
    fn a_secret_url_never_shows_its_password() {
        let u = SecretUrl("postgres://reader:s3cret@standby:5432/prod".into());
        assert!(!format!("{u:?} {u}").contains("s3cret"));
        assert_eq!(u.expose(), "postgres://reader:s3cret@standby:5432/prod");
    }

    #[test]
    fn describes_without_password_or_long_paths() {
        assert_eq!(settings("postgres://bob:s3cret@db.example:6432/prod").describe(), "bob@db.example:6432/prod");
        assert_eq!(
            settings("postgresql:///incident?host=/var/lib/incident-console/sandbox/run&port=5432&user=postgres")
                .describe(),
            "postgres@socket run/incident"
        );
    }
}
