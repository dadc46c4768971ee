//! The command line: every step of an incident without the TUI, with human output by
//! default and `--json` for scripts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::core::orders::{TimeBound, parse_symbol, parse_time_bound};
use crate::store::connect::{Pooling, SessionOptions, operator_name};

/// Exit codes, shown in `--help`.
const EXIT_CODES: &str = "Exit codes: 0 ok · 1 a check failed, violations found or a rollback did not complete · \
2 bad input (nothing was changed) · 3 database unreachable · 4 a rollback refused because its intent could not be \
written to the current incident's journal (nothing was changed; --no-journal acts without it) · 5 a rollback ran \
but its outcome could not be written to the journal (check the database).\n\n\
With no --database-url and no DATABASE_URL, every command uses the sandbox: a private PostgreSQL \
the console starts itself, seeded with a demo order book that contains a bad burst to roll back.";

/// Exit codes of `rollback`, shown in its `--help`.
const ROLLBACK_EXIT_CODES: &str = "Exit codes: 0 rolled back and proven · 1 refused, failed or a check did not pass · \
2 bad input · 3 database unreachable · 4 not done: the intent could not be written to the current incident's \
journal, nothing was changed (the message names the file and the error; --no-journal acts without it) · \
5 done, but the outcome could not be written to the journal: the database is the record, check it.";

/// Incident console for order-execution incidents: classify, check, roll back, prove, report.
#[derive(Debug, Parser)]
#[command(name = "incident-console", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Connection flags shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do (the console itself when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Console: start a new incident with this title (default: open the current incident,
    /// or start an untitled one when there is none).
    #[arg(long)]
    pub title: Option<String>,

    /// Console: the level of a new incident (1 minor, 2 moderate, 3 critical) [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub level: Option<u8>,

    /// Console: work without the incident's journal, for when it cannot be written (a
    /// read-only or full disk, a stuck lock). No incident is opened; every rollback and batch
    /// first records the waiver in the database's audit log (action journal_waived: operator,
    /// login, operation id, reason) and runs only once that is written. --level sets how
    /// strict the confirmation is.
    #[arg(long, conflicts_with = "title")]
    pub no_journal: bool,
}

/// Flags every command understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL (postgres://user:password@host:port/db). The password is never printed.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Name recorded on every audit row, beside the database login: as given when the
    /// database's owner registered it for the login (table operator_names), else as
    /// "NAME (via LOGIN)"; a login with registered names may use only those (refused
    /// before anything is written) [default: $INCIDENT_OPERATOR, else the OS user].
    #[arg(long, global = true)]
    pub operator: Option<String>,

    /// On the sandbox: connect as its second login (`incident_second`), the other person who
    /// approves what the first asks for (four eyes). Ignored with --database-url.
    #[arg(long, global = true)]
    pub second_login: bool,

    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Server-side limit for one statement (e.g. 30s, 2m; 0 for none).
    #[arg(long, global = true, default_value = "60s", value_parser = parse_timeout)]
    pub statement_timeout: Duration,

    /// Server-side limit for waiting on a row lock (0 for none).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_timeout)]
    pub lock_timeout: Duration,

    /// How the database is reached: `session` (directly, or PgBouncer in session pooling
    /// mode) or `transaction` (PgBouncer in transaction pooling mode: every statement in
    /// a transaction of its own, the dashboard polls; migrate, seed, bench and drill need
    /// `session`).
    #[arg(long, global = true, env = "INCIDENT_POOLING", default_value = "session", value_parser = parse_pooling)]
    pub pooling: Pooling,

    /// A hot standby of the database (postgres://user:password@standby/db): the console's
    /// orders list, dashboard and blast radius, and `audit --full`, read from it while it is
    /// at most --replica-max-lag behind (else from the primary, and the console's header
    /// says so); pre-checks, rollbacks, post-checks and writes always go to the primary.
    /// Wins over `replica_url` in config.toml. The password is never printed.
    #[arg(long, env = "INCIDENT_REPLICA_URL", global = true, hide_env_values = true)]
    pub replica_url: Option<String>,

    /// How far behind the standby may be before reads go back to the primary (e.g. 500ms,
    /// 5s) [default: `replica_max_lag` in config.toml, else 5s].
    #[arg(long, global = true, value_parser = parse_max_lag)]
    pub replica_max_lag: Option<Duration>,
}

/// A replica's lag limit: longer than 0, at most an hour.
pub fn parse_max_lag(s: &str) -> Result<Duration, String> {
    let d = parse_window(s)?;
    if d > Duration::from_secs(3600) {
        return Err("at most 1h".into());
    }
    Ok(d)
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the sandbox PostgreSQL (start, stop, status, url, reset).
    Sandbox {
        /// What to do with it.
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Apply the schema migrations (or show them with --dry-run).
    Migrate {
        /// Print the SQL that would run, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Undo migrations down to this version (reversible migrations only; a migration
        /// that would delete financial history refuses).
        #[arg(long, value_name = "VERSION")]
        undo_to: Option<i64>,
    },
    /// Write the demo order book into an empty database.
    Seed(SeedArgs),
    /// Find orders by id, user, transaction, symbol, status and time window.
    Orders(OrdersArgs),
    /// Run every pre-rollback check of one order and show the baseline.
    Precheck(PrecheckArgs),
    /// Roll back one order (or its transaction group), or a batch, then prove it.
    #[command(after_help = ROLLBACK_EXIT_CODES)]
    Rollback(RollbackArgs),
    /// Compare an order's state with the baseline its pre-check took.
    Postcheck(PostcheckArgs),
    /// Check every ledger invariant over the whole book (exit 1 on any violation).
    Audit {
        /// Recompute from the tables alone instead of from the last checkpoint.
        #[arg(long)]
        full: bool,
    },
    /// Rollback metrics and alerts.
    Metrics(MetricsArgs),
    /// Stop or resume new orders.
    Maintenance(MaintenanceArgs),
    /// The circuit breaker: while it is open every rollback is refused, by anyone. A failed
    /// post-check opens it, as do a ledger violation or failures during a batch.
    Breaker {
        /// What to do.
        #[command(subcommand)]
        action: BreakerAction,
    },
    /// Four-eyes approval: the requests other people filed, approved or denied here by a
    /// second person (another database login and operator).
    Approvals {
        /// What to do [default: list the requests waiting].
        #[command(subcommand)]
        action: Option<ApprovalsAction>,
    },
    /// The four-eyes policy the database enforces: what needs a second person.
    Policy {
        /// What to do.
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Automated drill, every step checked: Level 1 (default) rolls back orders of drill
    /// accounts; Level 3 takes a copy of the sandbox through a full-system rollback.
    Drill(DrillArgs),
    /// Benchmark rollbacks and the audit against pgbench on the same server.
    Bench(BenchArgs),
    /// The console's configuration file (key bindings, dashboard settings).
    Config {
        /// What to show.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The incident: open one, classify it, follow its phases and checklist, keep its
    /// timeline, verify the journal, write the post-incident report.
    Incident(IncidentArgs),
    /// Message templates: list them, fill one in.
    Template {
        /// What to do.
        #[command(subcommand)]
        action: TemplateAction,
    },
    /// Releases of the execution system (Level 3): list, show, diff, deploy, verify, and
    /// roll back to an earlier one, archiving every value the revert drops.
    #[command(after_help = RELEASE_HELP)]
    Release {
        /// What to do.
        #[command(subcommand)]
        action: ReleaseAction,
    },
    /// The deployed service (config.toml's [service], or --demo): its running version, and
    /// rolling it back, judged by the version read afterwards and the probe.
    Service(ServiceArgs),
}

const RELEASE_HELP: &str = "\
A release is a named change to the database the execution path runs on (functions, indexes,
constraints, columns, tables), deployed from a plan directory: plan.toml listing the
releases in order, and deploy/NAME.sql, revert/NAME.sql, verify/NAME.sql for each. The
database records every object each release changed, before and after, with checksums.

A rollback needs maintenance mode on and verified. It runs in one transaction: the values
it would drop are archived first (count and checksum checked), the revert scripts run
newest first, functions go back to their exact recorded definitions, and anything it would
lose unarchived, or any object left different from the target release, refuses it and
changes nothing. Then the result is proved: checksums, the SQL contract's signatures, a
probe execution (rolled back), the target's verify script and the ledger audit.

Exit codes: 0 done (and proved), 1 refused or a check failed, 2 bad input, 3 unreachable.";

/// `release` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ReleaseAction {
    /// Every deployment, oldest first, and which are in effect.
    List,
    /// One release: what it changed, each object's checksum before and after.
    Show {
        /// The release.
        name: String,
        /// Print each object's definitions too.
        #[arg(long)]
        definitions: bool,
    },
    /// What differs between the states two releases left, as line diffs.
    Diff {
        /// The release to compare from.
        from: String,
        /// The release to compare to.
        to: String,
    },
    /// Deploy the releases of a plan that are not in effect, in order.
    Deploy {
        /// The plan directory (plan.toml, deploy/, revert/, verify/); on the sandbox, its
        /// own history when omitted.
        #[arg(long, value_name = "DIR")]
        plan: Option<std::path::PathBuf>,
        /// Stop after this release.
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Check every object of the releases in effect against its recorded checksum (drift)
    /// and run the current release's verify script (undone).
    Verify,
    /// Roll the execution system back to an earlier release, archiving what it drops, then
    /// prove it.
    Rollback(ReleaseRollbackArgs),
    /// Put the values archived by a release's revert back, once it is deployed again.
    Restore {
        /// The release, deployed again.
        name: String,
    },
}

/// `release rollback` flags.
#[derive(Debug, Clone, Args)]
pub struct ReleaseRollbackArgs {
    /// The release to go back to (it stays; every later one is reverted).
    #[arg(long, value_name = "RELEASE")]
    pub to: String,
    /// Why (recorded with the revert).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Rehearse it: do all of it in the database and undo it, then say what it did.
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead although objects were changed by hand since their release (their changes
    /// are discarded; the drift is recorded).
    #[arg(long)]
    pub accept_drift: bool,
    /// Do not ask for the typed confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `service` flags.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Use the sandbox's demo service with this state directory (see `sandbox service run`)
    /// instead of config.toml's [service].
    #[arg(long, global = true, value_name = "STATE_DIR")]
    pub demo: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `service` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum ServiceAction {
    /// Read the running version with the configured command.
    Status,
    /// Roll the service back to VERSION, then wait for the version to be VERSION and probe
    /// it (exit 0 passed, 1 not).
    Rollback {
        /// The version to roll back to ({version} in the commands).
        #[arg(long, value_name = "VERSION")]
        to: String,
    },
}

/// The sandbox's demo service: a local HTTP process whose version a rollback switches.
#[derive(Debug, Clone, Subcommand)]
pub enum DemoServiceAction {
    /// Serve it in the foreground (writes its address to STATE_DIR/address).
    Run {
        /// Its state: address, version, broken (versions whose probe fails).
        #[arg(long)]
        state_dir: PathBuf,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Deploy this version first (else keep STATE_DIR/version).
        #[arg(long)]
        version: Option<String>,
    },
    /// Print its running version.
    Version {
        /// Its state directory.
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Switch its version.
    Deploy {
        /// Its state directory.
        #[arg(long)]
        state_dir: PathBuf,
        /// The version to run.
        #[arg(long)]
        version: String,
    },
    /// Ask whether it works (exit 1 when not).
    Probe {
        /// Its state directory.
        #[arg(long)]
        state_dir: PathBuf,
    },
}

/// `incident` flags.
#[derive(Debug, Clone, Args)]
pub struct IncidentArgs {
    /// Work on this incident instead of the current one.
    #[arg(long, global = true, value_name = "ID")]
    pub incident: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: IncidentAction,
}

/// `incident` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum IncidentAction {
    /// Open an incident and make it current.
    New {
        /// What happened, in a few words.
        #[arg(long)]
        title: String,
        /// 1 minor, 2 moderate, 3 critical (see `incident classify`).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
        level: u8,
        /// Why this level.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Where the incident stands: level, phase, time box, checklist, roles, next update.
    Show,
    /// Every incident, newest first.
    List,
    /// Make another incident current.
    Switch {
        /// Its id.
        id: String,
    },
    /// Ask the source document's questions and propose a level (--apply sets it).
    Classify {
        /// Answers as id=yes|no|unsure (ask without them to be asked on the terminal).
        #[arg(long = "answer", value_name = "ID=ANSWER")]
        answers: Vec<String>,
        /// Set the proposed level on the current incident.
        #[arg(long)]
        apply: bool,
    },
    /// Raise or lower the level (logged with the reason).
    Level {
        /// 1, 2 or 3.
        #[arg(value_parser = clap::value_parser!(u8).range(1..=3))]
        level: u8,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Move to a later phase: response, recovery, post_incident.
    Phase {
        /// The phase.
        name: String,
    },
    /// Tick a checklist item.
    Tick {
        /// Its id (see `incident show`).
        item: String,
        /// Who approved it (name and role): required by an approval item ("approval",
        /// "full_system_plan"), recorded in the journal with the tick.
        #[arg(long, value_name = "WHO")]
        approved_by: Option<String>,
    },
    /// Skip a checklist item, with the reason.
    Skip {
        /// Its id.
        item: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Give a checklist item to a role.
    Assign {
        /// Its id.
        item: String,
        /// The role (incident_commander, technical_lead, database_admin, ...).
        #[arg(long)]
        role: String,
    },
    /// Give a role to a person (a hand-over when someone held it).
    Role {
        /// incident_commander, technical_lead, database_admin, security_lead,
        /// communications_lead, documentation_lead.
        role: String,
        /// Who.
        person: String,
    },
    /// Add a note to the timeline.
    Note {
        /// The note.
        text: String,
    },
    /// Fill a message field (impact, estimated_resolution, customer_resolution, ...).
    Field {
        /// The field.
        name: String,
        /// Its value.
        value: String,
    },
    /// Waive a required message field explicitly.
    Waive {
        /// The field.
        name: String,
    },
    /// Set one of the incident's times: impact-began, detected, mitigated, resolved. The
    /// messages and the report count the duration from impact began (else from detected,
    /// which is the incident's opening unless set).
    Time {
        /// impact-began, detected, mitigated or resolved.
        which: String,
        /// RFC 3339, "YYYY-MM-DD HH:MM" (UTC), or HH:MM today (UTC).
        #[arg(required_unless_present = "from_orders", conflicts_with = "from_orders")]
        at: Option<String>,
        /// Take it from the book instead: the first execution of --symbol between --from
        /// and --to (times of day are on the book's latest trading day).
        #[arg(long, requires_all = ["symbol", "from", "to"])]
        from_orders: bool,
        /// With --from-orders: the symbol.
        #[arg(long)]
        symbol: Option<String>,
        /// With --from-orders: the window's start.
        #[arg(long)]
        from: Option<String>,
        /// With --from-orders: the window's end (exclusive).
        #[arg(long)]
        to: Option<String>,
    },
    /// Close the incident: records resolved (now, unless set) and stops the update timers.
    Close {
        /// Why it is over.
        #[arg(long)]
        reason: String,
    },
    /// The timeline, newest first.
    Timeline {
        /// Only entries whose kind, operator or text contain this.
        #[arg(long)]
        filter: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Recompute the journal's hash chain; names the first broken line.
    Verify,
    /// Write the post-incident report (Markdown) from the journal.
    Report {
        /// Write it here (default: the incident's reports directory).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The evidence bundle: write it (one tar archive: the journal and its verification, the
    /// reports and messages, every rollback and its checks, the audit-log rows and ledger
    /// audit of the incident's orders, the releases, the configuration with secrets
    /// redacted, the versions, and a manifest of SHA-256 checksums, signed when a key is
    /// set), check one offline, or make a signing key.
    Bundle(BundleArgs),
}

/// `incident bundle` flags.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BundleArgs {
    /// verify or keygen; without one, the bundle of the incident is written.
    #[command(subcommand)]
    pub action: Option<BundleAction>,
    /// Write it here (default: the incident's bundles/ directory).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Sign the manifest with this ed25519 key (a file holding its 32-byte seed in hex, as
    /// `incident bundle keygen` writes); default: `[bundle] signing_key` in config.toml.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// `incident bundle` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum BundleAction {
    /// Check a bundle offline, with no database: the manifest against its checksum and its
    /// signature, every file against the manifest; names the first file that does not
    /// match (exit 1).
    Verify {
        /// The bundle (.tar).
        file: PathBuf,
        /// The signer's public key (hex): the bundle must be signed by it.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Make a signing key: its seed goes to FILE (mode 0600), its public key is printed.
    Keygen {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `template` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum TemplateAction {
    /// The templates, their audience and required fields.
    List,
    /// Fill a template from the current incident.
    Render {
        /// internal_alert, customer_notice, status_update, resolution_notice, post_incident_report.
        name: String,
        /// Fill a field: key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Waive a required field (repeatable).
        #[arg(long = "waive", value_name = "KEY")]
        waive: Vec<String>,
        /// Fill it from this incident instead of the current one.
        #[arg(long, value_name = "ID")]
        incident: Option<String>,
    },
}

/// `config` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum ConfigAction {
    /// Print where the configuration file is read from.
    Path,
    /// Print an example file with every setting.
    Example,
    /// Check the file and print the key bindings in effect.
    Check,
}

/// Sandbox actions.
#[derive(Debug, Clone, Subcommand)]
pub enum SandboxAction {
    /// Start it (creating, migrating and seeding it on first use).
    Start,
    /// Stop it.
    Stop,
    /// Say whether it exists and runs.
    Status,
    /// Print a connection URL for psql or DATABASE_URL.
    Url,
    /// Delete it and start a fresh one with a new demo book.
    Reset,
    /// Practise the circuit breaker: a drill account with one order whose post-check is made
    /// to fail; rolling it back opens the breaker.
    BreakerDrill,
    /// The demo deployed service the service rollback is drilled on.
    #[command(hide = true)]
    Service {
        /// What to do with it.
        #[command(subcommand)]
        action: DemoServiceAction,
    },
}

/// `seed` flags.
#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Random seed: the same seed gives the same book.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trading day (YYYY-MM-DD, UTC) [default: the last finished session].
    #[arg(long)]
    pub date: Option<chrono::NaiveDate>,
}

/// `orders` flags.
#[derive(Debug, Clone, Args)]
pub struct OrdersArgs {
    /// One order id.
    #[arg(long)]
    pub id: Option<Uuid>,
    /// Orders of one user.
    #[arg(long)]
    pub user: Option<Uuid>,
    /// Orders of one transaction group.
    #[arg(long)]
    pub transaction: Option<Uuid>,
    /// Symbol, e.g. GBPUSD.
    #[arg(long, value_parser = parse_symbol)]
    pub symbol: Option<String>,
    /// Status.
    #[arg(long)]
    pub status: Option<OrderStatus>,
    /// Created at or after (RFC 3339, "YYYY-MM-DD HH:MM[:SS]" in UTC, or HH:MM on the book's
    /// latest trading day).
    #[arg(long, value_parser = parse_time_bound)]
    pub from: Option<TimeBound>,
    /// Created before.
    #[arg(long, value_parser = parse_time_bound)]
    pub to: Option<TimeBound>,
    /// At most this many orders.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Include drill accounts.
    #[arg(long)]
    pub include_drill: bool,
    /// The console's filter language instead of the flags above, e.g. "GBPUSD EURUSD sell
    /// qty:>=10 from:13:02 to:13:06" or "id:512a83f1": several terms of one kind are
    /// alternatives, different kinds narrow; ids may be given by their first hex digits.
    #[arg(long, conflicts_with_all = ["id", "user", "transaction", "symbol", "status", "from", "to"])]
    pub filter: Option<String>,
}

/// Order statuses.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Executing,
    Executed,
    Failed,
    Cancelled,
    RolledBack,
}

impl OrderStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Executing => "executing",
            OrderStatus::Executed => "executed",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::RolledBack => "rolled_back",
        }
    }
}

/// `precheck` flags.
#[derive(Debug, Clone, Args)]
pub struct PrecheckArgs {
    /// The order.
    pub order: Uuid,
    /// Its user.
    #[arg(long)]
    pub user: Uuid,
    /// Also write the baseline to this file (for `postcheck --baseline`).
    #[arg(long, value_name = "FILE")]
    pub baseline_out: Option<PathBuf>,
}

/// `rollback` flags: one order (ORDER --user) or a batch (--symbol/--from/--to or --orders).
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The order to roll back.
    #[arg(conflicts_with_all = ["symbol", "orders"], requires = "user")]
    pub order: Option<Uuid>,
    /// Its user (a mismatch is refused as order_not_found).
    #[arg(long)]
    pub user: Option<Uuid>,
    /// Roll back every executed order of the order's transaction group.
    #[arg(long, requires = "order")]
    pub transaction: bool,
    /// Why (recorded on every order and audit row; 1 to 1000 characters).
    #[arg(long)]
    pub reason: String,
    /// Batch: orders of this symbol...
    #[arg(long, value_parser = parse_symbol, requires_all = ["from", "to"], conflicts_with = "orders")]
    pub symbol: Option<String>,
    /// ...created at or after this time (RFC 3339, "YYYY-MM-DD HH:MM" in UTC, or HH:MM on the
    /// book's latest trading day; the preview shows the window resolved)...
    #[arg(long, value_parser = parse_time_bound, requires = "symbol")]
    pub from: Option<TimeBound>,
    /// ...and before this time...
    #[arg(long, value_parser = parse_time_bound, requires = "symbol")]
    pub to: Option<TimeBound>,
    /// ...in this status.
    #[arg(long, default_value = "executed", requires = "symbol")]
    pub status: OrderStatus,
    /// Batch: the order ids in this file, one per line (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    pub orders: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Batch: connections working at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Roll back without the current incident's journal. Without this flag the rollback's
    /// intent is written to the journal (and synced) before anything changes, and an
    /// unwritable journal refuses the rollback (exit 4). With it nothing is written to the
    /// journal; the waiver is recorded first in the database's audit log (action
    /// journal_waived, with operator, login, operation id and reason).
    #[arg(long)]
    pub no_journal: bool,
    /// Batch: how long (seconds) a worker whose connection broke keeps reconnecting before
    /// the rest of its queue is reported not sent (default: `BatchOptions`'s 30 s). Hidden
    /// and not in the README: it exists so the fault tests need not wait 30 s for a server
    /// that stays down; an operator has no reason to change it.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reconnect_for_secs: Option<u64>,
    /// Batch: orders per call and per transaction, each in a subtransaction of its own (1:
    /// one call per order). Hidden: the default (`BatchOptions`) is what an operator wants;
    /// it exists for measurements and tests.
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub chunk_size: Option<u16>,
}

/// `postcheck` flags.
#[derive(Debug, Clone, Args)]
pub struct PostcheckArgs {
    /// The order.
    pub order: Uuid,
    /// Its user.
    #[arg(long)]
    pub user: Uuid,
    /// The baseline written by `precheck --baseline-out` (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
}

/// `metrics` flags.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Count rollbacks since this long ago.
    #[arg(long, default_value = "24h", value_parser = parse_window)]
    pub since: Duration,
    /// This many rollbacks within --burst-window raise an alert.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub burst_count: u64,
    /// The window of the burst alert.
    #[arg(long, default_value = "10m", value_parser = parse_window)]
    pub burst_window: Duration,
    /// A rollback (or batch) longer than this raises an alert.
    #[arg(long, default_value = "30m", value_parser = parse_window)]
    pub long_rollback: Duration,
    /// Skip the whole-book ledger audit (the data-inconsistency alert then only sees
    /// failed post-checks).
    #[arg(long)]
    pub skip_audit: bool,
}

/// `breaker` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum BreakerAction {
    /// Whether it is open, since when and why (exit 1 when open).
    Status,
    /// Open it: every rollback is refused until it is closed.
    Open {
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Close it, with the reason rollbacks may go on.
    Close {
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `approvals` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum ApprovalsAction {
    /// The requests waiting for a second person (with --all, the last 50 of any state).
    List {
        /// Every state, not only those waiting.
        #[arg(long)]
        all: bool,
    },
    /// One request: its scope, the preview the requester saw, its orders, its decision.
    Show {
        /// Its id (the first 8 characters will do).
        id: String,
    },
    /// Approve someone else's request, with the reason.
    Approve {
        /// Its id (the first 8 characters will do).
        id: String,
        /// Why it may go ahead.
        #[arg(long)]
        reason: String,
    },
    /// Deny someone else's request, with the reason.
    Deny {
        /// Its id (the first 8 characters will do).
        id: String,
        /// Why not.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a request of your own that is not decided yet.
    Cancel {
        /// Its id (the first 8 characters will do).
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `policy` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyAction {
    /// The policy, the incident level the database sees, and what this login has used.
    Show,
    /// Change it (the database's owner only), e.g. `policy set batch_orders=50 enabled=true`.
    Set {
        /// SETTING=VALUE pairs: enabled, release_rollback, level3_batches,
        /// level3_breaker_close (true/false); batch_orders, single_limit, window_minutes,
        /// expiry_minutes (whole numbers); batch_refunded (an amount).
        #[arg(required = true)]
        settings: Vec<String>,
    },
}

/// `drill` flags.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// 1: the rollback drill on drill accounts (any database). 3: the full-system rollback
    /// on a database of its own on the sandbox's cluster (classify, maintenance, the release
    /// rolled back and proved, the service rolled back, the burst rolled back, the report).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub level: u8,
}

/// `maintenance` flags.
#[derive(Debug, Clone, Args)]
pub struct MaintenanceArgs {
    /// on: refuse new orders; off: accept them again.
    pub mode: OnOff,
    /// Why.
    #[arg(long)]
    pub reason: String,
    /// Only this symbol's new orders (e.g. GBPUSD); the others trade on. Without it, every
    /// symbol's.
    #[arg(long, value_name = "SYMBOL")]
    pub symbol: Option<String>,
}

/// on / off.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

/// `bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Orders rolled back per concurrency level.
    #[arg(long, default_value_t = 10_000)]
    pub orders: usize,
    /// Concurrency levels, comma separated.
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    pub concurrency: Vec<u16>,
    /// Orders per call and per transaction of the batch, comma separated (1: one call per
    /// order); each is measured at every concurrency level.
    #[arg(long, default_value = "50", value_delimiter = ',')]
    pub chunk: Vec<usize>,
    /// Size of the book the audit is timed on.
    #[arg(long, default_value_t = 1_000_000)]
    pub audit_orders: usize,
    /// Seconds of each pgbench run (0 skips pgbench).
    #[arg(long, default_value_t = 15)]
    pub pgbench_seconds: u32,
    /// Keep the benchmark's database afterwards (for investigation) and print its name.
    #[arg(long)]
    pub keep_database: bool,
    /// Clients of the pgbench script that calls rollback_execute_order_atomic one order per
    /// call, as an outside tool would (0 skips it); it rolls back --orders orders.
    #[arg(long, default_value_t = 4)]
    pub script_clients: u16,
    /// Orders the real CLI rolls back from an order file (`rollback --orders FILE --yes`),
    /// launch to exit (0 skips it).
    #[arg(long, default_value_t = 3_000)]
    pub batch_orders: usize,
    /// Rounds of the console launched in tmux: first frame, first page, key latency, RSS,
    /// idle CPU, cancel (0 skips them).
    #[arg(long, default_value_t = 5)]
    pub console_rounds: usize,
    /// A peer TUI launched with `--url URL` against the same database in the same rounds,
    /// for the first-frame ratio (default: `rainfrog` when it is on PATH).
    #[arg(long, value_name = "BINARY")]
    pub peer: Option<PathBuf>,
    /// Text the peer's first frame always shows (rainfrog 0.4: `<alt+1>`).
    #[arg(long, default_value = "<alt+1>")]
    pub peer_marker: String,
    /// The cost curve instead: books of each of --sizes orders generated on the server, and
    /// what the console and the CLI take on each (pages, filter, count, pre-check, rollback,
    /// batch, audits, blast radius, the console's memory). Needs a superuser login.
    #[arg(long)]
    pub scale: bool,
    /// Book sizes for --scale, comma separated, with k or m for thousands and millions.
    #[arg(long, default_value = "10k,100k,1m,10m", value_delimiter = ',', value_parser = parse_size)]
    pub sizes: Vec<u64>,
    /// Runs of each --scale figure (the median is shown; the full audit, the batch and the
    /// console run at most 3 times).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub runs: u16,
    /// --scale without the console's memory (no tmux needed).
    #[arg(long)]
    pub no_console: bool,
}

/// "10k", "1m", "25000": a number of orders, at least 10,000 (the batch figure rolls back
/// 3,000 of them) and at most 100 million.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (digits, factor) = match t.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match t.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (t.as_str(), 1),
        },
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size; try 10k, 1m or 25000"))?;
    let n = n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too big"))?;
    if !(10_000..=100_000_000).contains(&n) {
        return Err(format!("{s:?}: a book has from 10k to 100m orders"));
    }
    Ok(n)
}

/// `session` or `transaction`.
pub fn parse_pooling(s: &str) -> Result<Pooling, String> {
    s.parse()
}

/// Parses "30s", "5m", "1h", "500ms"; a bare number is seconds. At most ten years: every
/// duration here is a window or a timeout, and date arithmetic must not overflow.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("not a duration ({e}); try 30s, 5m or 1h"))?,
    };
    if d > LONGEST {
        return Err("too long: at most 3650 days".into());
    }
    Ok(d)
}

/// A window or threshold: a duration longer than zero (zero would alert on everything or
/// look at nothing).
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// A server-side timeout: 0 for none, else 1 ms to PostgreSQL's limit (about 24 days). A
/// shorter one would round to 0, which the server reads as no limit at all.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Ok(d);
    }
    if d < Duration::from_millis(1) {
        return Err("shorter than 1ms (0 means no limit)".into());
    }
    if d.as_millis() > i32::MAX as u128 {
        return Err("longer than PostgreSQL allows (2147483647ms, about 24 days)".into());
    }
    Ok(d)
}

impl GlobalArgs {
    /// The database URL given (`--database-url` / `DATABASE_URL`), if not blank.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// The replica URL given (`--replica-url` / `INCIDENT_REPLICA_URL`), if not blank.
    pub fn replica_url(&self) -> Option<&str> {
        self.replica_url.as_deref().filter(|u| !u.trim().is_empty())
    }

    /// What every session of this invocation tells the server about itself.
    pub fn session(&self) -> SessionOptions {
        SessionOptions {
            operator: operator_name(self.operator.as_deref()),
            statement_timeout: self.statement_timeout,
            lock_timeout: self.lock_timeout,
            pooling: self.pooling,
            second_login: self.second_login,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_durations_and_timeouts() {
        assert!(parse_duration("10000000000000").is_err(), "centuries are refused, not overflowed");
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert!(parse_timeout("500us").is_err() && parse_timeout("1ns").is_err());
        assert!(parse_timeout("30days").is_err() && parse_timeout("3000000000ms").is_err());
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("3650days"), Ok(Duration::from_secs(3650 * 24 * 3600)));
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m").ok(), Some(Duration::from_secs(600)));
        assert!(parse_duration("soon").is_err());
    }
}
