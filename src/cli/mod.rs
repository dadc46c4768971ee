//! The headless front end: every step of an incident without the console, one file per
//! subcommand, human output by default and `--json` for scripts. Each command is a thin
//! layer over `ops` (the use cases it shares with the console) and `store`.

mod approvals;
pub mod args;
mod audit;
mod batch;
mod bench;
mod breaker;
mod bundle;
mod config;
mod drill;
mod incident;
mod maintenance;
mod metrics;
mod migrate;
mod orders;
mod output;
mod postcheck;
mod precheck;
mod release;
mod rollback;
mod sandbox;
mod seed;
mod service;
mod signals;
mod template;

use std::io::{BufRead, Write};

use serde_json::json;

use crate::core::error::{EXIT_CHECK_FAILED, Error, Result};
use crate::core::workflow::incident::Observation;
use crate::ops::journaling::{self, Recorded};
use crate::store::connect::ConnectSettings;
use crate::store::target;
use args::{Command, GlobalArgs};

pub use output::print_json;

/// Progress and notes go to stderr, so stdout stays the command's answer.
fn say(msg: &str) {
    eprintln!("{msg}");
}

/// Runs one headless command; returns the exit code.
pub async fn run(command: Command, g: &GlobalArgs) -> Result<i32> {
    match command {
        Command::Sandbox { action: args::SandboxAction::Service { action } } => service::demo(action).await,
        Command::Sandbox { action } => sandbox::sandbox_command(g, action).await,
        Command::Migrate { dry_run, undo_to } => migrate::migrate(g, dry_run, undo_to).await,
        Command::Seed(a) => seed::seed(g, a).await,
        Command::Orders(a) => orders::orders(g, a).await,
        Command::Precheck(a) => precheck::precheck(g, a).await,
        Command::Rollback(a) if a.order.is_some() => rollback::rollback_one(g, a).await,
        Command::Rollback(a) => batch::rollback_batch(g, a).await,
        Command::Postcheck(a) => postcheck::postcheck(g, a).await,
        Command::Audit { full } => audit::audit(g, full).await,
        Command::Metrics(a) => metrics::metrics_command(g, a).await,
        Command::Maintenance(a) => maintenance::maintenance(g, a).await,
        Command::Breaker { action } => breaker::breaker(g, action).await,
        Command::Approvals { action } => approvals::approvals(g, action).await,
        Command::Policy { action } => approvals::policy(g, action).await,
        Command::Drill(a) => drill::drill(g, a.level).await,
        Command::Bench(a) => bench::bench(g, a).await,
        Command::Config { action } => config::config_command(g, action),
        Command::Incident(a) => incident::incident_command(g, a).await,
        Command::Template { action } => template::template_command(g, action).await,
        Command::Release { action } => release::release_command(g, action).await,
        Command::Service(a) => service::service_command(g, a).await,
    }
}

/// The database of this invocation (the sandbox when no URL is given) and a small pool.
async fn connect(g: &GlobalArgs) -> Result<(ConnectSettings, crate::store::db::Db)> {
    let settings = target::resolve(g.database_url(), &g.session(), &say).await?;
    let pool = settings.pool(4).await?;
    Ok((settings, pool))
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
    .map_err(|e| Error::task("the confirmation prompt", e))?
}

/// A confirmation refused: nothing changed, said on stderr (and as JSON with --json).
fn not_confirmed(g: &GlobalArgs) -> Result<i32> {
    eprintln!("Not confirmed; nothing was changed.");
    if g.json {
        print_json(&json!({ "confirmed": false, "changed": false }))?;
    }
    Ok(EXIT_CHECK_FAILED)
}

/// A `--reason`, checked as every reason is.
fn check_reason(reason: &str) -> Result<()> {
    crate::core::workflow::incident::reason_ok(reason, "--reason")?;
    Ok(())
}

/// The operator recorded in the journal: `--operator`, `$INCIDENT_OPERATOR`, the OS user.
fn operator(g: &GlobalArgs) -> String {
    crate::store::connect::operator_name(g.operator.as_deref())
}

/// Records what a command observed in the current incident, if there is one (best effort:
/// the command's own result stands), and copies the journal to the database.
async fn observe(g: &GlobalArgs, observations: Vec<Observation>, pool: Option<&crate::store::db::Db>) {
    crate::ops::incident::observe(&operator(g), observations, pool).await;
}

/// Records, before a rollback moves any money, that it will: `before` (what led to it) and
/// its `intent` in the current incident's journal, synced to disk; or, with `--no-journal`,
/// the waiver in the audit log for `orders` (order, user). An error means it was recorded
/// nowhere: the rollback must not run (nothing has changed).
async fn intend(
    g: &GlobalArgs,
    no_journal: bool,
    before: Vec<Observation>,
    intent: Observation,
    orders: &[(uuid::Uuid, uuid::Uuid)],
    pool: &crate::store::db::Db,
) -> Result<Recorded> {
    if no_journal {
        let Observation::RollbackIntended { operation, mode, reason, .. } = &intent else {
            return Err(Error::BadInput("only a rollback's intent can be waived".into()));
        };
        let rows = journaling::waive(pool, *operation, mode, orders, reason).await?;
        say(&format!(
            "Journal waived (--no-journal): recorded in the audit log for {rows} order(s) under operation {operation}; \
             nothing is written to the incident's journal."
        ));
        return Ok(Recorded::Waived);
    }
    let mut seen = before;
    seen.push(intent);
    journaling::intend(&operator(g), seen, Some(pool)).await
}

/// Records a rollback's outcome where its intent went. When that fails the money may have
/// moved while the journal shows only the intent: returns the reason, for the caller to say
/// loudly (`outcome_lost`) and exit with `EXIT_OUTCOME_NOT_JOURNALED`.
async fn outcome(
    g: &GlobalArgs,
    recorded: &Recorded,
    seen: Vec<Observation>,
    pool: Option<&crate::store::db::Db>,
) -> Option<String> {
    match journaling::record_outcome(&operator(g), recorded, seen, pool).await {
        Ok(()) => None,
        Err(e) => Some(crate::core::sanitize::line(&e.to_string()).into_owned()),
    }
}

/// After a rollback's outcome: the incident's earlier rollbacks whose figures the journal
/// could not know (lost replies, unknown outcomes, interrupted runs) are settled against the
/// database, and said on stderr. Best effort: a database that cannot be asked leaves them
/// for the next run.
async fn settle(g: &GlobalArgs, recorded: &Recorded, pool: &crate::store::db::Db) {
    match journaling::settle(&operator(g), recorded, pool).await {
        Ok(0) => {}
        Ok(n) => say(&format!(
            "Settled {n} earlier rollback(s) of this incident from the database: the journal now has their true figures."
        )),
        Err(e) => say(&format!("note: earlier rollbacks were not settled from the database: {e}")),
    }
}

/// Says on stderr, last and loudly, that a rollback's outcome is not in the journal.
fn outcome_lost(why: &str, operation: uuid::Uuid) {
    eprintln!(
        "\nWARNING: the rollback ran, but its outcome could not be written to the incident's journal: {why}\n\
         The journal shows operation {operation} as intended with no outcome (\"outcome not recorded — check the \
         database\"). The database is the record: its audit rows carry {operation} as batch_id."
    );
}
