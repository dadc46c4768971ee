//! A private PostgreSQL cluster started from the installed server binaries: the console's
//! sandbox (persistent, managed with `pg_ctl`) and the test suite's throwaway clusters
//! (one foreground `postgres` per test binary, killed when the process exits).
//!
//! The server only listens on a Unix socket in a directory of its own (mode 0700), so only
//! its owner (and root) can connect; that is why `trust` authentication is acceptable.
//! PostgreSQL refuses to run as root: when started by root, the server runs as the
//! `postgres` system user.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};

/// Name of the database the console uses inside the sandbox.
pub const SANDBOX_DATABASE: &str = "incident";
/// Superuser created by initdb.
pub const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;

const INSTALL_HINT: &str = "Install them with `sudo apt-get install postgresql` (Debian/Ubuntu), \
or set INCIDENT_PG_BINDIR to the directory holding initdb, pg_ctl and postgres. \
To use an existing server instead, pass --database-url postgres://user@host/db or set DATABASE_URL.";

/// The directory holding `initdb`, `pg_ctl`, `postgres` (and usually `pgbench`).
#[derive(Debug, Clone)]
pub struct ServerBinaries {
    dir: PathBuf,
}

impl ServerBinaries {
    /// Finds the server binaries: `$INCIDENT_PG_BINDIR`, then `PATH`, then
    /// `/usr/lib/postgresql/<newest>/bin` where Debian installs them off `PATH`.
    pub fn find() -> Result<Self> {
        let mut candidates = Vec::new();
        // An explicit directory is the only one tried: a wrong setting should say so.
        if let Some(dir) = std::env::var_os("INCIDENT_PG_BINDIR") {
            let dir = PathBuf::from(dir);
            return if ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file()) {
                Ok(ServerBinaries { dir })
            } else {
                Err(Error::Sandbox(format!(
                    "INCIDENT_PG_BINDIR={} does not hold initdb, pg_ctl and postgres. {INSTALL_HINT}",
                    dir.display()
                )))
            };
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let initdb = dir.join("initdb");
                if initdb.is_file() {
                    // Debian puts symlinks on PATH; the real directory has all the tools.
                    if let Some(real) = fs::canonicalize(&initdb).ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
                        candidates.push(real);
                    }
                    candidates.push(dir);
                }
            }
        }
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect();
            versions.sort_by_key(|v| std::cmp::Reverse(v.0));
            candidates.extend(versions.into_iter().map(|(_, p)| p));
        }
        candidates
            .into_iter()
            .find(|dir| ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file()))
            .map(|dir| ServerBinaries { dir })
            .ok_or_else(|| {
                Error::Sandbox(format!(
                    "No PostgreSQL server binaries (initdb, pg_ctl, postgres) were found. {INSTALL_HINT}"
                ))
            })
    }

    /// Path of one tool in the directory.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The system user a root-started server runs as.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    uid: u32,
    gid: u32,
}

/// When running as root, the `postgres` system user the server must run as.
pub fn server_user() -> Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user("postgres").map(Some).ok_or_else(|| {
        Error::Sandbox(
            "Running as root, but there is no `postgres` system user to run the server as \
             (PostgreSQL refuses to run as root). Install the postgresql package, which creates it, \
             or run the console as a normal user."
                .into(),
        )
    })
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the two ids
    // out before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() { None } else { Some(RunAs { uid: (*pw).pw_uid, gid: (*pw).pw_gid }) }
    }
}

/// The login name of the effective user, from the password database.
pub fn current_user_name() -> Option<String> {
    // SAFETY: as in lookup_user; the name is copied before returning.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
        }
    }
}

/// How the server is tuned: the sandbox keeps durability, throwaway test clusters drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on: a sandbox that behaves like a real server.
    Durable,
    /// fsync off: for test clusters that are deleted anyway.
    Throwaway,
}

/// State of a cluster directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No data directory yet.
    NotInitialized,
    /// Initialized, not running.
    Stopped,
    /// Running.
    Running,
}

/// One cluster: `root/data` (PGDATA), `root/run` (socket), `root/server.log`.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    bins: ServerBinaries,
    run_as: Option<RunAs>,
}

impl Cluster {
    /// A cluster under `root`, using the installed server binaries.
    pub fn new(root: PathBuf) -> Result<Self> {
        Ok(Cluster { root, bins: ServerBinaries::find()?, run_as: server_user()? })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server binaries this cluster uses.
    pub fn binaries(&self) -> &ServerBinaries {
        &self.bins
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A connection URL for `database` that both sqlx and psql accept.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql:///{database}?host={}&port={PORT}&user={SUPERUSER}",
            percent_encode_path(&self.socket_dir().to_string_lossy())
        )
    }

    /// Whether `initdb` has run.
    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bins.tool(tool));
        // The server user may not be able to enter the caller's working directory.
        cmd.current_dir(&self.root).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn make_dir(&self, dir: &Path, mode: u32) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| sandbox_io("create", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| sandbox_io("set permissions on", dir, e))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                .map_err(|e| sandbox_io("hand over", dir, e))?;
        }
        Ok(())
    }

    /// Creates the directories and runs `initdb`; a no-op when already initialized.
    pub fn init(&self, durability: Durability) -> Result<()> {
        if self.is_initialized() {
            return Ok(());
        }
        if let Some(parent) = self.root.parent() {
            fs::create_dir_all(parent).map_err(|e| sandbox_io("create", parent, e))?;
        }
        self.make_dir(&self.root, 0o700)?;
        self.make_dir(&self.socket_dir(), 0o700)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        if durability == Durability::Throwaway {
            cmd.arg("--no-sync");
        }
        run_quiet(cmd, "initdb")?;

        let socket = self.socket_dir().to_string_lossy().replace('\'', "''");
        let mut conf = format!(
            "\n# incident-console: private cluster, Unix socket only\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{socket}'\n\
             unix_socket_permissions = 0700\n\
             port = {PORT}\n\
             max_connections = 200\n"
        );
        if durability == Durability::Throwaway {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = self.data_dir().join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path).map_err(|e| sandbox_io("read", &conf_path, e))?;
        existing.push_str(&conf);
        fs::write(&conf_path, existing).map_err(|e| sandbox_io("write", &conf_path, e))?;
        Ok(())
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn status(&self) -> Result<Status> {
        if !self.is_initialized() {
            return Ok(Status::NotInitialized);
        }
        let out = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Sandbox(format!("cannot run pg_ctl: {e}")))?;
        Ok(if out.status.success() { Status::Running } else { Status::Stopped })
    }

    /// Starts the server in the background and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        if self.status()? == Status::Running {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start").arg("-D").arg(self.data_dir()).arg("-l").arg(self.log_file()).args(["-w", "-t", "60"]);
        run_quiet(cmd, "pg_ctl start").map_err(|e| match e {
            Error::Sandbox(m) => Error::Sandbox(format!("{m}\nServer log: {}", self.log_file().display())),
            other => other,
        })
    }

    /// Stops the server (fast shutdown: connections are closed, nothing is lost).
    pub fn stop(&self) -> Result<()> {
        if self.status()? != Status::Running {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(self.data_dir()).args(["-m", "fast", "-w", "-t", "60"]);
        run_quiet(cmd, "pg_ctl stop")
    }

    /// Stops the server and deletes the whole cluster directory.
    pub fn destroy(&self) -> Result<()> {
        self.stop()?;
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(sandbox_io("delete", &self.root, e)),
        }
    }

    /// Runs `postgres` in the foreground as a child that dies with this process.
    ///
    /// The kernel delivers the parent-death signal when the *thread* that forked exits,
    /// so the child is forked from a thread that lives as long as the process.
    pub fn spawn_owned(&self) -> Result<()> {
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data_dir()).stdin(Stdio::null());
        let log =
            fs::File::create(self.root.join("foreground.log")).map_err(|e| sandbox_io("create", &self.root, e))?;
        let log2 = log.try_clone().map_err(|e| sandbox_io("open", &self.root, e))?;
        cmd.stdout(log).stderr(log2);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec,
        // after the uid change (which would otherwise clear the setting).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("postgres-owner".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(()));
                    let _ = child.wait();
                    // Keep this thread alive: its exit would signal the server.
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::Sandbox(format!("cannot start the server thread: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Sandbox("the server thread ended".into()))?
            .map_err(|e| Error::Sandbox(format!("cannot start postgres: {e}")))?;
        self.wait_for_socket(Duration::from_secs(60))
    }

    fn wait_for_socket(&self, timeout: Duration) -> Result<()> {
        let socket = self.socket_dir().join(format!(".s.PGSQL.{PORT}"));
        let started = Instant::now();
        while started.elapsed() < timeout {
            if socket.exists() && self.data_dir().join("postmaster.pid").exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Sandbox(format!(
            "postgres did not open its socket within {}s; see {}",
            timeout.as_secs(),
            self.root.join("foreground.log").display()
        )))
    }
}

fn sandbox_io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Sandbox(format!("cannot {what} {}: {e}", path.display()))
}

fn run_quiet(mut cmd: Command, name: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Error::Sandbox(format!("cannot run {name}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(Error::Sandbox(format!("{name} failed: {}", crate::core::sanitize::multiline(&msg))))
}

fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the console's sandbox lives: `$INCIDENT_CONSOLE_SANDBOX_DIR`, else the user's
/// data directory; for root `/var/lib/incident-console/sandbox`, which the `postgres`
/// user can reach (root's home directory is closed to it).
pub fn sandbox_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("INCIDENT_CONSOLE_SANDBOX_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if server_user()?.is_some() {
        return Ok(PathBuf::from("/var/lib/incident-console/sandbox"));
    }
    directories::ProjectDirs::from("", "", "incident-console")
        .map(|d| d.data_dir().join("sandbox"))
        .ok_or_else(|| Error::Sandbox("cannot determine the user's data directory (is HOME set?)".into()))
}

/// The console's own sandbox cluster.
pub fn sandbox_cluster() -> Result<Cluster> {
    let root = sandbox_root()?;
    if let Some(parent) = root.parent() {
        fs::create_dir_all(parent).map_err(|e| sandbox_io("create", parent, e))?;
        if server_user()?.is_some() {
            // The server user has to traverse the parent to reach its own directory.
            let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
        }
    }
    Cluster::new(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_odd_socket_paths() {
        assert_eq!(percent_encode_path("/tmp/a b/run"), "/tmp/a%20b/run");
        assert_eq!(percent_encode_path("/var/lib/x_y-z.1"), "/var/lib/x_y-z.1");
    }
}
