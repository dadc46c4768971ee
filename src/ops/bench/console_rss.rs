//! The console's memory after paging through a big book: the real binary launched in a
//! tmux session of its own against the bench's database, paged with the keys a person
//! uses (PageDown, End, PageUp, Home), and its resident set read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};

/// How long the first page may take to appear.
const FIRST_PAGE_WITHIN: Duration = Duration::from_secs(120);

/// Rounds of paging: each goes down a screen at a time, jumps to the end, comes back up
/// and jumps to the top, so pages are loaded and dropped again and again.
const ROUNDS: usize = 5;
/// PageDown presses per round (and PageUp presses on the way back).
const PRESSES: usize = 30;

fn tool(e: std::io::Error) -> Error {
    Error::Tool { tool: "tmux", detail: format!("cannot run it: {e}") }
}

/// One tmux server of our own (its own socket in a private directory), torn down on drop.
struct Session {
    socket: String,
    home: PathBuf,
    url: String,
}

impl Session {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("XDG_DATA_HOME", &self.home)
            .env("TMUX_TMPDIR", &self.home)
            .env("SHELL", "/bin/sh")
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("INCIDENT_OPERATOR", "bench")
            // In the environment, not on the command line: `ps` shows arguments to everyone.
            .env("DATABASE_URL", &self.url)
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.tmux().args(args).output().map_err(tool)?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "tmux",
                detail: format!(
                    "{} failed: {}",
                    args.first().copied().unwrap_or(""),
                    crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", "s"];
        args.extend_from_slice(keys);
        self.run(&args).map(|_| ())
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "s"]).unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.tmux().args(["kill-server"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A row under the cursor: the list's first page is on screen.
fn listed(screen: &str) -> bool {
    screen.lines().any(|l| l.starts_with("┃▶") || l.starts_with("│▶"))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::Tool { tool: "console", detail: format!("cannot read its /proc status: {e}") })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Tool { tool: "console", detail: "no VmRSS in its /proc status".into() })
}

/// Launches `binary` on `url` in tmux, pages through the orders list, and returns its
/// resident set in KiB. Blocking: run it on a blocking thread.
pub fn rss_after_paging(binary: &Path, url: &str, tag: &str) -> Result<u64> {
    let home = std::env::temp_dir().join(format!("incident-bench-console-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&home)
        .map_err(|e| Error::Tool { tool: "console", detail: format!("cannot make its home directory: {e}") })?;
    let session = Session { socket: format!("ic-bench-{}-{tag}", std::process::id()), home, url: url.to_string() };
    let quoted = format!("'{}'", binary.to_string_lossy().replace('\'', r"'\''"));
    // exec: the pane's process is the console itself, whose /proc the figure reads.
    session.run(&["new-session", "-d", "-s", "s", "-x", "160", "-y", "48", &format!("exec {quoted}")])?;
    let started = Instant::now();
    while !listed(&session.screen()) {
        if started.elapsed() > FIRST_PAGE_WITHIN {
            return Err(Error::Tool {
                tool: "console",
                detail: format!(
                    "no orders listed within {} s; the screen:\n{}",
                    FIRST_PAGE_WITHIN.as_secs(),
                    crate::core::sanitize::multiline(&session.screen())
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid: u32 = session
        .run(&["display-message", "-p", "-t", "s", "#{pane_pid}"])?
        .trim()
        .parse()
        .map_err(|_| Error::Tool { tool: "tmux", detail: "no pane pid".into() })?;
    let pause = Duration::from_millis(30);
    for _ in 0..ROUNDS {
        for _ in 0..PRESSES {
            session.keys(&["PageDown"])?;
            std::thread::sleep(pause);
        }
        session.keys(&["End"])?;
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..PRESSES {
            session.keys(&["PageUp"])?;
            std::thread::sleep(pause);
        }
        session.keys(&["Home"])?;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let the last pages arrive before reading the figure (on a big book a page the keys
    // asked for may still be on its way).
    std::thread::sleep(Duration::from_secs(1));
    let back = Instant::now();
    while !listed(&session.screen()) && back.elapsed() < FIRST_PAGE_WITHIN {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !listed(&session.screen()) {
        return Err(Error::Tool {
            tool: "console",
            detail: format!(
                "the list is gone after paging; the screen:\n{}",
                crate::core::sanitize::multiline(&session.screen())
            ),
        });
    }
    let rss = rss_kib(pid)?;
    let _ = session.keys(&["q"]);
    Ok(rss)
}
