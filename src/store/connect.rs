//! How the console reaches PostgreSQL: the URL (or the sandbox), the per-connection
//! settings every session carries, and a printable description with the password hidden.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection};

use crate::core::error::{Error, Result};

/// What every session of one invocation tells the server about itself.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Recorded on every audit row.
    pub operator: String,
    /// Server-side limit on one statement (zero: none).
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock (zero: none).
    pub lock_timeout: Duration,
}

/// Where to connect and what every session is told about itself.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The database URL. Never printed as is: see [`redact_url`].
    pub url: String,
    /// True when the URL is the console's own sandbox cluster.
    pub is_sandbox: bool,
    /// Recorded on every audit row.
    pub operator: String,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// Server-side limit on one statement (zero: none).
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock (zero: none).
    pub lock_timeout: Duration,
}

impl ConnectSettings {
    /// Connection options for sqlx, with the session settings as startup parameters.
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
        Ok(opts.application_name(&self.application_name).options([
            ("statement_timeout", self.statement_timeout.as_millis().to_string()),
            ("lock_timeout", self.lock_timeout.as_millis().to_string()),
            ("incident.operator", self.operator.clone()),
        ]))
    }

    /// A pool of connections, each with the session settings.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool> {
        let opts = self.options()?;
        // One plain attempt first: the pool would retry a refused connection until its
        // timeout and then report only the timeout, not the cause.
        match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(Error::Unreachable("no answer within 10 s".into())),
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        Ok(pool)
    }

    /// One dedicated connection (batch workers, the listener, tests of locking).
    pub async fn connection(&self) -> Result<PgConnection> {
        let opts = self.options()?;
        Ok(PgConnection::connect_with(&opts).await?)
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

/// The operator's name as given: the flag when not blank, else the default.
pub fn operator_name(flag: Option<&str>) -> String {
    flag.map(str::trim).filter(|o| !o.is_empty()).map_or_else(default_operator, str::to_string)
}

/// Refuses an operator name that is empty, longer than 200 characters, or holds control
/// characters: it goes on every audit row and into the server's startup options, where a
/// tab or a newline would be read as another option.
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
        }
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
