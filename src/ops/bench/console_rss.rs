//! The console's memory after paging through a big book: the real binary launched in a
//! tmux session of its own against the bench's database, paged with the keys a person
//! uses (PageDown, End, PageUp, Home), and its resident set read from /proc.

use std::path::Path;
use std::time::{Duration, Instant};

use super::console::cursor_at;
use super::terminal::{Pane, rss_kb_of};
use crate::core::error::{Error, Result};
use crate::store::files::ScratchDir;

/// How long the first page may take to appear.
const FIRST_PAGE_WITHIN: Duration = Duration::from_secs(120);

/// Rounds of paging: each goes down a screen at a time, jumps to the end, comes back up
/// and jumps to the top, so pages are loaded and dropped again and again.
const ROUNDS: usize = 5;
/// PageDown presses per round (and PageUp presses on the way back).
const PRESSES: usize = 30;

/// Launches `binary` on `url` in tmux, pages through the orders list, and returns its
/// resident set in KiB. Blocking: run it on a blocking thread.
pub fn rss_after_paging(binary: &Path, url: &str, tag: &str) -> Result<u64> {
    let scratch = ScratchDir::new(&format!("incident-bench-console-{tag}"))?;
    let home = scratch.path().to_string_lossy().into_owned();
    // The URL in the environment, not on the command line: `ps` shows arguments to everyone.
    let env = [
        ("DATABASE_URL", url.to_string()),
        ("INCIDENT_OPERATOR", "bench".to_string()),
        ("XDG_CONFIG_HOME", home.clone()),
        ("XDG_DATA_HOME", home),
    ];
    let pane = Pane::launch(scratch.path(), &env, binary, &[], (160, 48))?;
    let listed = |s: &str| cursor_at(s).is_some();
    pane.wait_for("the first page of orders", FIRST_PAGE_WITHIN, listed)?;
    let pid = pane.pid().ok_or_else(|| Error::Tool { tool: "tmux", detail: "no pane pid".into() })?;
    let pause = Duration::from_millis(30);
    for _ in 0..ROUNDS {
        for _ in 0..PRESSES {
            pane.keys(&["PageDown"])?;
            std::thread::sleep(pause);
        }
        pane.keys(&["End"])?;
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..PRESSES {
            pane.keys(&["PageUp"])?;
            std::thread::sleep(pause);
        }
        pane.keys(&["Home"])?;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let the last pages arrive before reading the figure (on a big book a page the keys
    // asked for may still be on its way).
    std::thread::sleep(Duration::from_secs(1));
    let back = Instant::now();
    pane.wait_for("the list after paging", FIRST_PAGE_WITHIN.saturating_sub(back.elapsed()), listed)?;
    let kb =
        rss_kb_of(pid).ok_or_else(|| Error::Tool { tool: "console", detail: "no VmRSS in its /proc status".into() })?;
    let _ = pane.keys(&["q"]);
    Ok(kb as u64)
}
