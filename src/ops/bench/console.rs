//! How the console feels, measured the way a person sees it: the real binary in tmux against
//! the benchmark's database, the screen polled, next to a peer program (a ratatui + sqlx
//! Postgres TUI such as rainfrog) launched against the same database in the same rounds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Say;
use super::terminal::{Pane, cpu_ticks, rss_kb_of, ticks_per_second, tmux_available};
use crate::core::error::{Error, Result};
use crate::store::files::ScratchDir;

/// How long any one thing may take to appear before the run is called failed.
const WAIT: Duration = Duration::from_secs(20);
/// The pane's size.
const SIZE: (u16, u16) = (160, 48);

/// The console's figures (medians over the rounds) and the peer's first frame.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleFigures {
    /// Rounds measured (after one uncounted warm-up of each program).
    pub rounds: usize,
    /// Launch → the first frame (anything on screen; the console's first frame draws the
    /// orders pane's title), ms.
    pub first_frame_ms: f64,
    /// Launch → the first page of orders listed (a row under the cursor), ms.
    pub orders_listed_ms: f64,
    /// `j` → the cursor moved on screen, median of 20 per round, ms.
    pub key_ms: f64,
    /// Resident memory after 20 pages down, MB.
    pub rss_mb: f64,
    /// CPU while idle over 10 s (one clock tick is 0.1%), percent of one core.
    pub idle_cpu_pct: f64,
    /// `c` during a running batch → the batch's final summary on screen, ms.
    pub cancel_ms: Option<f64>,
    /// The peer's first frame, when one was given.
    pub peer: Option<PeerFigures>,
}

/// The peer program's first frame.
#[derive(Debug, Clone, Serialize)]
pub struct PeerFigures {
    /// Its file name.
    pub name: String,
    /// The text timed as `marker_ms`.
    pub marker: String,
    /// Launch → its first frame (anything on screen, as for the console), ms.
    pub first_frame_ms: f64,
    /// Launch → `marker` on screen (rainfrog 0.4.4 draws `<alt+1>` once its schema menu
    /// has loaded, after connecting), ms.
    pub marker_ms: f64,
    /// The console's first frame ÷ the peer's (medians).
    pub ratio: f64,
}

/// What to launch: the console (this binary), a URL for it, and the optional peer.
pub(super) struct ConsolePlan {
    /// The benchmark's database URL.
    pub url: String,
    /// Rounds.
    pub rounds: usize,
    /// The peer's binary and the text its first frame shows.
    pub peer: Option<(PathBuf, String)>,
    /// A symbol with enough executed orders for a batch that runs a few seconds.
    pub batch_symbol: String,
}

/// Runs the rounds (blocking: call from `spawn_blocking`). None when tmux is missing.
pub(super) fn measure(plan: &ConsolePlan, say: Say<'_>) -> Result<Option<ConsoleFigures>> {
    if !tmux_available() {
        say("tmux is not installed: no console figures");
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| Error::file("find", "this program", e))?;
    let scratch = ScratchDir::new("incident-console-bench-console")?;
    say("Console in tmux: one warm-up launch of each program …");
    console_round(&exe, scratch.path(), plan, 0, false)?;
    if let Some((peer, marker)) = &plan.peer {
        peer_first_frame(peer, marker, scratch.path(), &plan.url)?;
    }
    let mut rounds = Vec::new();
    let mut peer_frames = Vec::new();
    for r in 1..=plan.rounds {
        let f = console_round(&exe, scratch.path(), plan, r, true)?;
        let peer = match &plan.peer {
            Some((peer, marker)) => Some(peer_first_frame(peer, marker, scratch.path(), &plan.url)?),
            None => None,
        };
        say(&format!(
            "  round {r}: first frame {:.1} ms{}, orders listed {:.1} ms, key {:.1} ms, RSS {:.1} MB, idle CPU {:.2}%{}",
            f.first_frame_ms,
            peer.map_or(String::new(), |p| format!(" (peer {:.1} ms, its marker {:.1} ms)", p.0, p.1)),
            f.orders_listed_ms,
            f.key_ms,
            f.rss_mb,
            f.idle_cpu_pct,
            f.cancel_ms.map_or(String::new(), |c| format!(", cancel {c:.1} ms")),
        ));
        rounds.push(f);
        peer_frames.extend(peer);
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let first_frame_ms = med(&|r| r.first_frame_ms);
    let cancels: Vec<f64> = rounds.iter().filter_map(|r| r.cancel_ms).collect();
    let peer = plan.peer.as_ref().map(|(path, marker)| {
        let p = median(peer_frames.iter().map(|f: &(f64, f64)| f.0).collect());
        PeerFigures {
            name: path.file_name().map_or_else(|| "peer".into(), |n| n.to_string_lossy().into_owned()),
            marker: marker.clone(),
            first_frame_ms: p,
            marker_ms: median(peer_frames.iter().map(|f| f.1).collect()),
            ratio: first_frame_ms / p.max(f64::EPSILON),
        }
    });
    Ok(Some(ConsoleFigures {
        rounds: rounds.len(),
        first_frame_ms,
        orders_listed_ms: med(&|r| r.orders_listed_ms),
        key_ms: med(&|r| r.key_ms),
        rss_mb: med(&|r| r.rss_mb),
        idle_cpu_pct: med(&|r| r.idle_cpu_pct),
        cancel_ms: (!cancels.is_empty()).then(|| median(cancels)),
        peer,
    }))
}

/// One round's figures.
struct Round {
    first_frame_ms: f64,
    orders_listed_ms: f64,
    key_ms: f64,
    rss_mb: f64,
    idle_cpu_pct: f64,
    cancel_ms: Option<f64>,
}

fn median(v: Vec<f64>) -> f64 {
    super::median(v).unwrap_or(f64::NAN)
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// The line the cursor is on (the console marks it with ▶ after the border), and the row
/// counter: what `j` changes.
pub(super) fn cursor_at(screen: &str) -> Option<(usize, String)> {
    screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("┃▶") || l.starts_with("│▶"))
        .map(|(i, l)| (i, l.to_string()))
}

/// A fresh home per launch: a run must not resume the incident the last one opened.
fn fresh_home(scratch: &Path, name: &str) -> Result<PathBuf> {
    let home = scratch.join(name);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).map_err(|e| Error::file("create", &home, e))?;
    Ok(home)
}

fn console_round(exe: &Path, scratch: &Path, plan: &ConsolePlan, n: usize, full: bool) -> Result<Round> {
    let home = fresh_home(scratch, &format!("console-{n}"))?;
    let env = [
        ("DATABASE_URL", plan.url.clone()),
        ("INCIDENT_OPERATOR", "bench".to_string()),
        ("XDG_CONFIG_HOME", home.to_string_lossy().into_owned()),
        ("XDG_DATA_HOME", home.to_string_lossy().into_owned()),
    ];
    let pane = Pane::launch(&home, &env, exe, &[], SIZE)?;
    let first = pane.wait_for("a first frame", WAIT, drawn)?;
    pane.wait_for("the orders pane", WAIT, |s| s.contains("Orders"))?;
    let listed = pane.wait_for("a page of orders", WAIT, |s| cursor_at(s).is_some())?;
    let mut round = Round {
        first_frame_ms: ms(pane.launched, first),
        orders_listed_ms: ms(pane.launched, listed),
        key_ms: f64::NAN,
        rss_mb: f64::NAN,
        idle_cpu_pct: f64::NAN,
        cancel_ms: None,
    };
    if !full {
        return Ok(round);
    }
    let pid = pane.pid().ok_or_else(|| Error::CheckFailed("the console's pid is unknown".into()))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut keys = Vec::new();
    for _ in 0..20 {
        let before = cursor_at(&pane.screen());
        let sent = Instant::now();
        pane.keys(&["j"])?;
        let seen = pane.wait_for("the cursor move", WAIT, |s| cursor_at(s) != before)?;
        keys.push(ms(sent, seen));
        std::thread::sleep(Duration::from_millis(30));
    }
    round.key_ms = median(keys);
    for _ in 0..20 {
        pane.keys(&["PageDown"])?;
        std::thread::sleep(Duration::from_millis(40));
    }
    std::thread::sleep(Duration::from_millis(500));
    round.rss_mb = rss_kb_of(pid).map_or(f64::NAN, |kb| kb / 1024.0);
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(10));
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    if let (Some(c0), Some(c1)) = (c0, c1) {
        round.idle_cpu_pct = (c1.saturating_sub(c0)) as f64 / ticks_per_second() / (t1 - t0).as_secs_f64() * 100.0;
    }
    round.cancel_ms = cancel_a_batch(&pane, &plan.batch_symbol)?;
    let _ = pane.keys(&["q"]);
    Ok(round)
}

/// Starts a batch over the symbol's executed orders, presses `c` once it is rolling back,
/// and times until the batch's final summary replaces the progress. None when the batch
/// finished before `c` reached it.
fn cancel_a_batch(pane: &Pane, symbol: &str) -> Result<Option<f64>> {
    pane.keys(&["/"])?;
    pane.wait_for("the filter line", WAIT, |s| s.contains("typing the filter"))?;
    pane.type_text(&format!("{symbol} executed"))?;
    pane.keys(&["Enter"])?;
    std::thread::sleep(Duration::from_millis(300));
    pane.wait_for("the filtered list", WAIT, |s| cursor_at(s).is_some())?;
    pane.keys(&["A"])?;
    pane.wait_for("the batch's scope", WAIT, |s| s.contains("Batch: every executed order matching the filter"))?;
    pane.keys(&["b"])?;
    pane.wait_for("the reason prompt", WAIT, |s| s.contains("Reason (required):"))?;
    pane.type_text("bench: cancel a running batch")?;
    pane.keys(&["Enter"])?;
    pane.wait_for("the confirmation", WAIT, |s| s.contains(" to roll back"))?;
    let screen = pane.screen();
    let count = screen
        .split("Type ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| Error::CheckFailed("the confirmation shows no count to type".into()))?
        .to_string();
    pane.type_text(&count)?;
    pane.keys(&["Enter"])?;
    pane.wait_for("the batch running", WAIT, |s| s.contains("Rolling back…") || s.contains("rolled back,"))?;
    std::thread::sleep(Duration::from_millis(300));
    if !pane.screen().contains("Rolling back…") {
        return Ok(None);
    }
    let sent = Instant::now();
    pane.keys(&["c"])?;
    let done = pane.wait_for("the batch's summary after cancel", WAIT, |s| {
        !s.contains("Rolling back…") && !s.contains("Cancelling…") && s.contains("rolled back")
    })?;
    Ok(Some(ms(sent, done)))
}

/// Anything drawn: the same test of a first frame for both programs.
fn drawn(screen: &str) -> bool {
    screen.chars().any(|c| !c.is_whitespace())
}

/// The peer launched with `--url` (rainfrog's flag): its first frame, and `marker` on screen.
fn peer_first_frame(peer: &Path, marker: &str, scratch: &Path, url: &str) -> Result<(f64, f64)> {
    let home = fresh_home(scratch, "peer")?;
    let env = [
        ("XDG_CONFIG_HOME", home.to_string_lossy().into_owned()),
        ("XDG_DATA_HOME", home.to_string_lossy().into_owned()),
    ];
    let pane = Pane::launch(&home, &env, peer, &["--url", url], SIZE)?;
    let first = pane.wait_for("the peer's first frame", WAIT, drawn)?;
    let shown = pane.wait_for(&format!("the peer's {marker}"), WAIT, |s| s.contains(marker))?;
    Ok((ms(pane.launched, first), ms(pane.launched, shown)))
}
