//! The terminal front end: a ratatui console over an async database worker. `run` opens it
//! on the current (or a new) incident; `App::update` is the pure state machine, `render`
//! draws it, the worker is the only part that touches the database, the session the only
//! part that writes the incident's files.
//!
//! Each pane is a module under `panes` (its state, keys, footer keys and drawing), each
//! dialog one under `dialogs`; `app` routes keys and answers to them, `frame` draws the
//! header, the footer and the screens around them, `layout` says where everything goes.

pub mod app;
mod breaker;
pub mod clipboard;
pub mod dialogs;
mod frame;
mod hints;
pub mod incident;
mod keys;
mod layout;
mod maintenance;
pub mod panes;
pub mod protocol;
pub mod session;
pub mod startup;
pub mod terminal;
pub mod widgets;
pub mod worker;

pub use frame::render;

use std::io::IsTerminal;

use crate::core::error::{EXIT_OK, Error, Result};
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::store::connect::SessionOptions;
use crate::store::db;
use crate::store::target;
use worker::WorkerTarget;

/// How the console was asked to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database URL; the sandbox when none.
    pub database_url: Option<String>,
    /// What every session tells the server (operator, timeouts).
    pub session: SessionOptions,
    /// Start a new incident with this title.
    pub title: Option<String>,
    /// The level of a new incident.
    pub level: Option<u8>,
    /// Work without the incident's journal: no incident is opened, and every rollback and
    /// batch first records the waiver in the database's audit log.
    pub no_journal: bool,
    /// The standby given on the command line (it wins over config.toml's).
    pub replica: Replica,
}

/// A hot standby for the reads that decide nothing, as the command line gave it.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// `--replica-url`.
    pub url: Option<crate::store::connect::SecretUrl>,
    /// `--replica-max-lag`.
    pub max_lag: Option<std::time::Duration>,
}

impl Replica {
    /// The config with the command line's standby and lag limit put over its own.
    pub fn over(&self, mut config: crate::store::config::ConsoleConfig) -> crate::store::config::ConsoleConfig {
        if let Some(url) = &self.url {
            config.replica_url = Some(url.clone());
        }
        if let Some(lag) = self.max_lag {
            config.replica_max_lag = lag;
        }
        config
    }
}

/// The console: opens at once, connects (starting the sandbox if needed) in the background.
pub async fn run(o: Options) -> Result<i32> {
    let title = o.title.as_deref();
    let level = o.level;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        // Over a plain pipe the console cannot draw: say where things stand instead.
        return status_summary(&o).await;
    }
    let config = o.replica.over(crate::store::config::ConsoleConfig::load()?);
    startup::mark("config");
    // The log file is set up beside the rest (it takes a thread and a file of its own),
    // and is there before the console loop starts.
    let log = std::thread::spawn(init_log);
    let now = chrono::Utc::now();
    if o.no_journal {
        let _log = log.join().ok().flatten();
        return run_without_journal(&o, config, now).await;
    }

    let (inc, note) = open_console_incident(&o.session.operator, title, level, now, hints::Keys(&config.keymap))
        .map_err(|e| match e {
            // The console cannot keep the incident's record: say how to work without it.
            e @ (Error::File { .. } | Error::NoHome(_)) => Error::CheckFailed(format!(
                "{e}\nThe incident's journal cannot be opened. To roll back without it, start the console \
                 with --no-journal: each rollback then records its waiver in the database's audit log first."
            )),
            other => other,
        })?;
    let entries = inc.entries()?;
    let delivered = entries.last().map_or(0, |e| e.seq);
    let panel = incident::IncidentPanel::new(
        entries,
        inc.checklist.clone(),
        crate::store::config::templates_with(&config)?,
        config.contacts.clone(),
        inc.journal.path().to_path_buf(),
        now,
    )
    .map_err(Error::CheckFailed)?;
    startup::mark("incident");
    let sync =
        protocol::Command::SyncJournal { incident: inc.incident.id.clone(), path: inc.journal.path().to_path_buf() };
    let session = session::Session::new(inc, o.session.operator.clone(), delivered, clipboard::terminal_sink());
    let (target, label) = worker_target(&o);
    let (w, h) = crossterm::terminal::size().unwrap_or((80, 24));
    let header = panel.state.header();
    let mut app = app::App::new(config.keymap.clone(), header, label, now, (w, h)).with_incident(panel);
    app.message = note.map(|text| app::Message { text, error: false });
    let worker = worker::spawn(target, config);
    startup::mark("worker");
    let _ = worker.commands.send(sync);
    let _log = log.join().ok().flatten();
    tracing::info!("console started");
    terminal::run_console(app, worker, Some(session)).await?;
    Ok(EXIT_OK)
}

/// Where the worker connects, and the header's name for it.
fn worker_target(o: &Options) -> (WorkerTarget, String) {
    match o.database_url.as_deref() {
        Some(url) => {
            let s = target::settings_for(url.to_string(), false, &o.session);
            let label = s.label();
            (WorkerTarget::Url(s), label)
        }
        None => (WorkerTarget::Sandbox(target::settings_for(String::new(), true, &o.session)), "sandbox".to_string()),
    }
}

/// The console with `--no-journal`: no incident is opened or written; every rollback and
/// batch goes to the worker with the waiver, which records it in the audit log first.
async fn run_without_journal(
    o: &Options,
    config: crate::store::config::ConsoleConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<i32> {
    let level = crate::core::workflow::Level::from_number(o.level.unwrap_or(2))
        .unwrap_or(crate::core::workflow::Level::Moderate);
    let mut header =
        crate::core::workflow::IncidentHeader::new("rollbacks recorded as waivers in the audit log".into(), level, now);
    // No incident is open: the header must not show an id that names one.
    header.id = "NO JOURNAL".into();
    let (target, label) = worker_target(o);
    let (w, h) = crossterm::terminal::size().unwrap_or((80, 24));
    let mut app = app::App::new(config.keymap.clone(), header, label, now, (w, h));
    app.no_journal = true;
    app.message = Some(app::Message {
        text: "No journal (--no-journal): each rollback's waiver is recorded in the audit log before it runs.".into(),
        error: true,
    });
    let worker = worker::spawn(target, config);
    tracing::info!("console started without the incident journal (--no-journal)");
    terminal::run_console(app, worker, None).await?;
    Ok(EXIT_OK)
}

/// The incident the console works on: a new one when a title is given, else the current
/// one, else a new untitled one. Returns it and what to tell the person about it.
fn open_console_incident(
    op: &str,
    title: Option<&str>,
    level: Option<u8>,
    now: chrono::DateTime<chrono::Utc>,
    k: hints::Keys,
) -> Result<(crate::store::incidents::OpenIncident, Option<String>)> {
    let store = crate::store::incidents::IncidentStore::open_default()?;
    let checklist = crate::store::config::checklist()?;
    if title.is_none()
        && let Some(inc) = store.open_current(checklist.clone())?
    {
        let note = level.filter(|l| *l != inc.incident.level.number()).map(|_| {
            format!(
                "--level is for a new incident: {} changes the level of this one (with a reason).",
                k.of(KeyAction::Level)
            )
        });
        return Ok((inc, note));
    }
    let level =
        crate::core::workflow::Level::from_number(level.unwrap_or(2)).unwrap_or(crate::core::workflow::Level::Moderate);
    let title = title.unwrap_or("Order execution incident");
    let inc = store.create(title, level, "opened from the console", op, now, checklist)?;
    let note = format!(
        "Started {}: {} classifies it, {} shows the checklist.",
        inc.incident.id,
        k.of(KeyAction::Classify),
        k.of(KeyAction::Screen)
    );
    Ok((inc, Some(note)))
}

/// Where things stand, in a few lines (the bare command without a terminal).
async fn status_summary(o: &Options) -> Result<i32> {
    let settings = target::resolve(o.database_url.as_deref(), &o.session, &|m: &str| eprintln!("{m}")).await?;
    let pool = settings.pool(4).await?;
    let (accounts, orders) = db::book_size(&pool).await?;
    let m = db::maintenance_state(&pool).await?;
    println!("Database: {}", settings.describe());
    println!("Book: {accounts} accounts, {orders} orders");
    println!("Maintenance mode: {}", if m.maintenance_mode { "ON" } else { "off" });
    let current = crate::store::incidents::IncidentStore::open_default()
        .and_then(|store| store.open_current(crate::store::config::checklist()?));
    match current {
        Ok(Some(inc)) => {
            let i = &inc.incident;
            println!(
                "Incident: {} Level {} {}, {} since {}: {}",
                i.id,
                i.level.number(),
                i.level.label(),
                i.phase.label(),
                i.phase_started().format("%Y-%m-%d %H:%M UTC"),
                sanitize::line(&i.title)
            );
        }
        Ok(None) => println!("Incident: none open (incident new --title T --level N)"),
        Err(e) => println!("Incident: cannot be read: {e}"),
    }
    println!("The console needs a terminal; the headless commands do everything without one (--help).");
    Ok(EXIT_OK)
}

/// Logs go to a file in the user's state directory, never to the terminal.
fn init_log() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = crate::store::config::log_dir().ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "console.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("INCIDENT_CONSOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(writer).with_ansi(false).with_env_filter(filter).try_init().ok()?;
    Some(guard)
}
