//! The headless commands: what each subcommand does, and what it prints.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::batch::{self, BatchItem, BatchOptions, Progress};
use crate::cli::{self, Cli, Command, GlobalArgs, OnOff, SandboxAction};
use crate::connect::ConnectSettings;
use crate::db::{self, OrderFilter};
use crate::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result, is_retryable};
use crate::metrics::{self, Thresholds};
use crate::output::{self, money, print_json};
use crate::sandbox::{self, Durability, Status};
use crate::workflow::incident::Observation;
use crate::{demo, observed, sanitize, target};

fn say(msg: &str) {
    eprintln!("{msg}");
}

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    // Before anything: the name goes on every audit row and journal entry.
    crate::connect::check_operator(&crate::connect::operator_name(g.operator.as_deref()))?;
    match cli.command {
        None => console(g, cli.title.as_deref(), cli.level).await,
        Some(Command::Sandbox { action }) => sandbox_command(g, action).await,
        Some(Command::Migrate { dry_run, undo_to }) => migrate(g, dry_run, undo_to).await,
        Some(Command::Seed(a)) => seed(g, a).await,
        Some(Command::Orders(a)) => orders(g, a).await,
        Some(Command::Precheck(a)) => precheck(g, a).await,
        Some(Command::Rollback(a)) => {
            if a.order.is_some() {
                rollback_one(g, a).await
            } else {
                rollback_batch(g, a).await
            }
        }
        Some(Command::Postcheck(a)) => postcheck(g, a).await,
        Some(Command::Audit { full }) => audit(g, full).await,
        Some(Command::Metrics(a)) => metrics_command(g, a).await,
        Some(Command::Maintenance(a)) => maintenance(g, a).await,
        Some(Command::Drill) => {
            let settings = target::resolve(g, &say).await?;
            crate::drill::run_command(&settings, g.json).await
        }
        Some(Command::Bench(a)) => crate::bench::run_command(g, a).await,
        Some(Command::Config { action }) => config_command(g, action),
        Some(Command::Incident(a)) => crate::incident_cmd::incident_command(g, a).await,
        Some(Command::Template { action }) => crate::incident_cmd::template_command(g, action).await,
    }
}

async fn connect(g: &GlobalArgs) -> Result<(ConnectSettings, sqlx::PgPool)> {
    let settings = target::resolve(g, &say).await?;
    let pool = settings.pool(4).await?;
    Ok((settings, pool))
}

/// The console: opens at once, connects (starting the sandbox if needed) in the background.
async fn console(g: &GlobalArgs, title: Option<&str>, level: Option<u8>) -> Result<i32> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        // Over a plain pipe the console cannot draw: say where things stand instead.
        return status_summary(g).await;
    }
    let config = crate::config::ConsoleConfig::load()?;
    let _log = init_log();
    let now = chrono::Utc::now();
    let (inc, note) = open_console_incident(g, title, level, now)?;
    let entries = inc.entries()?;
    let delivered = entries.last().map_or(0, |e| e.seq);
    let panel = crate::app::incident::IncidentPanel::new(
        entries,
        inc.checklist.clone(),
        crate::incident_cmd::templates()?,
        config.contacts.clone(),
        inc.journal.path().to_path_buf(),
        now,
    )
    .map_err(Error::CheckFailed)?;
    let sync = crate::protocol::Command::SyncJournal {
        incident: inc.incident.id.clone(),
        path: inc.journal.path().to_path_buf(),
    };
    let session = crate::session::Session::new(
        inc,
        crate::incident_cmd::operator(g),
        delivered,
        Box::new(|sequence: &str| {
            let mut out = std::io::stdout();
            let _ = out.write_all(sequence.as_bytes());
            let _ = out.flush();
        }),
    );
    let (target, label) = match &g.database_url {
        Some(url) if !url.trim().is_empty() => {
            let s = target::settings_for(url.clone(), false, g);
            let label = s.describe();
            (crate::worker::WorkerTarget::Url(s), label)
        }
        _ => {
            (crate::worker::WorkerTarget::Sandbox(target::settings_for(String::new(), true, g)), "sandbox".to_string())
        }
    };
    let (w, h) = crossterm::terminal::size().unwrap_or((80, 24));
    let header = panel.state.header();
    let mut app = crate::app::App::new(config.keymap.clone(), header, label, now, (w, h)).with_incident(panel);
    app.message = note.map(|text| crate::app::Message { text, error: false });
    let worker = crate::worker::spawn(target, config);
    let _ = worker.commands.send(sync);
    tracing::info!("console started");
    crate::tui::run_console(app, worker, Some(session)).await?;
    Ok(EXIT_OK)
}

/// The incident the console works on: a new one when a title is given, else the current
/// one, else a new untitled one. Returns it and what to tell the person about it.
fn open_console_incident(
    g: &GlobalArgs,
    title: Option<&str>,
    level: Option<u8>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(crate::incidents::OpenIncident, Option<String>)> {
    let store = crate::incidents::IncidentStore::open_default()?;
    let checklist = crate::incident_cmd::checklist()?;
    if title.is_none()
        && let Some(inc) = store.open_current(checklist.clone())?
    {
        let note = level
            .filter(|l| *l != inc.incident.level.number())
            .map(|_| "--level is for a new incident: L changes the level of this one (with a reason).".to_string());
        return Ok((inc, note));
    }
    let level = crate::workflow::Level::from_number(level.unwrap_or(2)).unwrap_or(crate::workflow::Level::Moderate);
    let title = title.unwrap_or("Order execution incident");
    let op = crate::incident_cmd::operator(g);
    let inc = store.create(title, level, "opened from the console", &op, now, checklist)?;
    let note = format!("Started {}: C classifies it, i shows the checklist.", inc.incident.id);
    Ok((inc, Some(note)))
}

/// Where things stand, in a few lines (the bare command without a terminal).
async fn status_summary(g: &GlobalArgs) -> Result<i32> {
    let (settings, pool) = connect(g).await?;
    let (accounts, orders) = db::book_size(&pool).await?;
    let m = db::maintenance_state(&pool).await?;
    println!("Database: {}", settings.describe());
    println!("Book: {accounts} accounts, {orders} orders");
    println!("Maintenance mode: {}", if m.maintenance_mode { "ON" } else { "off" });
    let current = crate::incidents::IncidentStore::open_default()
        .and_then(|store| store.open_current(crate::incident_cmd::checklist()?));
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
    let dir = crate::config::log_dir().ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "console.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("INCIDENT_CONSOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(writer).with_ansi(false).with_env_filter(filter).try_init().ok()?;
    Some(guard)
}

fn config_command(g: &GlobalArgs, action: cli::ConfigAction) -> Result<i32> {
    let path = crate::config::config_path()?;
    match action {
        cli::ConfigAction::Path => {
            if g.json {
                print_json(&json!({ "path": path, "exists": path.exists() }))?;
            } else {
                println!("{}", path.display());
            }
        }
        cli::ConfigAction::Example => print!("{}", crate::config::EXAMPLE),
        cli::ConfigAction::Check => {
            let c = crate::config::ConsoleConfig::load()?;
            if g.json {
                let keys: serde_json::Map<String, Value> = crate::keymap::KeyAction::ALL
                    .iter()
                    .map(|&a| (a.describe().to_string(), json!(c.keymap.keys_for(a))))
                    .collect();
                print_json(&json!({ "path": path, "exists": path.exists(), "valid": true, "keys": keys }))?;
            } else {
                println!(
                    "{}: {}",
                    sanitize::line(&path.display().to_string()),
                    if path.exists() { "ok" } else { "not present, defaults in effect" }
                );
                for a in crate::keymap::KeyAction::ALL {
                    println!("  {:<16} {}", c.keymap.keys_for(a), a.describe());
                }
            }
        }
    }
    Ok(EXIT_OK)
}

async fn sandbox_command(g: &GlobalArgs, action: SandboxAction) -> Result<i32> {
    let cluster =
        tokio::task::spawn_blocking(sandbox::sandbox_cluster).await.map_err(|e| Error::Sandbox(e.to_string()))??;
    match action {
        SandboxAction::Start => {
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "status": "running", "url": url, "root": cluster.root() }))?;
            } else {
                println!("Sandbox running. Connect with: psql '{url}'");
            }
        }
        SandboxAction::Stop => {
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.stop()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            if g.json {
                print_json(&json!({ "status": "stopped" }))?;
            } else {
                println!("Sandbox stopped.");
            }
        }
        SandboxAction::Status => {
            let c = cluster.clone();
            let status =
                tokio::task::spawn_blocking(move || c.status()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            let text = match status {
                Status::NotInitialized => "not created",
                Status::Stopped => "stopped",
                Status::Running => "running",
            };
            if g.json {
                print_json(
                    &json!({ "status": text, "root": cluster.root(), "url": cluster.url(sandbox::SANDBOX_DATABASE),
                                     "server_binaries": cluster.binaries().dir() }),
                )?;
            } else {
                println!("Sandbox: {text}");
                println!("Directory: {}", cluster.root().display());
                println!("Server binaries: {}", cluster.binaries().dir().display());
                if status == Status::Running {
                    println!("URL: {}", cluster.url(sandbox::SANDBOX_DATABASE));
                }
            }
        }
        SandboxAction::Url => {
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "url": url }))?;
            } else {
                println!("{url}");
            }
        }
        SandboxAction::Reset => {
            let c = cluster.clone();
            say(&format!("Deleting the sandbox in {} …", cluster.root().display()));
            tokio::task::spawn_blocking(move || c.destroy()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "status": "running", "url": url }))?;
            } else {
                println!("Sandbox reset. Connect with: psql '{url}'");
            }
        }
    }
    Ok(EXIT_OK)
}

async fn migrate(g: &GlobalArgs, dry_run: bool, undo_to: Option<i64>) -> Result<i32> {
    // Migrating needs no sandbox seeding first: connect to the URL, or prepare the sandbox.
    let (_settings, pool) = connect(g).await?;
    let applied = db::applied_migrations(&pool).await?;
    let plan: Vec<&sqlx::migrate::Migration> = match undo_to {
        None => db::MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .collect(),
        Some(target) => {
            let mut v: Vec<_> = db::MIGRATOR
                .iter()
                .filter(|m| m.migration_type.is_down_migration() && m.version > target && applied.contains(&m.version))
                .collect();
            v.sort_by_key(|m| std::cmp::Reverse(m.version));
            v
        }
    };
    if dry_run {
        if g.json {
            let list: Vec<Value> = plan
                .iter()
                .map(|m| json!({ "version": m.version, "description": m.description, "sql": m.sql.as_str() }))
                .collect();
            print_json(&json!({ "dry_run": true, "migrations": list }))?;
        } else if plan.is_empty() {
            println!("-- nothing to do: the database is at the latest version");
        } else {
            for m in &plan {
                println!(
                    "-- migration {} {} (runs in one transaction)\n{}\n",
                    m.version,
                    m.description,
                    m.sql.as_str().trim_end()
                );
            }
        }
        return Ok(EXIT_OK);
    }
    match undo_to {
        None => db::migrate(&pool).await?,
        Some(target) => {
            db::undo_to(&pool, target).await?;
        }
    }
    if g.json {
        print_json(&json!({ "applied": plan.iter().map(|m| m.version).collect::<Vec<_>>() }))?;
    } else if plan.is_empty() {
        println!("Nothing to do: the database is at the latest version.");
    } else {
        for m in &plan {
            println!("{} {} {}", if undo_to.is_some() { "undid" } else { "applied" }, m.version, m.description);
        }
    }
    Ok(EXIT_OK)
}

async fn seed(g: &GlobalArgs, a: cli::SeedArgs) -> Result<i32> {
    let settings = match &g.database_url {
        Some(url) if !url.trim().is_empty() => target::settings_for(url.clone(), false, g),
        _ => {
            return Err(Error::BadInput(
                "the sandbox is seeded when it is created; for a fresh book run `incident-console sandbox reset`, \
                 or give --database-url of an empty database to seed"
                    .into(),
            ));
        }
    };
    let pool = settings.pool(2).await?;
    db::migrate(&pool).await?;
    let spec =
        demo::DemoSpec::standard(a.seed, a.date.unwrap_or_else(|| demo::default_trading_date(chrono::Utc::now())));
    let mut conn = pool.acquire().await?;
    let book = target::seed_demo(&mut conn, &spec).await?;
    if g.json {
        print_json(&json!({ "accounts": book.accounts.len(), "executed": book.executed.len(),
                             "unexecuted": book.unexecuted.len(), "burst": book.burst }))?;
    } else {
        println!(
            "Seeded {} accounts, {} executed and {} other orders. Bad burst: {} executions on {} from {} to {} UTC.",
            book.accounts.len(),
            book.executed.len(),
            book.unexecuted.len(),
            book.burst.orders,
            book.burst.symbol,
            book.burst.from.format("%Y-%m-%d %H:%M"),
            book.burst.to.format("%H:%M")
        );
    }
    Ok(EXIT_OK)
}

async fn orders(g: &GlobalArgs, a: cli::OrdersArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let [from, to] = db::resolve_time_bounds(&pool, [a.from, a.to]).await?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(Error::BadInput(format!("--from ({f}) must be before --to ({t})")));
    }
    let filter = OrderFilter {
        id: a.id,
        user_id: a.user,
        transaction_id: a.transaction,
        symbol: a.symbol,
        status: a.status.map(|s| s.as_str().to_string()),
        from,
        to,
        include_drill: a.include_drill,
        limit: a.limit,
    };
    let rows = db::find_orders(&pool, &filter).await?;
    if rows.len() as i64 == a.limit && g.json {
        eprintln!("note: {} orders shown, the --limit; more may match", a.limit);
    }
    if g.json {
        print_json(&rows)?;
    } else {
        print!("{}", output::orders(&rows));
        println!(
            "{} order(s){}",
            rows.len(),
            if rows.len() as i64 == a.limit { " (limit reached; use --limit)" } else { "" }
        );
    }
    Ok(EXIT_OK)
}

fn print_precheck(p: &db::Precheck) {
    println!("Pre-check: {}", if p.ready { "READY" } else { "NOT READY" });
    print!("{}", output::checks(&p.checks));
    if let Some(f) = p.figures() {
        println!(
            "Baseline at {}: balance {}, margin used {}, open positions {}",
            f.captured_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            money(f.balance),
            money(f.margin_used),
            f.open_positions
        );
        // What a rollback would give back: only when one could run now.
        let would = if p.ready { "refund" } else { "(not ready) would refund" };
        println!(
            "  This order:        {would} {}, margin released {}",
            money(f.expected_refund),
            money(f.expected_margin_release)
        );
        if f.transaction_id.is_some() {
            println!(
                "  Transaction group: {} executed order(s), refund {}, margin released {}, {} left alone",
                f.group.order_ids.len(),
                money(f.group.expected_refund),
                money(f.group.expected_margin_release),
                f.group.skipped.len()
            );
        }
    }
}

async fn precheck(g: &GlobalArgs, a: cli::PrecheckArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let p = db::precheck(&pool, a.order, a.user).await?;
    crate::incident_cmd::observe(g, vec![observed::precheck(&p, a.order, a.user)], Some(&pool)).await;
    if let Some(path) = &a.baseline_out {
        let baseline = p
            .baseline
            .as_ref()
            .ok_or_else(|| Error::CheckFailed("no baseline: the order or the account does not exist".into()))?;
        let text = serde_json::to_string_pretty(baseline).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))?;
    }
    if g.json {
        print_json(&p)?;
    } else {
        print_precheck(&p);
        if let Some(path) = &a.baseline_out {
            println!("Baseline written to {}", path.display());
        }
    }
    Ok(if p.ready { EXIT_OK } else { EXIT_CHECK_FAILED })
}

/// Asks on stderr, reads one line from stdin; true only if it is `expected`.
async fn confirm(prompt: String, expected: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => Ok(false),
            Ok(_) => Ok(line.trim() == expected),
        }
    })
    .await
    .map_err(|e| Error::Other(e.to_string()))?
}

/// A confirmation refused: nothing changed, said on stderr (and as JSON with --json).
fn not_confirmed(g: &GlobalArgs) -> Result<i32> {
    eprintln!("Not confirmed; nothing was changed.");
    if g.json {
        print_json(&json!({ "confirmed": false, "changed": false }))?;
    }
    Ok(EXIT_CHECK_FAILED)
}

fn check_reason(reason: &str) -> Result<()> {
    crate::workflow::incident::reason_ok(reason, "--reason").map(|_| ()).map_err(Error::BadInput)
}

async fn rollback_one(g: &GlobalArgs, a: cli::RollbackArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (order, user) = match (a.order, a.user) {
        (Some(o), Some(u)) => (o, u),
        _ => return Err(Error::BadInput("give the order and --user".into())),
    };
    let (_s, pool) = connect(g).await?;

    // Round trip 1: every pre-check, and the baseline.
    let pre = db::precheck(&pool, order, user).await?;
    if !g.json {
        print_precheck(&pre);
    }
    let figures = match (&pre.baseline, pre.figures()) {
        (Some(b), Some(f)) if pre.ready => (b.clone(), f),
        _ => {
            // Say why in the contract's words, as the rollback function would have.
            let (code, message) = match pre.figures() {
                Some(f) if f.order_status == "rolled_back" => {
                    ("already_rolled_back", "the order was already rolled back")
                }
                Some(_) => ("precheck_failed", "the pre-check did not pass"),
                None if pre.checks.iter().any(|c| c.check == "order_exists" && !c.passed) => {
                    ("order_not_found", "no order with this id belongs to this user")
                }
                None => ("precheck_failed", "the pre-check did not pass"),
            };
            crate::incident_cmd::observe(g, vec![observed::precheck(&pre, order, user)], Some(&pool)).await;
            if g.json {
                print_json(&json!({ "precheck": pre, "refused": { "error_code": code, "message": message },
                                     "rollback": null, "postcheck": null }))?;
            } else {
                println!("Refused ({code}): {message}. Nothing was changed.");
            }
            return Ok(EXIT_CHECK_FAILED);
        }
    };
    let (baseline, f) = figures;
    let plan = if a.transaction {
        format!(
            "Roll back {} executed order(s) of transaction {} for user {}: refund {}, release margin {}.",
            f.group.order_ids.len(),
            f.transaction_id.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into()),
            user,
            money(f.group.expected_refund),
            money(f.group.expected_margin_release)
        )
    } else {
        format!(
            "Roll back order {order} of user {user}: refund {}, release margin {}.",
            money(f.expected_refund),
            money(f.expected_margin_release)
        )
    };
    if !a.yes {
        eprintln!("{plan}\nReason: {}", sanitize::line(&a.reason));
        if !confirm("Type yes to roll back: ".into(), "yes".into()).await? {
            return not_confirmed(g);
        }
    } else if !g.json {
        println!("{plan}");
    }

    // Round trip 2: rollback and post-check together. Retried whole on a serialization
    // failure or deadlock: the function is one transaction, so a retry cannot double up.
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match db::rollback_with_postcheck(&pool, order, user, &a.reason, &baseline, a.transaction).await {
            Err(e) if is_retryable(e.sqlstate()) && attempt < 8 => {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            other => break other,
        }
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let detail = json!({ "error": e.to_string(), "attempts": attempt });
            let _ = db::record_failure(&pool, order, user, "rollback_failed", &detail).await;
            let failed = observed::rollback_failed(&e.to_string(), order, user, a.transaction, &a.reason);
            crate::incident_cmd::observe(g, vec![observed::precheck(&pre, order, user), failed], Some(&pool)).await;
            return Err(e);
        }
    };
    let ok = result.rollback.success && result.postcheck.as_ref().is_some_and(|p| p.successful);
    let mut seen = vec![observed::precheck(&pre, order, user)];
    seen.extend(observed::rollback(&result, order, user, a.transaction, &a.reason));
    crate::incident_cmd::observe(g, seen, Some(&pool)).await;
    if g.json {
        print_json(&json!({ "precheck": pre, "rollback": result.rollback, "postcheck": result.postcheck }))?;
    } else {
        let r = &result.rollback;
        if r.success {
            println!(
                "Rolled back {} order(s): refunded {}, margin released {}, {} transfer(s) reversed in {} ms.",
                r.order_ids.as_ref().map_or(0, Vec::len),
                money(r.refunded.unwrap_or_default()),
                money(r.margin_released.unwrap_or_default()),
                r.transfers_reversed.unwrap_or(0),
                r.duration_us.unwrap_or(0) as f64 / 1000.0
            );
        } else {
            println!(
                "Refused ({}): {}. Nothing was changed.",
                sanitize::line(r.error_code.as_deref().unwrap_or("unknown")),
                sanitize::line(r.message.as_deref().unwrap_or(""))
            );
        }
        if let Some(p) = &result.postcheck {
            println!("Post-check against the baseline: {}", if p.successful { "PASSED" } else { "FAILED" });
            print!("{}", output::checks(&p.checks));
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn batch_items(pool: &sqlx::PgPool, a: &cli::RollbackArgs, json: bool) -> Result<Vec<BatchItem>> {
    if let Some(path) = &a.orders {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
        let ids = batch::parse_order_file(&text)?;
        let owners: std::collections::HashMap<Uuid, Uuid> = db::order_owners(pool, &ids).await?.into_iter().collect();
        let unknown: Vec<String> = ids.iter().filter(|i| !owners.contains_key(i)).map(|i| i.to_string()).collect();
        if !unknown.is_empty() {
            return Err(Error::BadInput(format!(
                "{} order id(s) in {} do not exist: {}",
                unknown.len(),
                path.display(),
                unknown.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        return Ok(ids
            .into_iter()
            .filter_map(|id| owners.get(&id).map(|&user_id| BatchItem { order_id: id, user_id }))
            .collect());
    }
    match (&a.symbol, a.from, a.to) {
        (Some(symbol), Some(from), Some(to)) => {
            let [Some(from), Some(to)] = db::resolve_time_bounds(pool, [Some(from), Some(to)]).await? else {
                return Err(Error::BadInput("--from and --to are both needed".into()));
            };
            if from >= to {
                return Err(Error::BadInput(format!("--from ({from}) must be before --to ({to})")));
            }
            if !json {
                // A time of day was resolved against the book: say which window it became.
                println!(
                    "Window: {} {} orders created from {} to {} UTC.",
                    sanitize::line(symbol),
                    a.status.as_str(),
                    from.format("%Y-%m-%d %H:%M:%S"),
                    to.format("%Y-%m-%d %H:%M:%S")
                );
            }
            Ok(db::orders_in_window(pool, symbol, from, to, a.status.as_str())
                .await?
                .into_iter()
                .map(|(order_id, user_id)| BatchItem { order_id, user_id })
                .collect())
        }
        _ => Err(Error::BadInput(
            "say what to roll back: ORDER --user U, or --symbol S --from T1 --to T2, or --orders FILE".into(),
        )),
    }
}

async fn rollback_batch(g: &GlobalArgs, a: cli::RollbackArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (settings, pool) = connect(g).await?;
    let items = batch_items(&pool, &a, g.json).await?;
    if items.is_empty() {
        if g.json {
            print_json(&json!({ "preview": null, "summary": null, "message": "no orders match" }))?;
        } else {
            println!("No orders match: nothing to roll back.");
        }
        return Ok(EXIT_OK);
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.order_id).collect();
    let preview = db::batch_preview(&pool, &ids).await?;
    let maintenance = db::maintenance_state(&pool).await?;
    let headline = format!(
        "Batch: {} order(s) ({} executed) of {} user(s); refund {}, release margin {}.",
        preview.orders,
        preview.executed,
        preview.users,
        money(preview.total_refund),
        money(preview.total_margin_release)
    );
    if !g.json {
        println!("{headline}");
        if !maintenance.maintenance_mode {
            println!("Note: maintenance mode is off; new orders keep executing during the batch.");
        }
    }
    if !a.yes {
        eprintln!("Reason: {}", sanitize::line(&a.reason));
        let word = preview.orders.to_string();
        if !confirm(format!("Type {word} to roll back {word} order(s): "), word).await? {
            return not_confirmed(g);
        }
    }

    let mut opts = BatchOptions::new(a.reason.clone());
    opts.concurrency = usize::from(a.concurrency);
    let progress = Arc::new(Progress::default());
    let total = items.len() as u64;

    // Ctrl-C stops taking new orders; the ones in flight finish and the summary says
    // what is left (running the batch again finishes it).
    let cancel = progress.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nCancelling: finishing the orders in flight …");
            cancel.cancel.store(true, Ordering::Relaxed);
        }
    });
    let shown = progress.clone();
    // Set when the run is over, cancelled or not: the last line says what really finished.
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run_over = over.clone();
    let drawer = tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        if tty {
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rolled back/finished · {per_sec} · eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        }
        let mut last_line = std::time::Instant::now();
        loop {
            let ended = run_over.load(Ordering::Relaxed);
            let done = shown.done.load(Ordering::Relaxed);
            if tty {
                bar.set_position(done);
            } else if last_line.elapsed() >= Duration::from_secs(2) || done == total || ended {
                eprintln!(
                    "progress: {done}/{total} finished, {} rolled back{}",
                    shown.rolled_back.load(Ordering::Relaxed),
                    if ended && done < total { format!(", {} not attempted", total - done) } else { String::new() }
                );
                last_line = std::time::Instant::now();
            }
            if done >= total || ended {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
    });
    let run = batch::run(&settings, items, &opts, progress.clone()).await;
    over.store(true, Ordering::Relaxed);
    let _ = drawer.await;
    ctrl_c.abort();
    let (summary, outcomes) = run?;

    // Prove the batch: every touched user's balance and margin against the ledger.
    let mut users: Vec<Uuid> = outcomes.iter().map(|(i, _)| i.user_id).collect();
    users.sort();
    users.dedup();
    let violations = db::ledger_audit_users(&pool, &users).await?;
    let ok = summary.complete() && violations.is_empty();
    let seen = vec![
        observed::batch(&summary, users.len() as u64, &a.reason),
        Observation::Audit { violations: violations.len() as u64 },
    ];
    crate::incident_cmd::observe(g, seen, Some(&pool)).await;
    if g.json {
        print_json(&json!({ "preview": preview, "summary": summary, "audit_of_touched_users": violations }))?;
    } else {
        println!(
            "Done in {:.1}s: {} rolled back, {} already rolled back, {} refused, {} failed{}.",
            summary.elapsed_ms as f64 / 1000.0,
            summary.rolled_back,
            summary.already_rolled_back,
            summary.refused.len(),
            summary.failed.len(),
            if summary.not_attempted > 0 {
                format!(", {} not attempted (cancelled)", summary.not_attempted)
            } else {
                String::new()
            }
        );
        println!(
            "Refunded {}, margin released {}, {} retries.",
            money(summary.refunded),
            money(summary.margin_released),
            summary.retries
        );
        for (id, code, msg) in &summary.refused {
            println!("  refused {id}: {} — {}", sanitize::line(code), sanitize::line(msg));
        }
        for (id, err) in &summary.failed {
            println!("  failed  {id}: {}", sanitize::line(err));
        }
        print!("{}", output::violations(&violations, false));
        // Failed and unattempted orders may go through on a second run; refused ones will
        // be refused again (their state does not allow a rollback).
        let retryable = summary.failed.len() + summary.not_attempted;
        if retryable > 0 {
            println!(
                "Run the same command again to finish the {retryable} order(s) not done; nothing is rolled back twice."
            );
        }
        if !summary.refused.is_empty() {
            println!(
                "The {} refused order(s) cannot be rolled back as they stand (see why above); a second run refuses them again.",
                summary.refused.len()
            );
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn postcheck(g: &GlobalArgs, a: cli::PostcheckArgs) -> Result<i32> {
    let text = if a.baseline.as_os_str() == "-" {
        tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(|e| Error::BadInput(format!("cannot read the baseline from stdin: {e}")))?
    } else {
        std::fs::read_to_string(&a.baseline)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", a.baseline.display())))?
    };
    let baseline: Value =
        serde_json::from_str(&text).map_err(|e| Error::BadInput(format!("the baseline is not JSON: {e}")))?;
    // Accept the whole pre-check result too, not only its baseline.
    let baseline = match baseline.get("baseline") {
        Some(b) if baseline.get("checks").is_some() => b.clone(),
        _ => baseline,
    };
    // Only the format `precheck --baseline-out` writes: another version may mean otherwise.
    if baseline.get("version") != Some(&json!(1)) {
        return Err(Error::BadInput(format!(
            "the baseline's version is {}, not 1: write it with `incident-console precheck ORDER --user U --baseline-out FILE`",
            sanitize::line(&baseline.get("version").map_or("missing".to_string(), Value::to_string))
        )));
    }
    let (_s, pool) = connect(g).await?;
    let p = db::postcheck(&pool, a.order, a.user, &baseline).await?;
    if p.error_code.as_deref() == Some("invalid_baseline") {
        return Err(Error::BadInput("the baseline is not the pre-check baseline of this order and user".into()));
    }
    let seen = observed::postcheck(&p, a.order);
    crate::incident_cmd::observe(g, vec![seen], Some(&pool)).await;
    if g.json {
        print_json(&p)?;
    } else {
        println!("Post-check: {}", if p.successful { "PASSED" } else { "FAILED" });
        print!("{}", output::checks(&p.checks));
    }
    Ok(if p.successful { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn audit(g: &GlobalArgs, full: bool) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let started = std::time::Instant::now();
    let v = if full { db::ledger_audit_full(&pool).await? } else { db::ledger_audit(&pool).await? };
    let elapsed_ms = started.elapsed().as_millis();
    crate::incident_cmd::observe(g, vec![Observation::Audit { violations: v.len() as u64 }], Some(&pool)).await;
    // A clean book gets a new checkpoint, so the next audit costs only what changes until
    // then. Viewers may not take one; that only makes their next audit slower.
    let checkpoint = if v.is_empty() {
        match db::refresh_audit_checkpoint(&pool, full).await {
            Ok(c) => Some(c),
            Err(e) if e.sqlstate() == Some("42501") => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if g.json {
        print_json(&json!({ "violations": v, "elapsed_ms": elapsed_ms, "full": full, "checkpoint": checkpoint }))?;
    } else {
        print!("{}", output::violations(&v, true));
        println!(
            "Audited {} in {elapsed_ms} ms{}.",
            if full { "from the tables alone" } else { "from the last checkpoint" },
            checkpoint.map_or(String::new(), |c| format!("; checkpoint {} recorded", c.checkpoint_id))
        );
    }
    Ok(if v.is_empty() { EXIT_OK } else { EXIT_CHECK_FAILED })
}

fn chrono_duration(d: Duration) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d).map_err(|_| Error::BadInput("duration too long".into()))
}

async fn metrics_command(g: &GlobalArgs, a: cli::MetricsArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let now = chrono::Utc::now();
    let since = now
        .checked_sub_signed(chrono_duration(a.since)?)
        .ok_or_else(|| Error::BadInput("--since reaches before any date".into()))?;
    let records = db::rollback_records(&pool, since).await?;
    let failed_postchecks = db::failed_postchecks(&pool, since).await?;
    let violations = if a.skip_audit { 0 } else { db::ledger_audit(&pool).await?.len() as u64 };
    let thresholds = Thresholds {
        burst_count: a.burst_count,
        burst_window: chrono_duration(a.burst_window)?,
        long_rollback: chrono_duration(a.long_rollback)?,
    };
    let m = metrics::compute(&records, violations, failed_postchecks.max(0) as u64, now, &thresholds);
    if g.json {
        print_json(&json!({ "since": since, "audited": !a.skip_audit, "metrics": m }))?;
    } else {
        let opt = |d: Option<rust_decimal::Decimal>, unit: &str| d.map_or("none".to_string(), |d| format!("{d}{unit}"));
        println!("Rollbacks since {}", since.format("%Y-%m-%d %H:%M UTC"));
        println!(
            "  total {} · succeeded {} · failed {} · orders rolled back {}",
            m.total, m.succeeded, m.failed, m.orders_rolled_back
        );
        println!("  success rate {}", opt(m.success_rate_percent, " %"));
        println!("  mean {} · p95 {}", opt(m.mean_ms, " ms"), opt(m.p95_ms, " ms"));
        println!(
            "  last rollback {} · in the last {} minutes {}",
            m.last_rollback.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            thresholds.burst_window.num_minutes(),
            m.recent
        );
        if m.alerts.is_empty() {
            println!("Alerts: none");
        } else {
            for alert in &m.alerts {
                println!("ALERT: {}", alert.describe());
            }
        }
    }
    Ok(if m.alerts.is_empty() { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn maintenance(g: &GlobalArgs, a: cli::MaintenanceArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (_s, pool) = connect(g).await?;
    let on = a.mode == OnOff::On;
    // Switched, then proved: a probe order inside a transaction that is rolled back.
    let (r, p) = db::switch_maintenance(&pool, on, &a.reason).await?;
    let (state, probe, refused) = (p.state, p.probe_code, p.new_orders_refused);
    let verified = refused == on;
    let seen = Observation::Maintenance { on, reason: a.reason.clone(), verified };
    crate::incident_cmd::observe(g, vec![seen], Some(&pool)).await;
    if g.json {
        print_json(
            &json!({ "result": r, "state": state, "probe": { "error_code": probe, "new_orders_refused": refused },
                             "verified": verified }),
        )?;
    } else if on {
        println!(
            "Maintenance mode is ON since {}.",
            state.maintenance_since.map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        );
        if refused {
            println!("Verified: a probe order was refused (maintenance_mode) and rolled back.");
        } else {
            println!(
                "NOT VERIFIED: a probe order was not refused for maintenance (got {}).",
                sanitize::line(probe.as_deref().unwrap_or("success"))
            );
        }
    } else if refused {
        println!("NOT VERIFIED: maintenance mode was switched off, but a probe order is still refused.");
    } else {
        println!("Maintenance mode is off: new orders are accepted (probe rolled back).");
    }
    Ok(if verified { EXIT_OK } else { EXIT_CHECK_FAILED })
}
