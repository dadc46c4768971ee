//! The messages between the console's UI task and its database worker: `Command`s go to
//! the worker, `DbEvent`s come back. Every request carries an id, so an answer to a
//! request the UI no longer waits for is recognised and dropped.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::batch::{BatchItem, Outcome, Summary};
use crate::core::contract::{
    BatchPreview, MaintenanceProbe, MaintenanceState, OrderRow, Precheck, RollbackAndPostcheck,
};
use crate::core::metrics::Metrics;
use crate::core::orders::{OrderQuery, OrderSort, SortKey};

/// Identifies one request.
pub type RequestId = u64;

/// Which page of orders to load, in the list's order (`OrderSort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    /// The top of the list.
    First,
    /// The orders below the key (further down the list).
    Below(SortKey),
    /// The orders above the key (further up the list).
    Above(SortKey),
    /// The end of the list.
    Last,
}

/// What the blast radius shows: executions per minute and symbol of the book's last day,
/// and the suspicions of repeated executions, largest first.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastData {
    /// (minute, symbol, executions).
    pub per_minute: Vec<(chrono::DateTime<chrono::Utc>, String, i64)>,
    /// Repeated executions, grouped.
    pub suspicions: Vec<crate::core::blast::Suspicion>,
}

/// What the release overlay shows before a rollback: every deployment, the release a
/// rollback would go back to (the one before the current), and its pre-check.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePlan {
    /// Every deployment, oldest first.
    pub releases: Vec<crate::core::release::ReleaseRow>,
    /// The release before the current one, if there is one.
    pub target: Option<String>,
    /// What going back to it would do, or why it cannot.
    pub precheck: Option<crate::ops::release::Answer<crate::core::release::RevertPrecheck>>,
}

/// What a batch rolls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchTarget {
    /// These orders.
    Orders(Vec<BatchItem>),
    /// Every executed order matching the filter.
    Matching(OrderQuery),
}

/// The dashboard's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardData {
    /// The metrics and their alerts.
    pub metrics: Metrics,
    /// Rollbacks per minute over the last hour, oldest first.
    pub per_minute: Vec<u64>,
    /// Rollback calls running right now, on any connection.
    pub in_flight: u64,
    /// Violations found by the last background audit (none: not run yet).
    pub audit_violations: Option<usize>,
    /// When that audit ran.
    pub audit_at: Option<DateTime<Utc>>,
}

/// The state of the connection to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnState {
    /// Starting (the sandbox may be starting too).
    Connecting {
        /// What is happening.
        detail: String,
    },
    /// Connected.
    Up {
        /// Round trip of a trivial query, in milliseconds, rounded to a bucket.
        latency_ms: u32,
    },
    /// Not reachable, or not answering; retrying.
    Down {
        /// What failed (no password, sanitized).
        error: String,
        /// Seconds until the next attempt (0: retrying all the time).
        retry_in: u64,
        /// When the outage began: the start of the first probe or connect that failed.
        since: DateTime<Utc>,
    },
}

/// Requests to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A page of orders, sorted, and then the repeat marks of its rows.
    LoadOrders { id: RequestId, query: OrderQuery, sort: OrderSort, page: PageRequest, limit: i64 },
    /// Orders matching the filter per minute (the list's per-minute strip).
    OrdersPerMinute { id: RequestId, query: OrderQuery },
    /// How many orders match (capped).
    CountOrders { id: RequestId, query: OrderQuery },
    /// `rollback_precheck`.
    Precheck { id: RequestId, order: Uuid, user: Uuid },
    /// `rollback_with_postcheck`, sent once its intent is in the journal. `operation` is the
    /// intent's (and the audit rows' `batch_id`); `waive_journal` (console started with
    /// `--no-journal`) records the waiver in the audit log first and rolls back only then.
    Rollback {
        id: RequestId,
        order: Uuid,
        user: Uuid,
        reason: String,
        baseline: serde_json::Value,
        group: bool,
        operation: Uuid,
        waive_journal: bool,
    },
    /// What a batch would do.
    PreviewBatch { id: RequestId, target: BatchTarget },
    /// Run a batch, sent once its intent is in the journal; `operation` is the batch id, and
    /// `waive_journal` as for `Rollback`; `preview` is the preview its confirmation showed
    /// (an approval request carries it).
    RunBatch {
        id: RequestId,
        items: Vec<BatchItem>,
        reason: String,
        operation: Uuid,
        waive_journal: bool,
        preview: String,
    },
    /// Cancel a request: on the server too.
    Cancel { id: RequestId },
    /// Refresh the dashboard now.
    RefreshDashboard,
    /// Run the ledger audit now (after a rollback), then refresh the dashboard.
    AuditNow,
    /// Turn maintenance mode on or off (every symbol's, or `symbol`'s only), then prove it
    /// with a probe order.
    SetMaintenance { id: RequestId, on: bool, reason: String, symbol: Option<String> },
    /// The blast radius of the book's last day: executions per minute, repeated executions.
    BlastRadius { id: RequestId },
    /// The releases and the pre-check of a rollback to the one before the current.
    ReleasePlan { id: RequestId },
    /// Open or close the circuit breaker, for a reason.
    SwitchBreaker { id: RequestId, open: bool, reason: String },
    /// Read the database's part of the incident's evidence bundle.
    GatherEvidence { id: RequestId, incident: String, touched: crate::core::bundle::Touched },
    /// Roll the execution system back to release `to`, then prove it.
    ReleaseRollback { id: RequestId, to: String, reason: String },
    /// A second person's decision on someone else's approval request.
    DecideApproval { id: RequestId, request: Uuid, approve: bool, reason: String },
    /// Copy the journal entries the database lacks to `incident_events` (now, and again
    /// after every reconnect).
    SyncJournal { incident: String, path: std::path::PathBuf },
    /// Stop the worker.
    Shutdown,
}

/// Answers and news from the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum DbEvent {
    /// The connection changed.
    Connection(ConnState),
    /// Where the console is connected ("sandbox", or user@host/db without password).
    Target(String),
    /// The standby's lag, or why the reads that could go to it go to the primary (only
    /// with a replica URL).
    Replica(crate::core::replica::ReplicaStatus),
    /// A page of orders.
    Orders { id: RequestId, page: PageRequest, rows: Vec<OrderRow>, has_more: bool },
    /// Of a page's rows, the repeated executions: each with how many twins it has (the
    /// rule of `core::blast`); the page's other rows have none.
    RepeatMarks { id: RequestId, rows: Vec<uuid::Uuid>, marks: Vec<(uuid::Uuid, i64)> },
    /// Orders matching the filter per minute: (minute, orders), minutes with none absent.
    OrdersPerMinute { id: RequestId, result: Result<Vec<(DateTime<Utc>, i64)>, String> },
    /// The blast radius asked for.
    BlastRadius { id: RequestId, result: Result<BlastData, String> },
    /// The circuit breaker switched (`changed`: it was not already so), or why not.
    BreakerSwitched { id: RequestId, open: bool, reason: String, result: Result<bool, String> },
    /// The database's part of the evidence bundle, or why it could not be read.
    Evidence { id: RequestId, result: Result<crate::ops::bundle::DatabasePart, String> },
    /// The release overlay's plan.
    ReleasePlan { id: RequestId, result: Result<ReleasePlan, String> },
    /// A release rollback done (and proved) or refused.
    ReleaseRolledBack {
        id: RequestId,
        reason: String,
        result: Result<crate::ops::release::Answer<crate::ops::release::ReleaseRollback>, String>,
    },
    /// The count of matching orders; `capped` when there are at least that many.
    OrderCount { id: RequestId, count: i64, capped: bool },
    /// A pre-check.
    Precheck { id: RequestId, order: Uuid, user: Uuid, result: Result<Precheck, String> },
    /// A rollback and its post-check.
    Rollback { id: RequestId, result: Result<RollbackAndPostcheck, String> },
    /// A batch preview and the orders it covers.
    BatchPreview { id: RequestId, result: Result<(BatchPreview, Vec<BatchItem>), String> },
    /// Progress of a running batch.
    BatchProgress {
        id: RequestId,
        done: u64,
        total: u64,
        rolled_back: u64,
        problems: u64,
        recent: Vec<(BatchItem, Outcome)>,
    },
    /// The end of a batch.
    BatchDone { id: RequestId, result: Result<Summary, String> },
    /// A batch's proof, after its end: the post-check against the database's rows and the
    /// audit of the accounts it touched (`operation` is its batch id).
    BatchProof { operation: uuid::Uuid, result: Result<crate::core::batch::Proof, String> },
    /// New dashboard figures.
    Dashboard(DashboardData),
    /// Maintenance mode as stored.
    Maintenance(MaintenanceState),
    /// Maintenance mode was switched: whether a probe order was refused afterwards.
    MaintenanceSet {
        id: RequestId,
        on: bool,
        reason: String,
        symbol: Option<String>,
        result: Result<MaintenanceProbe, String>,
    },
    /// The journal copy: what the database's copy now holds, or why the copy failed (the
    /// journal on disk stays the truth).
    JournalSynced(Result<crate::ops::incident::Copied, String>),
    /// The approval requests (the last 20, newest first), as the database holds them.
    Approvals(Vec<crate::core::approval::ApprovalRequest>),
    /// A request of this console's, filed, decided, withdrawn: for its journal.
    Approval { request: Box<crate::core::approval::ApprovalRequest>, action: String, reason: String, by: String },
    /// This console's decision on someone else's request, as stored.
    ApprovalDecided {
        id: RequestId,
        approve: bool,
        result: Result<Box<crate::core::approval::ApprovalRequest>, String>,
    },
    /// A request was cancelled (on the server too).
    Cancelled { id: RequestId },
    /// A request failed in a way that belongs to no pane.
    Failed { id: RequestId, error: String },
}
