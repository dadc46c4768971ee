//! The real binary in a terminal: a private tmux server (its socket under the test's own
//! HOME, so nothing is shared with the user's tmux or another test, and nothing is left in
//! /tmp) running the console in a 160x48 pane, driven by keys and read from the screen.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::cli::BIN;

/// How long a test waits for the screen to show what it expects (the database answers in
/// well under a second on the test machine; this leaves room for a loaded one).
pub const WAIT: Duration = Duration::from_secs(15);

/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(50);

/// `s` as one word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How to start a console: its HOME and extra environment.
#[derive(Default)]
pub struct Options {
    home: Option<PathBuf>,
    env: Vec<(String, OsString)>,
}

impl Options {
    /// The console's (and tmux's) HOME; by default a temporary directory of its own.
    pub fn home(mut self, home: &Path) -> Options {
        self.home = Some(home.to_path_buf());
        self
    }

    /// One more variable in the console's environment.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Options {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Starts `incident-console ARGS` (see `Console::open`).
    pub fn open(self, args: &[&str]) -> Console {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!("ic-e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let (home, own_home) = match self.home {
            Some(h) => (h, None),
            None => {
                let t = tempfile::tempdir().expect("temp HOME");
                (t.path().to_path_buf(), Some(t))
            }
        };
        let words: Vec<String> = std::iter::once(BIN).chain(args.iter().copied()).map(shell_quote).collect();
        // The pane's shell stays after the console exits and says how it ended.
        let command = format!("{}; echo console-exited-$?; exec sh", words.join(" "));
        let mut console = Console {
            socket,
            socket_path: String::new(),
            home,
            _own_home: own_home,
            env: self.env,
            opened: Instant::now(),
        };
        let out = console
            .tmux()
            .args(["new-session", "-d", "-s", "s", "-x", "160", "-y", "48", &command])
            .output()
            .expect("start tmux");
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        console.socket_path = console.pane_format("#{socket_path}");
        console
    }
}

/// A private tmux server running the console in a 160x48 pane; the pane's shell stays
/// after the console exits (and prints `console-exited-CODE`). The server is killed, and
/// its socket removed, when this is dropped.
pub struct Console {
    socket: String,
    /// The server's socket file, removed with the server.
    socket_path: String,
    home: PathBuf,
    /// The temporary HOME when the test gave none; removed after the server is killed.
    _own_home: Option<tempfile::TempDir>,
    env: Vec<(String, OsString)>,
    /// When the console was started.
    pub opened: Instant,
}

impl Console {
    /// `incident-console ARGS` with INCIDENT_OPERATOR=e2e, a private temporary HOME, and no
    /// DATABASE_URL nor anything else of the caller's environment.
    pub fn open(args: &[&str]) -> Console {
        Options::default().open(args)
    }

    /// To start a console with another HOME or more environment.
    pub fn options() -> Options {
        Options::default()
    }

    /// The console's HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// tmux on this console's server, with a clean environment: the server copies it, and
    /// so does the console it starts.
    pub fn tmux(&self) -> Command {
        let mut c = Command::new("/usr/bin/tmux");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("INCIDENT_OPERATOR", "e2e")
            // The server's socket in the private HOME, not /tmp: nothing shared, nothing left.
            .env("TMUX_TMPDIR", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .stdin(Stdio::null());
        c
    }

    /// Keys by tmux name (Enter, Escape, Tab, C-c).
    pub fn keys(&self, keys: &[&str]) {
        let out = self.tmux().args(["send-keys", "-t", "s"]).args(keys).output().expect("tmux send-keys");
        assert!(out.status.success(), "send-keys {keys:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Text typed literally.
    pub fn type_text(&self, text: &str) {
        let out = self.tmux().args(["send-keys", "-t", "s", "-l", text]).output().expect("tmux send-keys");
        assert!(out.status.success(), "send-keys -l {text:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        let out = self.tmux().args(["capture-pane", "-p", "-t", "s"]).output().expect("tmux capture-pane");
        if !out.status.success() {
            return format!("<capture-pane failed: {}>", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A format of the pane (`#{alternate_on}`, `#{pane_pid}`).
    pub fn pane_format(&self, format: &str) -> String {
        let out = self.tmux().args(["display-message", "-p", "-t", "s", format]).output().expect("tmux display");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Polls the screen until `pred` holds and returns it; panics with the screen after
    /// `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; the screen:\n{s}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the screen until it shows `text`.
    pub async fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{text:?}"), timeout, |s| s.contains(text)).await
    }

    /// Types into an open one-line dialog, waits for the text to show, then Enter.
    pub async fn enter_text(&self, text: &str) {
        self.type_text(text);
        self.wait_for(text, WAIT).await;
        self.keys(&["Enter"]);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if self.socket_path.contains(&self.socket) {
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}
