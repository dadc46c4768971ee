//! End-to-end tests of the console (the binary with no subcommand): the real binary in a
//! private tmux server, driven by keys and read from the screen, checked against the
//! database; and one in-process test of the event loop's responsiveness while the
//! database sleeps inside a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use incident_console::console::app::App;
use incident_console::console::protocol::DbEvent;
use incident_console::console::terminal::{LoopIo, LoopStats, run_loop};
use incident_console::console::worker::{self, WorkerTarget};
use incident_console::core::keys::KeyMap;
use incident_console::core::workflow::{IncidentHeader, Level};
use incident_console::store::config::ConsoleConfig;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use uuid::Uuid;

use crate::support::app::screen_text;
use crate::support::db::{BURST_SQL, TestDb, assert_consistent, count, seeded};
use crate::support::tmux::{Console, WAIT as T};

const REASON: &str = "duplicate executions of deploy 4711";
/// A server nobody listens on, with a password that must never show.
const UNREACHABLE: &str = "postgres://bob:s3cret@127.0.0.1:1/nope";

// ----------------------------------------------------------------------------------------
// The database
// ----------------------------------------------------------------------------------------

/// The burst's orders, newest first (the order the console lists them in).
async fn burst_newest_first(t: &TestDb) -> Vec<(Uuid, Uuid)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE {BURST_SQL} ORDER BY created_at DESC, id DESC"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("burst query")
}

/// The console's short form of an id (first 8 hex digits).
/// No signal ever arrives (the sender is gone at once).
fn no_signals() -> tokio::sync::mpsc::UnboundedReceiver<&'static str> {
    tokio::sync::mpsc::unbounded_channel().1
}

fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

// ----------------------------------------------------------------------------------------
// The binary in tmux
// ----------------------------------------------------------------------------------------

/// The line after the column titles of the Orders table: its first row.
fn first_order_row(screen: &str) -> &str {
    let mut lines = screen.lines().skip_while(|l| !(l.contains("symbol") && l.contains("quantity")));
    lines.next();
    lines.next().unwrap_or("")
}

/// After the console has quit: the pane's shell works like a normal terminal again.
async fn assert_terminal_back_to_normal(c: &Console) {
    assert_eq!(c.pane_format("#{alternate_on}"), "0", "the alternate screen is left");
    for flag in ["mouse_any_flag", "mouse_button_flag", "mouse_all_flag", "mouse_sgr_flag"] {
        assert_eq!(c.pane_format(&format!("#{{{flag}}}")), "0", "{flag}: mouse capture is off");
    }
    assert_eq!(c.pane_format("#{cursor_flag}"), "1", "the cursor is shown");
    c.type_text("echo back-to-normal");
    c.keys(&["Enter"]);
    let s = c
        .wait_until("the shell to echo the typed command and run it", Duration::from_secs(5), |s| {
            s.lines().any(|l| l.contains("echo back-to-normal")) && s.lines().any(|l| l.trim() == "back-to-normal")
        })
        .await;
    assert!(!s.contains("Orders ·"), "the console's screen is gone:\n{s}");
    c.type_text("stty -a");
    c.keys(&["Enter"]);
    let s = c.wait_until("stty -a", Duration::from_secs(5), |s| s.contains("icanon")).await;
    let words: Vec<&str> = s.split(|ch: char| ch.is_whitespace() || ch == ';').collect();
    for on in ["icanon", "echo", "icrnl", "isig"] {
        assert!(words.contains(&on), "{on} is on again:\n{s}");
        assert!(!words.contains(&format!("-{on}").as_str()), "{on} is still off:\n{s}");
    }
}

// ----------------------------------------------------------------------------------------
// The newcomer's path
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_rolls_back_one_order_and_then_the_burst() {
    let t = seeded().await;
    let burst = burst_newest_first(&t).await;
    assert_eq!(burst.len(), 60, "the demo book's burst");
    let (newest, newest_user) = burst[0];

    let c = Console::open(&["--database-url", &t.url]);
    c.wait_until("the Orders pane to list orders", T, |s| {
        s.contains("symbol") && s.contains("quantity") && s.contains("executed")
    })
    .await;
    assert_eq!(c.pane_format("#{alternate_on}"), "1", "the console uses the alternate screen");

    // The filter.
    c.type_text("/");
    c.wait_for("typing the filter", T).await;
    c.type_text("GBPUSD from:13:02 to:13:06");
    c.keys(&["Enter"]);
    let s = c.wait_for("of 60", T).await;
    let s = if first_order_row(&s).contains(&short(newest)) {
        s
    } else {
        c.wait_until("the burst's newest order on the first row", T, |s| first_order_row(s).contains(&short(newest)))
            .await
    };
    assert!(first_order_row(&s).contains("GBPUSD"), "{s}");

    // The list shows 8 digits of an id; v shows it whole, and y puts the whole order id
    // where a person pastes from (tmux's buffer, read back from tmux itself).
    c.type_text("v");
    c.wait_for(&newest.to_string(), T).await;
    c.type_text("y");
    c.wait_for(&format!("Copied order id {newest}"), T).await;
    let out = c.tmux().arg("show-buffer").output().expect("tmux show-buffer");
    assert_eq!(String::from_utf8_lossy(&out.stdout), newest.to_string(), "tmux's buffer holds the whole id");
    c.keys(&["Escape"]);
    c.wait_until("the detail to close", T, |s| !s.contains("copies the order id")).await;

    // Pre-check.
    c.type_text("p");
    let s = c.wait_until("the pre-check to say READY", T, |s| s.contains(" READY ") && !s.contains("NOT READY")).await;
    assert!(s.contains(&format!("Pre-check · order {}", short(newest))), "{s}");
    assert!(s.contains("Baseline: balance"), "{s}");

    // Roll it back: reason, then enter (level 2: no word to type).
    c.type_text("r");
    let s = c.wait_for("Reason (required):", T).await;
    assert!(s.contains(&format!("Rollback · order {}", short(newest))), "{s}");
    c.type_text(REASON);
    c.wait_for(REASON, T).await;
    c.keys(&["Enter"]);
    c.wait_for("enter rolls back now", T).await;
    c.keys(&["Enter"]);
    let s = c.wait_for("PASSED", T).await;
    assert!(s.contains("1 order(s) rolled back"), "{s}");

    // Exactly that order, with one audit row by e2e.
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(newest)
        .fetch_one(&t.pool)
        .await
        .expect("status");
    assert_eq!(status, "rolled_back");
    assert_eq!(count(&t, "SELECT count(*) FROM orders WHERE status = 'rolled_back'").await, 1);
    let audit: Vec<(String, String, Uuid)> =
        sqlx::query_as("SELECT operator, action, user_id FROM order_audit_log WHERE order_id = $1")
            .bind(newest)
            .fetch_all(&t.pool)
            .await
            .expect("audit rows");
    // The name claimed, with the login that claimed it (no name is registered for it).
    assert_eq!(audit, vec![("e2e (via postgres)".to_string(), "order_rolled_back".to_string(), newest_user)]);
    assert_eq!(count(&t, "SELECT count(*) FROM order_audit_log").await, 1);
    c.wait_for("orders rolled back 1 ·", Duration::from_secs(5)).await;

    // The batch: every executed order matching the filter.
    c.type_text("A");
    c.wait_for("Batch: every executed order matching the filter", T).await;
    c.type_text("b");
    let s = c.wait_for("Reason (required):", T).await;
    assert!(s.contains("59 order(s) (59 executed)"), "{s}");
    c.type_text(REASON);
    c.wait_for(REASON, T).await;
    c.keys(&["Enter"]);
    c.wait_for("Type 59 to roll back", T).await;
    c.type_text("59");
    c.keys(&["Enter"]);
    let s = c.wait_for("59 rolled back", Duration::from_secs(30)).await;
    assert!(s.contains("59 rolled back, 0 already rolled back, 0 refused, 0 failed"), "{s}");

    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        60
    );
    assert_eq!(count(&t, "SELECT count(*) FROM orders WHERE status = 'rolled_back'").await, 60);
    assert_eq!(
        count(&t, "SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back' AND operator = 'e2e (via postgres)' AND db_user = 'postgres'").await,
        60
    );
    assert_consistent(&t.pool).await;
    c.wait_for("orders rolled back 60 ·", Duration::from_secs(5)).await;

    // Quit: the process ends and the terminal is a terminal again.
    c.type_text("q");
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
    assert_terminal_back_to_normal(&c).await;
}

// ----------------------------------------------------------------------------------------
// Live dashboard
// ----------------------------------------------------------------------------------------

/// The burst found from the book alone: B shows the blast radius, whose one suspicion is
/// the sandbox's 60 repeated GBPUSD executions; enter turns it into the filter and the
/// selection, and b rolls exactly those back. No hint from the README is typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blast_radius_finds_the_burst_and_it_is_rolled_back() {
    let t = seeded().await;
    let c = Console::open(&["--database-url", &t.url]);
    c.wait_until("the Orders pane to list orders", T, |s| s.contains("quantity") && s.contains("executed")).await;
    c.type_text("B");
    let s = c.wait_for("Suspected repeated executions", T).await;
    let line = s.lines().find(|l| l.contains("▶ ▲")).unwrap_or_else(|| panic!("a suspicion under the cursor:\n{s}"));
    assert!(line.contains("GBPUSD 13:02") && line.contains("60 executions of 20 repeated orders"), "{s}");
    assert!(s.contains("peak"), "{s}");
    c.keys(&["Enter"]);
    let s = c.wait_for("Selected the 60 suspected repeated executions of GBPUSD", T).await;
    assert!(s.contains("filter: symbol:GBPUSD from:13:02"), "{s}");
    c.type_text("b");
    let s = c.wait_for("Reason (required):", T).await;
    assert!(s.contains("60 order(s) (60 executed)") && s.contains("from: 60 order(s) selected by hand"), "{s}");
    c.type_text(REASON);
    c.wait_for(REASON, T).await;
    c.keys(&["Enter"]);
    c.wait_for("Type 60 to roll back", T).await;
    c.type_text("60");
    c.keys(&["Enter"]);
    let s = c.wait_for("60 rolled back", Duration::from_secs(30)).await;
    assert!(s.contains("60 rolled back, 0 already rolled back, 0 refused, 0 failed"), "{s}");
    // Its proof: the post-check against the rows and the audit of every account it touched,
    // as many as the database says the burst's orders belong to.
    let users = count(&t, &format!("SELECT count(DISTINCT user_id) FROM orders WHERE {BURST_SQL}")).await;
    let s = c.wait_for("Proof: post-check 6/6 passed", T).await;
    assert!(s.contains(&format!("{users} account(s) audited: clean")), "{users} accounts:\n{s}");
    c.keys(&["Escape"]);
    let s = c.wait_for("Last batch (operation", T).await;
    assert!(s.contains("Proof: post-check 6/6 passed"), "the proof stays with the batch:\n{s}");
    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        60,
        "the whole burst"
    );
    assert_eq!(count(&t, "SELECT count(*) FROM orders WHERE status = 'rolled_back'").await, 60, "and nothing else");
    assert_consistent(&t.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_committed_elsewhere_shows_without_a_key_press() {
    let t = seeded().await;
    let (order, user) = burst_newest_first(&t).await[5];
    let c = Console::open(&["--database-url", &t.url]);
    c.wait_for("orders rolled back 0 ·", T).await;
    // The start-up audit refreshes the dashboard when it ends: wait for it, so that only
    // the notification (or the 10 s fallback) can bring the next figures.
    c.wait_for("ledger audit clean at", T).await;

    let r: serde_json::Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, 'psql')")
        .bind(order)
        .bind(user)
        .fetch_one(&t.pool)
        .await
        .expect("rollback through SQL");
    assert_eq!(r["success"], true, "{r}");
    let committed = Instant::now();
    c.wait_for("orders rolled back 1 ·", Duration::from_secs(3)).await;
    let shown = committed.elapsed();
    // The fallback refresh runs every 10 s from start-up: this came by notification.
    assert!(
        c.opened.elapsed() < Duration::from_secs(10),
        "the console was open for {:?}: the 10 s refresh may have brought it",
        c.opened.elapsed()
    );
    eprintln!("a rollback committed by psql showed on the dashboard after {shown:?}");
    c.type_text("q");
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
}

// ----------------------------------------------------------------------------------------
// Killed from outside
// ----------------------------------------------------------------------------------------

/// A kill from outside (a closed SSH session, `kill`, `kill -INT`) still leaves a working
/// terminal, and the exit code names the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_outside_restores_the_terminal() {
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130), (libc::SIGHUP, 129), (libc::SIGQUIT, 131)] {
        let c = Console::open(&["--database-url", UNREACHABLE]);
        c.wait_for("UNREACHABLE", T).await;
        assert_eq!(c.pane_format("#{alternate_on}"), "1", "the console is up");
        // The pane runs `sh -c 'console; echo …'`: the console is the shell's child.
        let shell: i32 = c.pane_format("#{pane_pid}").parse().expect("the pane's pid");
        let children = children_of(shell);
        let [pid] = children.as_slice() else { panic!("one child of {shell}: {children:?}") };
        // SAFETY: kill(2) on a pid this test started, with a valid signal number.
        let sent = unsafe { libc::kill(*pid, signal) };
        assert_eq!(sent, 0, "kill {pid}");
        c.wait_for(&format!("console-exited-{code}"), Duration::from_secs(5)).await;
        assert_terminal_back_to_normal(&c).await;
    }
}

/// The processes whose parent is `parent`, from /proc (no procps needed).
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid …": the command may hold spaces, so read after its ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

// ----------------------------------------------------------------------------------------
// Unreachable database
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_opens_when_the_database_is_unreachable() {
    let c = Console::open(&["--database-url", UNREACHABLE]);
    let start = Instant::now();
    let s = loop {
        let s = c.screen();
        assert!(!s.contains("s3cret"), "the password is on screen:\n{s}");
        if s.contains("UNREACHABLE") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no UNREACHABLE after 5 s; the screen:\n{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(s.contains("retry"), "it says it keeps retrying:\n{s}");
    assert!(s.contains("Orders"), "the panes are drawn:\n{s}");
    // A while longer: retrying, still no password.
    for _ in 0..10 {
        let s = c.screen();
        assert!(!s.contains("s3cret"), "the password is on screen:\n{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.type_text("q");
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
    assert_eq!(c.pane_format("#{alternate_on}"), "0");
    let s = c.screen();
    assert!(!s.contains("s3cret") && !s.contains("panicked"), "{s}");
    // Nor in the files it wrote under its private HOME (the log).
    let mut dirs = vec![c.home().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert!(!String::from_utf8_lossy(&bytes).contains("s3cret"), "{} holds the password", path.display());
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Responsiveness, in process
// ----------------------------------------------------------------------------------------

fn key(ch: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(ch), KeyModifiers::NONE))
}

const ACTIVE_PRECHECKS: &str = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rollback_precheck%' \
     AND state = 'active' AND pid <> pg_backend_pid() AND datname = current_database()";

async fn wait<F: Fn() -> bool>(what: &str, timeout: Duration, f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_handled_and_frames_drawn_while_the_database_sleeps() {
    let t = seeded().await;
    // The pre-check's check of active orders sleeps 5 s on the server.
    sqlx::query(
        "CREATE OR REPLACE FUNCTION check_active_transactions(p_user_id uuid) RETURNS integer LANGUAGE sql \
         SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$ \
         SELECT (SELECT count(*)::integer FROM orders WHERE user_id = p_user_id AND status IN ('pending','executing')) \
              + (SELECT 0 FROM pg_sleep(5)) $$",
    )
    .execute(&t.pool)
    .await
    .expect("a sleeping check_active_transactions");

    let handle = worker::spawn(WorkerTarget::Url(t.settings()), ConsoleConfig::default());
    let now = chrono::Utc::now();
    let incident = IncidentHeader::new("responsiveness".into(), Level::Moderate, now);
    let mut app = App::new(KeyMap::default(), incident, t.settings().describe(), now, (160, 48));
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test terminal");
    let stats = LoopStats::default();

    // Terminal events we send; `asks` counts the loop asking for the next one, which it
    // does only after it has handled (and drawn) the previous one.
    let (key_tx, key_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let asks = AtomicU64::new(0);
    let keys = Box::pin(futures::stream::unfold(key_rx, |mut rx| {
        asks.fetch_add(1, Ordering::SeqCst);
        async move { rx.recv().await.map(|e| (Ok(e), rx)) }
    }));

    // The worker's events pass through a tap that notes what arrived.
    let (db_tx, db_rx) = tokio::sync::mpsc::unbounded_channel::<DbEvent>();
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut worker_events = handle.events;
    let tap_seen = seen.clone();
    let tap = tokio::spawn(async move {
        while let Some(ev) = worker_events.recv().await {
            let kind = match &ev {
                DbEvent::Orders { rows, .. } => format!("orders {}", rows.len()),
                DbEvent::Precheck { .. } => "precheck".into(),
                DbEvent::Cancelled { .. } => "cancelled".into(),
                DbEvent::Failed { error, .. } => format!("failed {error}"),
                other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or("").to_string(),
            };
            tap_seen.lock().expect("tap").push((Instant::now(), kind));
            if db_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let arrived = |what: &str| seen.lock().expect("tap").iter().any(|(_, k)| k.starts_with(what));

    let driver = async {
        wait("the first page of orders", T, || {
            seen.lock().expect("tap").iter().any(|(_, k)| k.starts_with("orders ") && k != "orders 0")
        })
        .await;
        // Let the start-up answers (count, dashboard, audit) arrive and be drawn.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let precheck_sent = Instant::now();
        key_tx.send(key('p')).expect("send p");
        let start = Instant::now();
        loop {
            if count(&t, ACTIVE_PRECHECKS).await == 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "the pre-check never ran on the server");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let (frames0, events0) = (stats.frames.load(Ordering::SeqCst), stats.events.load(Ordering::SeqCst));
        let mut latencies = Vec::new();
        let mut next = Instant::now();
        for _ in 0..20 {
            tokio::time::sleep_until(next.into()).await;
            next += Duration::from_millis(50);
            let (asked, frames) = (asks.load(Ordering::SeqCst), stats.frames.load(Ordering::SeqCst));
            let sent = Instant::now();
            key_tx.send(key('j')).expect("send j");
            wait("the key to be handled and drawn", Duration::from_secs(2), || {
                asks.load(Ordering::SeqCst) > asked && stats.frames.load(Ordering::SeqCst) > frames
            })
            .await;
            latencies.push(sent.elapsed());
        }
        let (frames1, events1) = (stats.frames.load(Ordering::SeqCst), stats.events.load(Ordering::SeqCst));
        assert_eq!(events1 - events0, 20, "every key was handled");
        assert!(frames1 - frames0 >= 20, "a frame per key: {} frames for 20 keys", frames1 - frames0);
        let worst = latencies.iter().max().copied().unwrap_or_default();
        assert!(worst < Duration::from_millis(100), "a key took {worst:?} to be handled and drawn: {latencies:?}");
        assert_eq!(count(&t, ACTIVE_PRECHECKS).await, 1, "the pre-check is still sleeping on the server");
        assert!(!arrived("precheck"), "the pre-check had not answered yet");
        let mut sorted = latencies.clone();
        sorted.sort();
        eprintln!(
            "20 keys while the pre-check slept: {} frames, latency median {:?}, worst {worst:?}",
            frames1 - frames0,
            sorted[10]
        );

        // Cancel: the query is gone from the server long before its 5 s sleep would end.
        let cancel_sent = Instant::now();
        key_tx.send(key('c')).expect("send c");
        loop {
            if count(&t, ACTIVE_PRECHECKS).await == 0 {
                break;
            }
            assert!(cancel_sent.elapsed() < Duration::from_secs(2), "the pre-check still runs 2 s after c");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone = cancel_sent.elapsed();
        assert!(precheck_sent.elapsed() < Duration::from_secs(4), "gone only {:?} after p", precheck_sent.elapsed());
        eprintln!("cancelled: the server-side query was gone {gone:?} after c");
        wait("the worker to report the cancellation", Duration::from_secs(2), || arrived("cancelled")).await;

        // Idle: no input, nothing animating, (almost) no frames.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle0 = stats.frames.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = stats.frames.load(Ordering::SeqCst) - idle0;
        assert!(idle <= 1, "{idle} frames drawn in 2 s of idle");

        key_tx.send(key('q')).expect("send q");
    };

    let commands = handle.commands.clone();
    let (result, ()) = tokio::time::timeout(Duration::from_secs(40), async {
        let io = LoopIo { commands, db_events: db_rx, terminal_events: keys, signals: no_signals() };
        tokio::join!(run_loop(&mut terminal, &mut app, io, &stats, None), driver)
    })
    .await
    .expect("run_loop ended after q");
    result.expect("run_loop returns Ok");
    assert!(app.quit);
    let screen = screen_text(&terminal);
    assert!(screen.contains("Cancelled."), "the Pre-check pane says it was cancelled:\n{screen}");
    assert!(!arrived("precheck"), "a cancelled pre-check never answers");
    // q sent Shutdown: the worker ends.
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.expect("worker ends").expect("worker task");
    tap.abort();
    assert_eq!(count(&t, ACTIVE_PRECHECKS).await, 0);
}

/// The burst found in the list itself: filtered to it, sorted by quantity (S then 4), its
/// repeated executions marked ×3, the per-minute strip (m) naming the busiest minute, and
/// G going to the last order of that sort; each checked against SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_sorted_by_quantity_marks_the_repeats_and_names_the_busiest_minute() {
    let t = seeded().await;
    let by_qty = |dir: &str| {
        format!(
            "SELECT id FROM orders WHERE {BURST_SQL} AND status = 'executed' ORDER BY quantity {dir}, id {dir} LIMIT 1"
        )
    };
    let first: Uuid =
        sqlx::query_scalar(sqlx::AssertSqlSafe(by_qty("DESC"))).fetch_one(&t.pool).await.expect("the largest");
    let last: Uuid =
        sqlx::query_scalar(sqlx::AssertSqlSafe(by_qty("ASC"))).fetch_one(&t.pool).await.expect("the smallest");
    let (minute, busiest): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT date_trunc('minute', created_at), count(*) FROM orders WHERE {BURST_SQL} \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("the busiest minute");

    let c = Console::open(&["--database-url", &t.url]);
    c.wait_until("the Orders pane to list orders", T, |s| s.contains("quantity") && s.contains("executed")).await;
    c.type_text("/");
    c.wait_for("typing the filter", T).await;
    c.type_text("GBPUSD from:13:02 to:13:06");
    c.keys(&["Enter"]);
    c.wait_for("of 60", T).await;
    c.type_text("S");
    c.wait_for("sort by 1time", T).await;
    c.type_text("4");
    let s = c
        .wait_until("the largest order first, marked", T, |s| {
            s.contains("by qty ↓") && first_order_row(s).contains(&short(first)) && first_order_row(s).contains("×3")
        })
        .await;
    let marked = s.lines().filter(|l| l.contains("GBPUSD") && l.contains("×3")).count();
    let listed = s.lines().filter(|l| l.contains("GBPUSD") && l.contains("executed")).count();
    assert!(listed > 10 && marked == listed, "every row of the burst is a repeat ({marked} of {listed}):\n{s}");

    c.type_text("m");
    let peak = format!("peak {busiest}/min at {}", minute.format("%H:%M"));
    c.wait_for(&peak, T).await;

    c.type_text("G");
    // The title and the rows come in one frame, but the last page may land a frame later.
    let s = c
        .wait_until("G on the smallest order of the sort", T, |s| {
            s.contains("row 60 of 60") && s.lines().any(|l| l.contains("┃▶") && l.contains(&short(last)))
        })
        .await;
    assert!(s.contains("row 60 of 60"), "{s}");
}

/// The first page does not wait for the health probe's own connection, nor queue behind
/// the start-up work nobody waits for: the worker says the database is up the moment its
/// pool answered (right after naming the target), the console asks for the first page
/// then, and the ledger audit that waited its turn still reaches the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_page_is_asked_for_as_soon_as_the_pool_answers() {
    use incident_console::console::protocol::{Command, ConnState};
    let t = seeded().await;
    let mut handle = worker::spawn(WorkerTarget::Url(t.settings()), ConsoleConfig::default());
    let now = chrono::Utc::now();
    let incident = IncidentHeader::new("first page".into(), Level::Moderate, now);
    let mut app = App::new(KeyMap::default(), incident, t.settings().describe(), now, (160, 48));
    let mut events = Vec::new();
    let deadline = Instant::now() + T;
    // Up to the target: a "connecting" note may come first.
    loop {
        let ev = tokio::time::timeout(deadline - Instant::now(), handle.events.recv())
            .await
            .expect("the worker connects in time")
            .expect("the worker runs");
        let target = matches!(ev, DbEvent::Target(_));
        events.push(format!("{ev:?}"));
        app.update(incident_console::console::app::Action::Db(Box::new(ev)));
        if target {
            break;
        }
    }
    let up = tokio::time::timeout(deadline - Instant::now(), handle.events.recv())
        .await
        .expect("an event right after the target")
        .expect("the worker runs");
    assert!(
        matches!(up, DbEvent::Connection(ConnState::Up { .. })),
        "the worker says up right after the target, not after the probe's connection: {up:?} (before: {events:?})"
    );
    let e = app.update(incident_console::console::app::Action::Db(Box::new(up)));
    assert!(e.commands.iter().any(|c| matches!(c, Command::LoadOrders { .. })), "the first page is asked for");
    for c in e.commands {
        handle.commands.send(c).expect("the worker takes commands");
    }
    let (mut page, mut audited) = (false, false);
    while !(page && audited) {
        let ev = tokio::time::timeout(deadline - Instant::now(), handle.events.recv())
            .await
            .unwrap_or_else(|_| panic!("the first page ({page}) and the audit ({audited}) within {T:?}"))
            .expect("the worker runs");
        match &ev {
            DbEvent::Orders { rows, .. } if !rows.is_empty() => page = true,
            DbEvent::Dashboard(d) if d.audit_at.is_some() => audited = true,
            _ => {}
        }
    }
    let _ = handle.commands.send(Command::Shutdown);
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
}
