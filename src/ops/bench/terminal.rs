//! A program in a real terminal, the way a person sees it: a private tmux server (its
//! socket in a scratch HOME, nothing shared with the user's tmux) running one program in a
//! pane, driven by keys and read by polling `capture-pane`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};

/// How often the screen is read while waiting: the poll's own cost (a few ms of
/// `capture-pane`) is in every figure alike, for both programs compared.
const POLL: Duration = Duration::from_millis(1);

/// Whether tmux can be run here.
pub(super) fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One program running in a pane of its own tmux server.
pub(super) struct Pane {
    socket: String,
    home: PathBuf,
    env: Vec<(String, String)>,
    /// When the program was launched (just before `new-session`).
    pub(super) launched: Instant,
}

impl Pane {
    /// Launches `program ARGS` in a `width`x`height` pane with HOME at `home` and `env`
    /// (nothing else of this process's environment).
    pub(super) fn launch(
        home: &Path,
        env: &[(&str, String)],
        program: &Path,
        args: &[&str],
        size: (u16, u16),
    ) -> Result<Pane> {
        let socket = format!("icbench-{}", std::process::id());
        let words: Vec<String> =
            std::iter::once(program.to_string_lossy().into_owned()).chain(args.iter().map(|a| a.to_string())).collect();
        let command = format!("exec {}", words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" "));
        let mut pane = Pane {
            socket,
            home: home.to_path_buf(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            launched: Instant::now(),
        };
        let _ = pane.tmux().arg("kill-server").stdout(Stdio::null()).stderr(Stdio::null()).status();
        let (w, h) = size;
        pane.launched = Instant::now();
        let out = pane
            .tmux()
            .args(["new-session", "-d", "-s", "s", "-x", &w.to_string(), "-y", &h.to_string(), &command])
            .output()
            .map_err(|e| Error::Tool { tool: "tmux", detail: format!("cannot run it: {e}") })?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "tmux",
                detail: format!(
                    "new-session failed: {}",
                    crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
                ),
            });
        }
        Ok(pane)
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("TMUX_TMPDIR", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .stdin(Stdio::null());
        c
    }

    /// The screen as text (empty when it cannot be read, e.g. the program has exited).
    pub(super) fn screen(&self) -> String {
        match self.tmux().args(["capture-pane", "-p", "-t", "s"]).output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => String::new(),
        }
    }

    /// Polls the screen until `pred` holds; the moment it was first seen.
    pub(super) fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<Instant> {
        let end = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            let seen = Instant::now();
            if pred(&screen) {
                return Ok(seen);
            }
            if seen > end {
                let last: String =
                    screen.lines().filter(|l| !l.trim().is_empty()).take(6).collect::<Vec<_>>().join(" / ");
                return Err(Error::CheckFailed(format!(
                    "the screen never showed {what} within {}s (it showed: {})",
                    timeout.as_secs(),
                    crate::core::sanitize::line(&last)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Keys by tmux name (Enter, PageDown, C-c).
    pub(super) fn keys(&self, keys: &[&str]) -> Result<()> {
        self.run(&[&["send-keys", "-t", "s"], keys].concat())
    }

    /// Text typed literally.
    pub(super) fn type_text(&self, text: &str) -> Result<()> {
        self.run(&["send-keys", "-t", "s", "-l", text])
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let out = self.tmux().args(args).output().map_err(|e| Error::Tool { tool: "tmux", detail: e.to_string() })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Tool {
                tool: "tmux",
                detail: crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    /// The pid of the program in the pane (it was `exec`ed by the pane's shell).
    pub(super) fn pid(&self) -> Option<u32> {
        let out = self.tmux().args(["display", "-p", "-t", "s", "#{pane_pid}"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Resident memory of `pid` in kB (VmRSS).
pub(super) fn rss_kb_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of `pid` in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second.
pub(super) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
