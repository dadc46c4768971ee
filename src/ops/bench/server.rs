//! The server the benchmark runs on, its databases, and pgbench's TPC-B-like baseline.

use crate::core::error::{Error, Result};
use crate::store::connect::ConnectSettings;
use crate::store::sandbox;

/// The server to benchmark on: an admin URL (database `postgres`) and a way to name other
/// databases on it.
pub(super) struct Server {
    pub(super) admin: ConnectSettings,
    pub(super) binaries: Option<sandbox::ServerBinaries>,
}

impl Server {
    pub(super) fn database(&self, name: &str) -> Result<ConnectSettings> {
        let opts = self.admin.options()?;
        let mut s = self.admin.clone();
        s.url = replace_database(&s.url, opts.get_database().unwrap_or("postgres"), name)?;
        Ok(s)
    }
}

fn replace_database(url: &str, _current: &str, name: &str) -> Result<String> {
    // postgres://user@host:port/DB?query  ->  the path segment is the database.
    let scheme_end = url.find("://").ok_or_else(|| Error::BadInput("the database URL has no scheme".into()))? + 3;
    let path_start = url[scheme_end..].find('/').map(|i| scheme_end + i);
    let query_start = url.find('?');
    Ok(match path_start {
        Some(p) if query_start.is_none_or(|q| p < q) => {
            let end = query_start.unwrap_or(url.len());
            format!("{}/{}{}", &url[..p], name, &url[end..])
        }
        _ => {
            let end = query_start.unwrap_or(url.len());
            format!("{}/{}{}", &url[..end], name, &url[end..])
        }
    })
}

/// What pgbench runs.
#[derive(Debug, Clone)]
pub(super) enum Workload {
    /// Its built-in TPC-B-like transaction for this many seconds.
    TpcB { seconds: u32 },
    /// This script file, this many transactions per client.
    Script { file: std::path::PathBuf, per_client: u64 },
}

/// The TPS pgbench measured at `clients` running `workload` (after initialising its
/// tables at scale 10 when `init`); None when pgbench is not installed.
pub(super) fn pgbench_tps(
    server: &Server,
    db: &ConnectSettings,
    clients: u16,
    workload: &Workload,
    init: bool,
) -> Result<Option<f64>> {
    let Some(bins) = &server.binaries else { return Ok(None) };
    let pgbench = bins.tool("pgbench");
    let pgbench = if pgbench.is_file() {
        pgbench
    } else if let Some(p) = super::on_path("pgbench") {
        p
    } else {
        return Ok(None);
    };
    let opts = db.options()?;
    let mut base = std::process::Command::new(&pgbench);
    let host =
        opts.get_socket().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| opts.get_host().to_string());
    base.env("PGHOST", host)
        .env("PGPORT", opts.get_port().to_string())
        .env("PGUSER", opts.get_username())
        .env("PGDATABASE", opts.get_database().unwrap_or("postgres"));
    if let Some(pw) = password_of(&db.url) {
        base.env("PGPASSWORD", pw);
    }
    if init {
        let out = std::process::Command::new(&pgbench)
            .envs(base.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
            .args(["-i", "-q", "-s", "10"])
            .output()
            .map_err(|e| Error::Tool { tool: "pgbench", detail: format!("cannot run it: {e}") })?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "pgbench",
                detail: format!(
                    "-i failed: {}",
                    crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
                ),
            });
        }
    }
    let c = clients.to_string();
    base.args(["-n", "-c", &c, "-j", &c]);
    match workload {
        Workload::TpcB { seconds } => base.args(["-T", &seconds.to_string()]),
        // Prepared, as a client library calls the contract (sqlx prepares every statement).
        Workload::Script { file, per_client } => {
            base.args(["-M", "prepared", "-t", &per_client.to_string(), "-f"]).arg(file)
        }
    };
    let out = base.output().map_err(|e| Error::Tool { tool: "pgbench", detail: format!("cannot run it: {e}") })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    if tps.is_none() {
        return Err(Error::Tool {
            tool: "pgbench",
            detail: format!(
                "printed no tps: {}",
                crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
            ),
        });
    }
    Ok(tps)
}

fn password_of(url: &str) -> Option<String> {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    let _ = opts;
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_of_a_url() {
        let r = |u: &str| replace_database(u, "", "other").unwrap_or_default();
        assert_eq!(
            r("postgresql:///postgres?host=/tmp/x&port=5432&user=postgres"),
            "postgresql:///other?host=/tmp/x&port=5432&user=postgres"
        );
        assert_eq!(r("postgres://u:p@h:5432/db"), "postgres://u:p@h:5432/other");
        assert_eq!(r("postgres://u@h"), "postgres://u@h/other");
        assert_eq!(password_of("postgres://u:s3@h/db").as_deref(), Some("s3"));
        assert_eq!(password_of("postgres://u@h/db"), None);
    }
}
