//! A real PgBouncer (the Debian package's `/usr/sbin/pgbouncer`) in front of the test
//! cluster, one per test, killed on drop. When it is not installed the tests that need it
//! say so on stderr and pass without running, except in CI (`.ci/run` installs it and
//! sets `INCIDENT_REQUIRE_PGBOUNCER`, and there a missing binary fails them).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::support::db::TestDb;

/// How PgBouncer hands out server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// One server connection per client session, as many sites run it: startup
    /// `options` and `extra_float_digits` silently ignored.
    Session,
    /// A server connection per transaction, and no startup parameter but the ones
    /// PgBouncer knows (none ignored: any other is refused).
    Transaction,
}

/// A running PgBouncer.
pub struct Bouncer {
    child: Child,
    port: u16,
    database: String,
    dir: tempfile::TempDir,
}

/// Where the binary is, if installed.
fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("pgbouncer")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/sbin/pgbouncer")]).find(|p| p.is_file())
}

/// The uid and gid of the `postgres` system user when running as root (PgBouncer refuses
/// to run as root, and that user can reach the test cluster's socket).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns static storage or null and
    // the ids are copied out at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() { None } else { Some(((*pw).pw_uid, (*pw).pw_gid)) }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Bouncer {
    /// Starts PgBouncer for the database of `t`, letting in `users` (trust, as the test
    /// cluster does); None, said on stderr, when PgBouncer is not installed.
    pub fn start(t: &TestDb, mode: PoolMode, users: &[&str], test: &str) -> Option<Bouncer> {
        let Some(bin) = binary() else {
            assert!(
                std::env::var_os("INCIDENT_REQUIRE_PGBOUNCER").is_none(),
                "{test}: pgbouncer is not installed, and this run requires it (apt-get install -y pgbouncer)"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: {test} skipped: pgbouncer is not installed (apt-get install -y pgbouncer; .ci/run does)"
            );
            return None;
        };
        let server = PgConnectOptions::from_str(&t.url).expect("test URL");
        let host = server.get_socket().map_or_else(|| server.get_host().to_string(), |s| s.display().to_string());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut users_txt: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        users_txt.push_str("\"postgres\" \"\"\n");
        std::fs::write(dir.path().join("users.txt"), users_txt).expect("users.txt");
        // In session pooling every client connection holds a server connection (the
        // console's worker: its pool of 8 and the listener); in transaction pooling a few
        // server connections serve them all, and few make clients share them often.
        let (mode_name, ignored, pool_size) = match mode {
            PoolMode::Session => ("session", "ignore_startup_parameters = extra_float_digits,options\n", 12),
            PoolMode::Transaction => ("transaction", "", 3),
        };
        for attempt in 0..5 {
            let port = free_port();
            let ini = format!(
                "[databases]\n* = host={host} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\npool_mode = {mode_name}\n\
                 default_pool_size = {pool_size}\nmax_client_conn = 200\n{ignored}server_reset_query = DISCARD ALL\n\
                 logfile = {log}\npidfile =\n",
                server.get_port(),
                users = dir.path().join("users.txt").display(),
                log = dir.path().join("pgbouncer.log").display(),
            );
            std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("ini");
            let mut cmd = Command::new(&bin);
            cmd.arg(dir.path().join("pgbouncer.ini")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            if let Some((uid, gid)) = run_as() {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
                for f in ["users.txt", "pgbouncer.ini"] {
                    std::os::unix::fs::chown(dir.path().join(f), Some(uid), Some(gid)).expect("chown");
                }
                cmd.uid(uid).gid(gid);
            }
            let mut child = cmd.spawn().expect("spawn pgbouncer");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let database = server.get_database().unwrap_or("postgres").to_string();
                    return Some(Bouncer { child, port, database, dir });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default();
            assert!(attempt < 4, "pgbouncer did not start:\n{log}");
        }
        None
    }

    /// The URL of the test database through PgBouncer, as `user`.
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{}?sslmode=disable", self.port, self.database)
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
