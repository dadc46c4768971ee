//! Faults on a real PostgreSQL (issue 9), for tests that break things on purpose:
//!
//! - [`PrivateServer`]: a cluster of the test's own (the binary's shared cluster must
//!   survive every test), copied from a data directory built once per test binary: the
//!   database `book`, migrated and seeded with the demo book of seed 7 on 2026-11-25 (the
//!   book `db::seeded()` gives, whose burst `db::BURST_SQL` names). It can be killed with
//!   -9, restarted on the same socket and data directory (crash recovery), frozen and
//!   thawed, and have sessions terminated.
//! - [`LostAckProxy`]: a TCP proxy in front of a private server that loses the reply to a
//!   statement once the server has committed it (and, if told, holds that connection open
//!   until let go), holds back a statement before it reaches the server, and can cut every
//!   connection at once.
//! - The checks a fault test ends with: [`Book`] (money exact, from the orders' own
//!   amounts), [`assert_rolled_back_once`] and [`BatchFigures`] (what the audit log says a
//!   batch did, to hold a report against).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use incident_console::store::db;
use incident_console::store::sandbox::{Cluster, Durability, SUPERUSER};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// The database of a private server that holds the book.
pub const BOOK_DATABASE: &str = "book";

/// The name of a private server's socket in its socket directory (the sandbox's port).
const SOCKET_NAME: &str = ".s.PGSQL.5432";

// On top of the sandbox's throwaway settings. synchronous_commit back on: with it off a
// commit is acknowledged before its WAL leaves the server's memory, so kill -9 could undo
// a commit the client saw, which is that setting's documented price, not a fault of the
// console. fsync stays off: a killed process's writes are already in the page cache; only
// losing the machine would lose them. Small shared buffers: several servers run at once.
const FAULT_CONF: &str = "\n# incident-console fault tests\nsynchronous_commit = on\nshared_buffers = 16MB\n";

/// The data directory every private server starts as (one per test binary).
struct Template {
    root: PathBuf,
    password: String,
    built_in: Duration,
}

static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// The directory `db` keeps its clusters in: a run that was killed leaves directories
/// named after its process id, which the next run's `db` removes.
fn base_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join("incident-console-tests");
    fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    // The server may run as another user (postgres, when tests run as root).
    let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
    Ok(base)
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("append to {}: {e}", path.display()))
}

fn build_template() -> Result<Template, String> {
    let started = Instant::now();
    let base = base_dir()?;
    // Runs of the fault tests alone never start `db`'s cluster, which would clean up.
    super::db::clean_stale_clusters(&base);
    let root = base.join(format!("{}-faults-template", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let cluster = Cluster::new(root.clone()).map_err(|e| e.to_string())?;
    cluster.init(Durability::Throwaway).map_err(|e| e.to_string())?;
    append(&root.join("data/postgresql.conf"), FAULT_CONF)?;
    cluster.spawn_owned().map_err(|e| e.to_string())?;
    // The proxy puts a private server on a TCP port every local user can reach, so the
    // trust the sandbox relies on (a socket only its owner can open) is not enough: a
    // password, random, that contains cli::PASSWORD so `Out::clean` notices it leaking.
    let password = format!("{}-{}", super::cli::PASSWORD, Uuid::new_v4().simple());
    let admin_url = cluster.url("postgres");
    let book_url = cluster.url(BOOK_DATABASE);
    let sql = format!("ALTER ROLE {SUPERUSER} PASSWORD '{password}'");
    super::db::block_on(async {
        let mut admin = connect_until(&admin_url, Duration::from_secs(60)).await?;
        db::create_database(&mut admin, BOOK_DATABASE, None).await.map_err(|e| e.to_string())?;
        // The binary migrates (store::db::migrate) and seeds, as `db::seeded()` has it do.
        super::db::seed_book(&book_url).await;
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        Ok::<(), String>(())
    })?;
    let hba = root.join("data/pg_hba.conf");
    fs::write(&hba, "local all all scram-sha-256\n").map_err(|e| format!("write {}: {e}", hba.display()))?;
    // A clean shutdown: a copy then starts without recovery.
    cluster.stop().map_err(|e| e.to_string())?;
    Ok(Template { root, password, built_in: started.elapsed() })
}

fn template() -> &'static Template {
    match TEMPLATE.get_or_init(build_template) {
        Ok(t) => t,
        Err(e) => panic!("cannot build the fault tests' template cluster: {e}"),
    }
}

/// How long building this binary's template data directory took (initdb, migrate, seed).
pub fn template_build_time() -> Duration {
    template().built_in
}

async fn connect_until(url: &str, limit: Duration) -> Result<PgConnection, String> {
    let started = Instant::now();
    loop {
        match PgConnection::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() >= limit => return Err(format!("no connection within {limit:?}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Which sessions of a server: by `application_name`, or by their (last) statement's text.
#[derive(Debug, Clone, Copy)]
pub enum Sessions<'a> {
    /// `application_name` equal to this.
    App(&'a str),
    /// `query` (what the session runs, or ran last when idle) `LIKE` this pattern.
    QueryLike(&'a str),
}

impl Sessions<'_> {
    fn bind(self) -> (bool, String) {
        match self {
            Sessions::App(name) => (true, name.to_string()),
            Sessions::QueryLike(pattern) => (false, pattern.to_string()),
        }
    }
}

// The client sessions, but the asking one, whose application_name equals $2 (when $1) or
// whose query is LIKE $2 (when not $1).
const MATCHING: &str = "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
     AND CASE WHEN $1 THEN application_name = $2 ELSE query LIKE $2 END";

/// A PostgreSQL cluster of one test, in a directory of its own, started from a copy of
/// this binary's template; killed and deleted when dropped (kept, with its log, when the
/// test panicked; the next run deletes it).
pub struct PrivateServer {
    cluster: Cluster,
    root: PathBuf,
    password: String,
    /// The processes `stop_answering` stopped, the postmaster last.
    frozen: Mutex<Vec<i32>>,
    /// How long `start` took: copying the template and starting the server.
    pub started_in: Duration,
}

impl PrivateServer {
    /// Copies the template (built on first use) and starts a server on the copy.
    pub async fn start() -> PrivateServer {
        let t = template();
        let started = Instant::now();
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let root = base_dir().expect("base dir").join(format!("{}-faults-{n}", std::process::id()));
        let from = t.root.clone();
        let to = root.clone();
        tokio::task::spawn_blocking(move || copy_cluster(&from, &to))
            .await
            .expect("copy thread")
            .unwrap_or_else(|e| panic!("{e}"));
        let cluster = Cluster::new(root.clone()).expect("cluster");
        let socket_dir = cluster.socket_dir().to_string_lossy().replace('\'', "''");
        append(&root.join("data/postgresql.conf"), &format!("unix_socket_directories = '{socket_dir}'\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut server = PrivateServer {
            cluster,
            root,
            password: t.password.clone(),
            frozen: Mutex::new(Vec::new()),
            started_in: Duration::ZERO,
        };
        server.spawn().await;
        server.started_in = started.elapsed();
        server
    }

    /// Starts the postmaster on this data directory and waits until it accepts sessions
    /// (after crash recovery, when it was killed).
    async fn spawn(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.spawn_owned())
            .await
            .expect("spawn thread")
            .unwrap_or_else(|e| panic!("cannot start the private server: {e}\n{}", self.log_tail()));
        // After kill -9 the old socket and pid files are still there, so spawn_owned returns
        // at once: only a session proves the new server is up.
        if let Err(e) = connect_until(&self.admin_url(), Duration::from_secs(60)).await {
            panic!("the private server did not come up: {e}\n{}", self.log_tail());
        }
    }

    /// The URL of the book database (sqlx and psql accept it; it carries the password).
    pub fn url(&self) -> String {
        self.url_of(BOOK_DATABASE)
    }

    /// The URL of the `postgres` database, for administration.
    pub fn admin_url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of any database on this server.
    pub fn url_of(&self, database: &str) -> String {
        format!("{}&password={}", self.cluster.url(database), self.password)
    }

    /// The superuser's password (no output may show it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's Unix socket (what the proxy connects to).
    pub fn socket(&self) -> PathBuf {
        self.cluster.socket_dir().join(SOCKET_NAME)
    }

    /// The server's log so far (its standard output and error).
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("foreground.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- server log ({})\n{}", self.root.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    /// A new session on the book database.
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url()).await.unwrap_or_else(|e| panic!("connect to the private server: {e}"))
    }

    /// A new small pool on the book database (make a new one after a restart).
    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("pool on the private server: {e}"))
    }

    /// The postmaster's process id while it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.root.join("data/postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        // The file outlives a killed server: a process of that id may be anything now, even
        // another server's backend. Only our postmaster runs with our data directory.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let data = self.root.join("data");
        let ours = cmdline.split(|&b| b == 0).any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)) == data);
        (ours && !is_gone(pid)).then_some(pid)
    }

    /// Kills the server as a crash does: SIGKILL to the postmaster and to every process it
    /// started (backends, checkpointer, WAL writer …), so every client sees its connection
    /// end (EOF or reset) and nothing is left holding the data directory, the shared
    /// memory or the socket. Returns once they are all dead, with how many there were.
    /// Panics when the server is not running.
    pub fn kill9(&self) -> usize {
        let (pids, dead) = self.kill_all().expect("kill9: the private server is not running");
        assert!(dead, "server processes {pids:?} survived SIGKILL");
        self.frozen.lock().expect("frozen").clear();
        pids.len()
    }

    /// SIGKILL to every process of the server: the pids, and whether they all died.
    fn kill_all(&self) -> Option<(Vec<i32>, bool)> {
        let postmaster = self.postmaster_pid()?;
        // Stopped first, so it starts no process between the listing and the kill; a
        // postmaster killed alone would leave its backends running as orphans, and a new
        // one refuses to start while they hold the old shared memory.
        signal(postmaster, libc::SIGSTOP);
        wait_until(Duration::from_secs(5), || is_stopped(postmaster));
        let mut pids = children_of(postmaster);
        signal(postmaster, libc::SIGKILL);
        for &pid in &pids {
            signal(pid, libc::SIGKILL);
        }
        pids.push(postmaster);
        let dead = wait_until(Duration::from_secs(10), || pids.iter().all(|&p| is_gone(p)));
        Some((pids, dead))
    }

    /// Starts the server again on the same data directory and socket after [`kill9`]
    /// (crash recovery: it replays its WAL) and waits until it accepts sessions.
    ///
    /// [`kill9`]: PrivateServer::kill9
    pub async fn restart(&self) {
        assert!(self.postmaster_pid().is_none(), "restart: the server still runs (kill9 it first)");
        self.spawn().await;
    }

    /// Freezes the server (SIGSTOP to the postmaster and every process it started):
    /// sessions stay open and new connections are queued by the kernel, but nothing is
    /// answered until [`resume`]. Returns how many processes were stopped.
    ///
    /// [`resume`]: PrivateServer::resume
    pub fn stop_answering(&self) -> usize {
        let postmaster = self.postmaster_pid().expect("stop_answering: the private server is not running");
        // The postmaster first, so it starts no process that would go on answering.
        signal(postmaster, libc::SIGSTOP);
        wait_until(Duration::from_secs(5), || is_stopped(postmaster));
        let mut pids = children_of(postmaster);
        for &pid in &pids {
            signal(pid, libc::SIGSTOP);
        }
        wait_until(Duration::from_secs(5), || pids.iter().all(|&p| is_stopped(p) || is_gone(p)));
        pids.push(postmaster);
        let n = pids.len();
        self.frozen.lock().expect("frozen").extend(pids);
        n
    }

    /// Thaws what [`stop_answering`] froze (the backends first, then the postmaster).
    ///
    /// [`stop_answering`]: PrivateServer::stop_answering
    pub fn resume(&self) {
        for pid in self.frozen.lock().expect("frozen").drain(..) {
            signal(pid, libc::SIGCONT);
        }
    }

    /// The process ids of the client sessions that match.
    pub async fn sessions(&self, which: Sessions<'_>) -> Vec<i32> {
        let (by_name, what) = which.bind();
        let mut admin = self.admin().await;
        let pids = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pid {MATCHING} ORDER BY pid")))
            .bind(by_name)
            .bind(what)
            .fetch_all(&mut admin)
            .await
            .expect("list sessions");
        let _ = admin.close().await;
        pids
    }

    /// Waits until at least `n` client sessions match (a client is connected, a statement
    /// is running) and returns their process ids; panics after `limit`.
    pub async fn wait_for_sessions(&self, which: Sessions<'_>, n: usize, limit: Duration) -> Vec<i32> {
        let started = Instant::now();
        loop {
            let pids = self.sessions(which).await;
            if pids.len() >= n {
                return pids;
            }
            assert!(started.elapsed() < limit, "{which:?}: {} session(s), not {n}, within {limit:?}", pids.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Terminates the client sessions that match (`pg_terminate_backend` from a session of
    /// its own), and returns once they have ended, with how many there were.
    pub async fn terminate_backends(&self, which: Sessions<'_>) -> usize {
        let (by_name, what) = which.bind();
        let mut admin = self.admin().await;
        // With a timeout the call waits until the backend has exited (false if it has not).
        let ended: Vec<bool> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pg_terminate_backend(pid, 10000) {MATCHING}")))
                .bind(by_name)
                .bind(what)
                .fetch_all(&mut admin)
                .await
                .expect("terminate sessions");
        let _ = admin.close().await;
        assert!(ended.iter().all(|&e| e), "a terminated session did not end within 10 s");
        ended.len()
    }

    async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url()).await.unwrap_or_else(|e| panic!("admin session: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// A hot standby

impl PrivateServer {
    /// A hot standby of this server, streaming from it: replication allowed on its socket
    /// (with the password), `pg_basebackup -R` into a directory of its own, started there on
    /// a socket of its own, returned once it answers reads as a server in recovery. It
    /// is a `PrivateServer` too: `kill9`, `stop_answering` and `url` work on it, and it is
    /// killed and deleted when dropped.
    pub async fn standby(&self) -> PrivateServer {
        let started = Instant::now();
        append(&self.root.join("data/pg_hba.conf"), "local replication all scram-sha-256\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut admin = self.admin().await;
        sqlx::query("SELECT pg_reload_conf()").execute(&mut admin).await.expect("reload pg_hba.conf");
        let _ = admin.close().await;
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let root = base_dir().expect("base dir").join(format!("{}-standby-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let cluster = Cluster::new(root.clone()).expect("cluster");
        let owner = server_owner();
        for dir in [root.clone(), cluster.socket_dir()] {
            fs::create_dir_all(&dir).expect("standby directory");
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("standby directory mode");
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("hand the standby's directory over");
            }
        }
        let primary_socket = self.cluster.socket_dir();
        let conninfo = format!(
            "host={} port=5432 user={SUPERUSER} password={} dbname=postgres application_name=test_standby",
            primary_socket.display(),
            self.password
        );
        let tool = self.cluster.binaries().tool("pg_basebackup");
        let data = root.join("data");
        let out = tokio::task::spawn_blocking(move || {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(tool);
            cmd.current_dir(root_of(&data)).env("LC_ALL", "C").env_remove("PGDATA");
            cmd.arg("-D").arg(&data).args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-d", &conninfo]);
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
            cmd.stdin(std::process::Stdio::null()).output()
        })
        .await
        .expect("pg_basebackup thread")
        .expect("run pg_basebackup");
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        // The copy's configuration names the primary's socket directory: its own comes last.
        let socket_dir = cluster.socket_dir().to_string_lossy().replace('\'', "''");
        append(&root.join("data/postgresql.conf"), &format!("unix_socket_directories = '{socket_dir}'\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut standby = PrivateServer {
            cluster,
            root,
            password: self.password.clone(),
            frozen: Mutex::new(Vec::new()),
            started_in: Duration::ZERO,
        };
        standby.spawn().await;
        let mut conn = standby.conn().await;
        let in_recovery: bool =
            sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await.expect("pg_is_in_recovery");
        assert!(in_recovery, "the copy is not a standby");
        let _ = conn.close().await;
        standby.wait_replayed(self).await;
        standby.started_in = started.elapsed();
        standby
    }

    /// On a standby: stops replaying the WAL it receives, and returns once it has stopped.
    pub async fn pause_replay(&self) {
        let mut c = self.admin().await;
        sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut c).await.expect("pg_wal_replay_pause");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state: String =
                sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()").fetch_one(&mut c).await.expect("state");
            if state == "paused" {
                break;
            }
            assert!(Instant::now() < deadline, "replay did not pause within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = c.close().await;
    }

    /// On a standby: replays again.
    pub async fn resume_replay(&self) {
        let mut c = self.admin().await;
        sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut c).await.expect("pg_wal_replay_resume");
        let _ = c.close().await;
    }

    /// On a standby: waits (up to 30 s) until it has replayed all `primary` has written now.
    pub async fn wait_replayed(&self, primary: &PrivateServer) {
        let mut p = primary.admin().await;
        let target: i64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
            .fetch_one(&mut p)
            .await
            .expect("primary lsn");
        let _ = p.close().await;
        let mut s = self.admin().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let at: Option<i64> = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint")
                .fetch_one(&mut s)
                .await
                .expect("standby lsn");
            if at.is_some_and(|a| a >= target) {
                break;
            }
            assert!(Instant::now() < deadline, "the standby did not replay {target} within 30 s (at {at:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = s.close().await;
    }
}

fn root_of(data: &Path) -> PathBuf {
    data.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// The uid and gid a root-started server runs as (`postgres`); None when not root.
fn server_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam's static result is copied at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let name = std::ffi::CString::new("postgres").ok()?;
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() { None } else { Some(((*pw).pw_uid, (*pw).pw_gid)) }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.kill_all();
        if std::thread::panicking() {
            eprintln!("the private server's directory is kept for inspection: {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Copies a cluster directory with its owners and modes (a root-started server's files
/// belong to `postgres`, and PostgreSQL refuses a data directory others can read).
fn copy_cluster(from: &Path, to: &Path) -> Result<(), String> {
    // cp copies into `to` when it exists (a directory left by a run of a process of this id).
    let _ = fs::remove_dir_all(to);
    let out = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if !out.status.success() {
        return Err(format!("copying {} failed: {}", from.display(), String::from_utf8_lossy(&out.stderr)));
    }
    for log in ["server.log", "foreground.log"] {
        let _ = fs::remove_file(to.join(log));
    }
    Ok(())
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is one of the server's processes.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The state letter and parent of a process, from /proc (None once it is reaped).
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Dead: reaped, or a zombie (its sockets and memory are released already).
fn is_gone(pid: i32) -> bool {
    matches!(proc_stat(pid), None | Some(('Z' | 'X', _)))
}

fn is_stopped(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(('T' | 't', _)))
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((state, p)) if p == parent && state != 'Z'))
        .collect()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

// ---------------------------------------------------------------------------------------
// The proxy

/// A reply the proxy lost, and whether the server had committed the transaction it belongs
/// to when the proxy closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostReply {
    /// The transaction ended with a commit: no error and no `ROLLBACK` before its
    /// ReadyForQuery said the session was idle.
    pub committed: bool,
    /// The statement ran inside `BEGIN … COMMIT` (behind a transaction pooler): its
    /// result was let through and the answer to `COMMIT` was lost instead.
    pub explicit_transaction: bool,
}

/// What the proxy is armed to lose.
struct Arming {
    marker: Vec<u8>,
    /// Matching replies to let through first.
    skip: usize,
    /// Matching replies still to lose.
    left: usize,
}

#[derive(Default)]
struct ProxyShared {
    arming: Mutex<Option<Arming>>,
    lost: Mutex<Vec<LostReply>>,
    live: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    accepted: AtomicUsize,
    next_id: AtomicU64,
    /// While set, a connection whose reply was lost stays open (silent) instead of closing.
    holding: AtomicBool,
    /// While set, a client's bytes that contain this marker are not forwarded: the
    /// connection waits, as on a slow network, and closes when let go.
    stall: Mutex<Option<Vec<u8>>>,
    /// Connections stalled so far.
    stalled: AtomicUsize,
}

impl ProxyShared {
    /// Whether the client's next `bytes` (after `tail`, the end of its earlier ones, so a
    /// marker split between two reads is found) hold the stall marker.
    fn stalls(&self, tail: &mut Vec<u8>, bytes: &[u8]) -> bool {
        let stall = self.stall.lock().expect("stall");
        let Some(marker) = stall.as_ref().filter(|m| !m.is_empty()) else {
            tail.clear();
            return false;
        };
        tail.extend_from_slice(bytes);
        let hit = tail.windows(marker.len()).any(|w| w == marker.as_slice());
        let keep = marker.len() - 1;
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
        hit
    }

    fn stalling(&self) -> bool {
        self.stall.lock().expect("stall").is_some()
    }

    /// Whether the reply this data row belongs to is one to lose (it then counts).
    fn claim(&self, row: &[u8]) -> bool {
        let mut arming = self.arming.lock().expect("arming");
        let Some(a) = arming.as_mut() else { return false };
        if a.marker.is_empty() || !row.windows(a.marker.len()).any(|w| w == a.marker.as_slice()) {
            return false;
        }
        if a.skip > 0 {
            a.skip -= 1;
            return false;
        }
        a.left -= 1;
        if a.left == 0 {
            *arming = None;
        }
        true
    }
}

/// Removes a connection from the live ones when its task ends or is aborted (it is moved
/// into the task's future, so it is dropped with it even if the task never ran).
struct Deregister {
    shared: Arc<ProxyShared>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Ok(mut live) = self.shared.live.lock() {
            live.remove(&self.id);
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of a [`PrivateServer`], on a thread and runtime of
/// its own (so a test's blocking calls or runtime flavour do not stall it). It forwards
/// byte for byte; armed, it loses a reply whose data row holds a marker: it stops
/// forwarding at that row, reads on until the ReadyForQuery that says the transaction
/// ended (so the server has committed, or not: see [`LostReply`]), then closes both
/// connections. It can also cut every connection at once.
pub struct LostAckProxy {
    port: u16,
    password: String,
    shared: Arc<ProxyShared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LostAckProxy {
    /// Starts a proxy in front of `server`'s socket on a free port of 127.0.0.1.
    pub fn in_front_of(server: &PrivateServer) -> LostAckProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let socket = server.socket();
        let shared = Arc::new(ProxyShared::default());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let accepting = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lost-ack-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
                rt.block_on(accept(listener, socket, accepting, stop));
                // Dropping the runtime drops every connection's task, closing its sockets.
            })
            .expect("proxy thread");
        LostAckProxy { port, password: server.password.clone(), shared, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the book database through the proxy (TCP, with the password).
    pub fn url(&self) -> String {
        self.url_of(BOOK_DATABASE)
    }

    /// The URL of any database of the server through the proxy.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Arms the proxy: the next `times` replies (on any connection) with a data row that
    /// contains `marker` are lost after the server committed them. Replaces any arming.
    pub fn drop_next_reply_containing(&self, marker: &[u8], times: usize) {
        self.drop_replies_containing(marker, 0, times);
    }

    /// As [`drop_next_reply_containing`], after letting `skip` matching replies through
    /// (to lose the reply of, say, the fifth rollback of a batch).
    ///
    /// [`drop_next_reply_containing`]: LostAckProxy::drop_next_reply_containing
    pub fn drop_replies_containing(&self, marker: &[u8], skip: usize, times: usize) {
        let arming = (times > 0).then(|| Arming { marker: marker.to_vec(), skip, left: times });
        *self.shared.arming.lock().expect("arming") = arming;
    }

    /// Disarms the proxy: nothing more is lost.
    pub fn disarm(&self) {
        *self.shared.arming.lock().expect("arming") = None;
    }

    /// From now on a connection whose reply is lost is not closed at once: it stays open and
    /// silent, its client waiting as for a slow reply, until [`let_go`]. A test can then do
    /// something (kill the server) before the client can notice the loss and ask the
    /// server what happened: without it that would be a race the client wins in
    /// milliseconds.
    ///
    /// [`let_go`]: LostAckProxy::let_go
    pub fn hold_lost_connections(&self) {
        self.shared.holding.store(true, Ordering::SeqCst);
    }

    /// From now on a client's statement whose text contains `marker` does not reach the
    /// server: its connection stalls (as on a network that stopped carrying it), and closes
    /// when let go, the statement never sent. A test can then kill the server at a known
    /// point of the client's work, say before its audit, with everything before it done.
    /// [`held_statements`] counts them.
    ///
    /// [`held_statements`]: LostAckProxy::held_statements
    pub fn hold_statements_containing(&self, marker: &[u8]) {
        *self.shared.stall.lock().expect("stall") = Some(marker.to_vec());
    }

    /// How many connections a statement was held on since the proxy started.
    pub fn held_statements(&self) -> usize {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Closes the connections held since [`hold_lost_connections`] or
    /// [`hold_statements_containing`], and holds no more.
    ///
    /// [`hold_lost_connections`]: LostAckProxy::hold_lost_connections
    /// [`hold_statements_containing`]: LostAckProxy::hold_statements_containing
    pub fn let_go(&self) {
        self.shared.holding.store(false, Ordering::SeqCst);
        *self.shared.stall.lock().expect("stall") = None;
    }

    /// Every reply lost so far, in order.
    pub fn drops(&self) -> Vec<LostReply> {
        self.shared.lost.lock().expect("lost").clone()
    }

    /// How many replies were lost after their transaction committed.
    pub fn dropped_after_commit(&self) -> usize {
        self.drops().iter().filter(|l| l.committed).count()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.live.lock().expect("live").len()
    }

    /// Severs every open connection at once (both sides closed, as a network that dies
    /// would leave them) and returns how many there were, once they are all closed. New
    /// connections are accepted as before.
    pub fn cut_all(&self) -> usize {
        let tasks: Vec<tokio::task::AbortHandle> = self.shared.live.lock().expect("live").values().cloned().collect();
        for task in &tasks {
            task.abort();
        }
        let closed = wait_until(Duration::from_secs(5), || tasks.iter().all(|t| t.is_finished()));
        assert!(closed, "the proxy's connections did not close within 5 s");
        tasks.len()
    }
}

impl Drop for LostAckProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: std::net::TcpListener,
    socket: PathBuf,
    shared: Arc<ProxyShared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                let gone = Deregister { shared: Arc::clone(&shared), id };
                let (socket, relaying) = (socket.clone(), Arc::clone(&shared));
                let task = tokio::spawn(async move {
                    let _gone = gone;
                    relay(client, &socket, &relaying).await;
                });
                // On this single-threaded runtime the task cannot run (and deregister)
                // before it is registered.
                shared.live.lock().expect("live").insert(id, task.abort_handle());
            }
        }
    }
}

/// One client's connection: forwarded until either side ends or a reply is lost; then
/// both sockets are dropped (closed).
async fn relay(client: tokio::net::TcpStream, socket: &Path, shared: &ProxyShared) {
    let Ok(server) = tokio::net::UnixStream::connect(socket).await else { return };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let handshake = Arc::new(Handshake::default());
    let mut client_bytes = ClientBytes::new(Arc::clone(&handshake));
    let mut server_bytes = ServerBytes::new(handshake);
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut tail = Vec::new();
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Read before it is forwarded: the server may answer at once.
            client_bytes.read(&buf[..n]);
            if shared.stalls(&mut tail, &buf[..n]) {
                // Held back: never forwarded; the connection closes when let go (or when
                // the server's side ends).
                shared.stalled.fetch_add(1, Ordering::SeqCst);
                while shared.stalling() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return;
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let step = server_bytes.read(&buf[..n], &|row| shared.claim(row));
            if !step.forward.is_empty() && to_client.write_all(&step.forward).await.is_err() {
                return;
            }
            if let Some(lost) = step.lost {
                // Counted before the sockets close, so a test that saw its error sees it.
                shared.lost.lock().expect("lost").push(lost);
                // Held: nothing more is forwarded, and the sockets close when let go.
                while shared.holding.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// What the two directions of one connection tell each other during the handshake.
#[derive(Debug, Default)]
pub struct Handshake {
    /// One-byte answers the server owes (to SSLRequest and GSSENCRequest): they have no
    /// type and no length.
    owed: AtomicUsize,
    /// The server accepted encryption: the bytes cannot be read, only forwarded.
    opaque: AtomicBool,
}

/// The client's bytes of one connection, read only until its startup packet: each
/// SSLRequest or GSSENCRequest before it is owed a one-byte answer.
#[derive(Debug)]
pub struct ClientBytes {
    handshake: Arc<Handshake>,
    buf: Vec<u8>,
    done: bool,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl ClientBytes {
    /// Reads the client's side of a connection sharing `handshake` with its server side.
    pub fn new(handshake: Arc<Handshake>) -> Self {
        ClientBytes { handshake, buf: Vec::new(), done: false }
    }

    /// Takes the next bytes the client sent (before they are forwarded).
    pub fn read(&mut self, bytes: &[u8]) {
        if self.done || self.handshake.opaque.load(Ordering::SeqCst) {
            return;
        }
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= 8 {
            let code = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                self.handshake.owed.fetch_add(1, Ordering::SeqCst);
                self.buf.drain(..8);
            } else {
                // The startup packet (or a cancel request): the rest is the session.
                self.done = true;
                self.buf = Vec::new();
            }
        }
    }
}

/// What to do with bytes the server sent: forward these, and whether a reply was lost
/// (the connection is then closed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes to send to the client now.
    pub forward: Vec<u8>,
    /// A reply was lost: close both sides.
    pub lost: Option<LostReply>,
}

#[derive(Debug)]
enum Phase {
    /// Before the first ReadyForQuery: one-byte answers, authentication, parameters.
    Startup,
    /// Messages of the session.
    Session,
    /// Encrypted, or not the protocol: forwarded unread.
    Opaque,
}

#[derive(Debug)]
enum Hold {
    /// Forwarding every message.
    Passing,
    /// A data row with the marker and what followed it, withheld until the ReadyForQuery.
    Holding { withheld: Vec<u8>, failed: bool },
    /// The result passed inside an explicit transaction: what answers `COMMIT` is lost.
    Losing { failed: bool, rolled_back: bool },
}

/// The server's bytes of one connection, read as protocol messages (one type byte and a
/// length that counts itself) from the first ReadyForQuery on.
#[derive(Debug)]
pub struct ServerBytes {
    handshake: Arc<Handshake>,
    buf: Vec<u8>,
    phase: Phase,
    hold: Hold,
}

impl ServerBytes {
    /// Reads the server's side of a connection sharing `handshake` with its client side.
    pub fn new(handshake: Arc<Handshake>) -> Self {
        ServerBytes { handshake, buf: Vec::new(), phase: Phase::Startup, hold: Hold::Passing }
    }

    /// Takes the next bytes the server sent; `lose` says whether the reply of a data row
    /// (its body) is to be lost.
    pub fn read(&mut self, bytes: &[u8], lose: &dyn Fn(&[u8]) -> bool) -> Step {
        let mut step = Step::default();
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            match self.phase {
                Phase::Opaque => {
                    step.forward.extend_from_slice(rest);
                    at = self.buf.len();
                    break;
                }
                Phase::Startup if self.handshake.owed.load(Ordering::SeqCst) > 0 => {
                    let Some(&answer) = rest.first() else { break };
                    at += 1;
                    step.forward.push(answer);
                    self.handshake.owed.fetch_sub(1, Ordering::SeqCst);
                    if answer != b'N' {
                        // 'S' or 'G': encryption follows; set before the answer is forwarded,
                        // so the client side never reads its handshake as a packet.
                        self.handshake.opaque.store(true, Ordering::SeqCst);
                        self.phase = Phase::Opaque;
                    }
                    continue;
                }
                _ => {}
            }
            if rest.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len < 4 {
                self.phase = Phase::Opaque;
                continue;
            }
            if rest.len() < 1 + len {
                break;
            }
            let message = &self.buf[at..at + 1 + len];
            at += 1 + len;
            if matches!(self.phase, Phase::Startup) {
                step.forward.extend_from_slice(message);
                if message[0] == b'Z' {
                    self.phase = Phase::Session;
                }
                continue;
            }
            if let Some(lost) = Self::session_message(&mut self.hold, message, &mut step.forward, lose) {
                step.lost = Some(lost);
                break;
            }
        }
        self.buf.drain(..at);
        step
    }

    fn session_message(
        hold: &mut Hold,
        message: &[u8],
        forward: &mut Vec<u8>,
        lose: &dyn Fn(&[u8]) -> bool,
    ) -> Option<LostReply> {
        let (kind, body) = (message[0], &message[5..]);
        // ReadyForQuery's status: 'I' idle (the transaction ended), 'T' in a transaction
        // block, 'E' in a failed one.
        let status = if kind == b'Z' { body.first().copied() } else { None };
        match hold {
            Hold::Passing => {
                if kind == b'D' && lose(body) {
                    *hold = Hold::Holding { withheld: message.to_vec(), failed: false };
                } else {
                    forward.extend_from_slice(message);
                }
                None
            }
            Hold::Holding { withheld, failed } => {
                withheld.extend_from_slice(message);
                match (kind, status) {
                    (b'E', _) => {
                        *failed = true;
                        None
                    }
                    // An implicit transaction commits at Sync, before this message.
                    (b'Z', Some(b'I')) => Some(LostReply { committed: !*failed, explicit_transaction: false }),
                    (b'Z', Some(b'T')) => {
                        // Inside BEGIN … COMMIT nothing is committed yet, and the client
                        // sends COMMIT only once it has the result: let it through and
                        // lose the answer to COMMIT.
                        forward.append(withheld);
                        *hold = Hold::Losing { failed: false, rolled_back: false };
                        None
                    }
                    // The transaction failed: closing the connection rolls it back.
                    (b'Z', _) => Some(LostReply { committed: false, explicit_transaction: true }),
                    _ => None,
                }
            }
            Hold::Losing { failed, rolled_back } => match (kind, status) {
                (b'E', _) => {
                    *failed = true;
                    None
                }
                (b'C', _) => {
                    // COMMIT of a failed transaction answers ROLLBACK.
                    *rolled_back = body.starts_with(b"ROLLBACK");
                    None
                }
                (b'Z', Some(b'I')) => {
                    Some(LostReply { committed: !*failed && !*rolled_back, explicit_transaction: true })
                }
                // The client sent something else inside the transaction and now waits for
                // an answer it will never get: close, which rolls the transaction back.
                (b'Z', _) => Some(LostReply { committed: false, explicit_transaction: true }),
                _ => None,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// What a fault test ends with

/// An order as far as money goes: whose it is, its status, what its execution cost, the
/// margin its position holds and the position's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookOrder {
    /// Its account.
    pub user: Uuid,
    /// `orders.status`.
    pub status: String,
    /// `orders.total_cost` (margin and commission; none unless executed).
    pub total_cost: Option<Decimal>,
    /// Its position's `margin_used`.
    pub margin: Option<Decimal>,
    /// Its position's status.
    pub position: Option<String>,
}

/// Every account's balance and margin and every order's money, read in one snapshot:
/// two of them, before and after a fault, say whether money came out exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    /// Balance and margin used, per account.
    pub accounts: BTreeMap<Uuid, (Decimal, Decimal)>,
    /// Every order.
    pub orders: BTreeMap<Uuid, BookOrder>,
}

impl Book {
    /// Reads the whole book in one REPEATABLE READ snapshot.
    pub async fn read(pool: &PgPool) -> Book {
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.expect("snapshot");
        let accounts: Vec<(Uuid, Decimal, Decimal)> =
            sqlx::query_as("SELECT id, balance::numeric, margin_used::numeric FROM profiles")
                .fetch_all(&mut *tx)
                .await
                .expect("accounts");
        let orders: Vec<OrderRow> = sqlx::query_as(
            "SELECT o.id, o.user_id, o.status::text, o.total_cost::numeric, p.margin_used::numeric, p.status::text \
             FROM orders o LEFT JOIN positions p ON p.order_id = o.id",
        )
        .fetch_all(&mut *tx)
        .await
        .expect("orders");
        tx.rollback().await.expect("end snapshot");
        Book {
            accounts: accounts.into_iter().map(|(id, b, m)| (id, (b, m))).collect(),
            orders: orders
                .into_iter()
                .map(|(id, user, status, total_cost, margin, position)| {
                    (id, BookOrder { user, status, total_cost, margin, position })
                })
                .collect(),
        }
    }

    /// The orders executed in `before` and rolled back here.
    pub fn rolled_back_since(&self, before: &Book) -> BTreeSet<Uuid> {
        before
            .orders
            .iter()
            .filter(|(id, o)| o.status == "executed" && self.orders.get(*id).is_some_and(|a| a.status == "rolled_back"))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Panics unless every account holds exactly what it held in `before` plus what its
    /// orders changed since, reckoned from the orders' own amounts (independent of the
    /// ledger and the audit log): an executed order with its position open costs its
    /// `total_cost` and holds its margin; rolled back, it costs nothing and holds nothing.
    /// An order may only stay as it was or go from executed to rolled back (its position
    /// with it); new orders are allowed. Returns the orders rolled back since `before`.
    pub fn assert_money_exact(&self, before: &Book) -> BTreeSet<Uuid> {
        let mut wrong = Vec::new();
        if self.accounts.keys().ne(before.accounts.keys()) {
            wrong.push(format!("accounts differ: {} before, {} now", before.accounts.len(), self.accounts.len()));
        }
        let mut expected = before.accounts.clone();
        for (id, now) in &self.orders {
            let then = before.orders.get(id);
            if let Some(then) = then {
                let same = then == now;
                let rolled = then.status == "executed"
                    && now.status == "rolled_back"
                    && then.position.as_deref() == Some("open")
                    && now.position.as_deref() == Some("rolled_back")
                    && (then.user, then.total_cost, then.margin) == (now.user, now.total_cost, now.margin);
                if !same && !rolled {
                    wrong.push(format!("order {id} changed from {then:?} to {now:?}"));
                    continue;
                }
            }
            let (cash_then, margin_then) = then.map(holds).unwrap_or_default();
            let (cash_now, margin_now) = holds(now);
            if let Some((balance, margin)) = expected.get_mut(&now.user) {
                *balance += cash_then - cash_now;
                *margin += margin_now - margin_then;
            }
        }
        for id in before.orders.keys().filter(|id| !self.orders.contains_key(*id)) {
            wrong.push(format!("order {id} is gone"));
        }
        for (user, now) in &self.accounts {
            if let Some(want) = expected.get(user)
                && want != now
            {
                wrong.push(format!("account {user}: balance, margin {now:?}, expected {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "money is not exact ({} findings):\n{}", wrong.len(), wrong.join("\n"));
        self.rolled_back_since(before)
    }
}

/// An order's id, user, status, total cost, and its position's margin and status.
type OrderRow = (Uuid, Uuid, String, Option<Decimal>, Option<Decimal>, Option<String>);

/// What an order takes from its account's cash and holds as margin now.
fn holds(o: &BookOrder) -> (Decimal, Decimal) {
    if o.status == "executed" && o.position.as_deref() == Some("open") {
        (o.total_cost.unwrap_or_default(), o.margin.unwrap_or_default())
    } else {
        (Decimal::ZERO, Decimal::ZERO)
    }
}

// Each finding is one line of text; every query must return none.
const ONCE_CHECKS: [(&str, &str); 5] = [
    (
        "an order with more than one rollback row",
        "SELECT order_id::text || ': ' || count(*) || ' rows' FROM order_audit_log \
         WHERE action = 'order_rolled_back' GROUP BY order_id HAVING count(*) > 1",
    ),
    (
        "an order whose status, position and rollback rows disagree",
        "SELECT o.id::text || ': status ' || o.status || ', position ' || coalesce(p.status, 'none') || ', ' \
                || count(a.id) || ' rollback row(s)' \
         FROM orders o LEFT JOIN positions p ON p.order_id = o.id \
         LEFT JOIN order_audit_log a ON a.order_id = o.id AND a.action = 'order_rolled_back' \
         GROUP BY o.id, o.status, p.status \
         HAVING (o.status = 'rolled_back') <> (count(a.id) = 1) \
             OR (o.status = 'rolled_back') <> (p.status IS NOT DISTINCT FROM 'rolled_back')",
    ),
    (
        "a rollback row of another user's order, or of none",
        "SELECT a.id::text || ': order ' || a.order_id || ' user ' || a.user_id FROM order_audit_log a \
         LEFT JOIN orders o ON o.id = a.order_id \
         WHERE a.action = 'order_rolled_back' AND o.user_id IS DISTINCT FROM a.user_id",
    ),
    (
        "a rollback row whose refund is not the order's cost",
        "SELECT a.order_id::text || ': refunded ' || (a.details ->> 'refunded') || ', cost ' || o.total_cost \
         FROM order_audit_log a JOIN orders o ON o.id = a.order_id \
         WHERE a.action = 'order_rolled_back' AND (a.details ->> 'refunded')::numeric IS DISTINCT FROM o.total_cost",
    ),
    (
        "daily figures that disagree with the rolled-back orders",
        "WITH r AS (SELECT user_id, (executed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n, \
                           sum(commission) AS c FROM orders WHERE status = 'rolled_back' GROUP BY 1, 2) \
         SELECT coalesce(d.user_id, r.user_id)::text || ' ' || coalesce(d.trading_date, r.day) || ': ' \
                || coalesce(d.orders_rolled_back, 0) || ' rolled back, ' || coalesce(r.n, 0) || ' orders' \
         FROM daily_pnl_tracking d FULL JOIN r ON r.user_id = d.user_id AND r.day = d.trading_date \
         WHERE coalesce(d.orders_rolled_back, 0) <> coalesce(r.n, 0) \
            OR coalesce(d.commission_refunded, 0) <> coalesce(r.c, 0)",
    ),
];

/// Panics unless each order was rolled back at most once and everything that says so
/// agrees: one `order_rolled_back` row per rolled-back order and none for the others, its
/// position rolled back with it, the row's user and refund the order's, the daily figures
/// the orders'; and `ledger_audit()` finds nothing. Returns how many orders are rolled back.
pub async fn assert_rolled_back_once(pool: &PgPool) -> i64 {
    let mut wrong = Vec::new();
    for (what, sql) in ONCE_CHECKS {
        let found: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.expect(what);
        wrong.extend(found.into_iter().take(20).map(|f| format!("{what}: {f}")));
    }
    assert!(wrong.is_empty(), "rolled back once? no:\n{}", wrong.join("\n"));
    super::db::assert_consistent(pool).await;
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rolled_back'")
        .fetch_one(pool)
        .await
        .expect("rolled back")
}

/// What the audit log says one batch (or one operation: a single rollback's rows carry its
/// id the same way) did: the figures its report must show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchFigures {
    /// Orders with an `order_rolled_back` row of the batch.
    pub rolled_back: BTreeSet<Uuid>,
    /// The sum of those rows' `details->>'refunded'`.
    pub refunded: Decimal,
    /// Orders with a `rollback_failed` row of the batch.
    pub failed: BTreeSet<Uuid>,
    /// Orders with a `postcheck_failed` row of the batch.
    pub postcheck_failed: BTreeSet<Uuid>,
}

impl BatchFigures {
    /// Reads the audit rows of `batch_id`.
    pub async fn of(pool: &PgPool, batch_id: Uuid) -> BatchFigures {
        let rows: Vec<(Uuid, String, Option<Decimal>)> = sqlx::query_as(
            "SELECT order_id, action::text, (details ->> 'refunded')::numeric \
             FROM order_audit_log WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_all(pool)
        .await
        .expect("batch rows");
        let mut f = BatchFigures::default();
        for (order, action, refunded) in rows {
            match action.as_str() {
                "order_rolled_back" => {
                    f.rolled_back.insert(order);
                    f.refunded += refunded.unwrap_or_default();
                }
                "rollback_failed" => {
                    f.failed.insert(order);
                }
                _ => {
                    f.postcheck_failed.insert(order);
                }
            }
        }
        f
    }
}
