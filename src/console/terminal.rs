//! The terminal: set up (raw mode, alternate screen, mouse capture, bracketed paste),
//! always restored (normal exit, error, panic, Ctrl-C, SIGTERM/SIGHUP), and the event loop
//! that ties the terminal, the app and the database worker together.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event, EventStream,
};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use tokio::sync::mpsc;

use crate::console::app::{Action, App};
use crate::console::protocol::{Command, DbEvent};

static RESTORED: AtomicBool = AtomicBool::new(true);

/// Puts the terminal back the way it was. Safe to call more than once, from a panic hook
/// or a signal handler.
pub(crate) fn restore() {
    if RESTORED.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = execute!(out, DisableBracketedPaste, DisableMouseCapture, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// The terminal in console mode; restored when dropped.
pub(crate) struct TerminalGuard {
    /// The ratatui terminal.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Enters console mode and installs a panic hook that leaves it first.
    pub(crate) fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
            // A panic in a spawned task would leave the console running on a restored
            // (cooked) terminal: end the process instead. Each rollback is its own database
            // transaction and the journal is synced per entry, so nothing is half-done.
            eprintln!("incident-console stopped after an internal error; the terminal is restored.");
            std::process::exit(101);
        }));
        enable_raw_mode()?;
        RESTORED.store(false, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture, EnableBracketedPaste) {
            restore();
            return Err(e);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(out)) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(io::Error::other(e.to_string()));
            }
        };
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Counters of the loop, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Frames drawn.
    pub frames: AtomicU64,
    /// Terminal events handled.
    pub events: AtomicU64,
}

/// What the loop hears and tells: the worker's commands and answers, the terminal's
/// events, and the signals that end the console (their names).
pub struct LoopIo<S> {
    /// To the worker.
    pub commands: mpsc::UnboundedSender<Command>,
    /// From the worker.
    pub db_events: mpsc::UnboundedReceiver<DbEvent>,
    /// Keys, mouse, paste, resize.
    pub terminal_events: S,
    /// SIGHUP, SIGTERM, … by name.
    pub signals: mpsc::UnboundedReceiver<&'static str>,
}

/// Runs the console until the app wants to quit: draws the first frame at once (before
/// the database has answered), then redraws only when something changed, and ticks only
/// while something animates (plus once a minute for the header's clock).
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    io: LoopIo<S>,
    stats: &LoopStats,
    mut session: Option<&mut crate::console::session::Session>,
) -> io::Result<()>
where
    B: Backend,
    S: Stream<Item = io::Result<Event>> + Unpin,
{
    let LoopIo { commands, mut db_events, mut terminal_events, mut signals } = io;
    let draw = |terminal: &mut Terminal<B>, app: &App| -> io::Result<()> {
        terminal
            .draw(|f| crate::console::frame::render(app, f))
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()))?;
        stats.frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    if let Ok(size) = terminal.size() {
        app.size = (size.width, size.height);
    }
    draw(terminal, app)?;
    crate::console::startup::mark("first frame");
    let mut animation = tokio::time::interval(Duration::from_millis(250));
    animation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    minute.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Entries another process appends (a CLI rollback into the same incident) show
    // within a second, not when this console next writes one.
    let mut journal_look = tokio::time::interval(Duration::from_secs(1));
    journal_look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut db_open = true;
    let mut signals_open = true;
    while !app.quit {
        let animating = app.animating();
        let effects = tokio::select! {
            ev = terminal_events.next() => match ev {
                Some(Ok(ev)) => {
                    stats.events.fetch_add(1, Ordering::Relaxed);
                    app.now = chrono::Utc::now();
                    app.update(Action::Terminal(ev))
                }
                Some(Err(e)) => return Err(e),
                None => break,
            },
            ev = db_events.recv(), if db_open => match ev {
                Some(ev) => {
                    app.now = chrono::Utc::now();
                    app.update(Action::Db(Box::new(ev)))
                }
                None => {
                    db_open = false;
                    continue;
                }
            },
            signal = signals.recv(), if signals_open => match signal {
                Some(name) => {
                    app.now = chrono::Utc::now();
                    app.update(Action::Signal(name))
                }
                None => {
                    signals_open = false;
                    continue;
                }
            },
            _ = animation.tick(), if animating => app.update(Action::Tick(chrono::Utc::now())),
            _ = minute.tick() => app.update(Action::Tick(chrono::Utc::now())),
            _ = journal_look.tick(), if session.is_some() => {
                match session.as_deref_mut().and_then(|s| s.others_appended()) {
                    Some(ev) => {
                        app.now = chrono::Utc::now();
                        app.update(Action::Journal(ev))
                    }
                    None => continue,
                }
            }
        };
        let mut effects = effects;
        // The journal's answers can ask for more (a copy to the database): until quiet.
        while let Some(request) = (!effects.journal.is_empty()).then(|| effects.journal.remove(0)) {
            let event = match (session.as_deref_mut(), request) {
                (Some(s), request) => s.perform(request, chrono::Utc::now()),
                // With no incident open a copy still works: it journals nothing.
                (None, crate::console::incident::JournalRequest::Clipboard { what, text }) => {
                    use crate::console::clipboard;
                    let via = clipboard::put(&text, clipboard::in_tmux(), &mut clipboard::terminal_sink());
                    crate::console::incident::JournalEvent::Appended {
                        entries: Vec::new(),
                        note: Some(format!("Copied {what}: {via}")),
                    }
                }
                (None, _) => crate::console::incident::JournalEvent::Refused("no incident journal is open".into()),
            };
            app.now = chrono::Utc::now();
            let more = app.update(Action::Journal(event));
            effects.commands.extend(more.commands);
            effects.journal.extend(more.journal);
            effects.redraw |= more.redraw;
        }
        for c in effects.commands {
            let _ = commands.send(c);
        }
        if effects.redraw && !app.quit {
            draw(terminal, app)?;
            if !app.orders.rows.is_empty() {
                crate::console::startup::mark("first page");
                crate::console::startup::report();
            }
        }
    }
    Ok(())
}

/// Opens the console in this terminal and runs it to the end.
pub(crate) async fn run_console(
    mut app: App,
    worker: crate::console::worker::WorkerHandle,
    mut session: Option<crate::console::session::Session>,
) -> crate::core::error::Result<()> {
    let mut guard = TerminalGuard::enter().map_err(crate::core::error::Error::Terminal)?;
    crate::console::startup::mark("terminal");
    // A hang-up (closed SSH session) or a kill ends the console as quitting does: what
    // runs is cancelled on the server and what is known of it journaled, then the terminal
    // is restored. Should the loop not end within 5 s, the terminal is restored and the
    // process ends anyway. In raw mode Ctrl-C is a key, so SIGINT and SIGQUIT come only
    // from outside (kill): treated alike.
    let (signalled, signal_rx) = mpsc::unbounded_channel();
    let exit_code = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let code_seen = exit_code.clone();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            return;
        };
        // The shell's convention: 128 + the signal's number.
        let (code, name) = tokio::select! {
            _ = term.recv() => (128 + 15, "SIGTERM"),
            _ = hup.recv() => (128 + 1, "SIGHUP"),
            _ = int.recv() => (128 + 2, "SIGINT"),
            _ = quit.recv() => (128 + 3, "SIGQUIT"),
        };
        code_seen.store(code, Ordering::SeqCst);
        let _ = signalled.send(name);
        tokio::time::sleep(Duration::from_secs(5)).await;
        restore();
        std::process::exit(code);
    });
    let stats = LoopStats::default();
    let io = LoopIo {
        commands: worker.commands.clone(),
        db_events: worker.events,
        terminal_events: EventStream::new(),
        signals: signal_rx,
    };
    let result = run_loop(&mut guard.terminal, &mut app, io, &stats, session.as_mut()).await;
    let _ = worker.commands.send(Command::Shutdown);
    let _ = tokio::time::timeout(Duration::from_secs(2), worker.task).await;
    signals.abort();
    drop(guard);
    let code = exit_code.load(Ordering::SeqCst);
    if code != 0 {
        std::process::exit(code);
    }
    result.map_err(crate::core::error::Error::Terminal)
}
