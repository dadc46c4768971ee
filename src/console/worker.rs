//! The console's database worker: the only part of the console that touches the database.
//! It owns the pool, answers `Command`s with `DbEvent`s, listens on `order_audit` and
//! `maintenance_mode` (behind a transaction pooler, which keeps no LISTEN, it polls the
//! audit log and maintenance mode every two seconds instead, and the header says so),
//! refreshes the dashboard and audits the ledger in the background, and reconnects with
//! backoff when the database goes away. Every request runs in its own task; cancelling
//! one cancels its query on the server and throws its connection away (behind a
//! transaction pooler: aborts the task, whose connection is closed mid-transaction).

mod requests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::console::protocol::{Command, ConnState, DashboardData, DbEvent, RequestId};
use crate::core::contract::MaintenanceState;
use crate::core::error::{Error, Result};
use crate::core::metrics;
use crate::ops::batch::Progress;
use crate::ops::rollback::RollbackRequest;
use crate::store::config::ConsoleConfig;
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, Db};
use crate::store::sandbox::{self, Durability};
use requests::Job;

/// Where the worker connects.
#[derive(Debug, Clone)]
pub enum WorkerTarget {
    /// A database URL.
    Url(ConnectSettings),
    /// The sandbox; the settings carry the session settings, the URL is filled in once
    /// the sandbox runs.
    Sandbox(ConnectSettings),
}

/// The UI's ends of the channels.
pub struct WorkerHandle {
    /// Commands to the worker.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Events from the worker.
    pub events: mpsc::UnboundedReceiver<DbEvent>,
    /// The worker task.
    pub task: JoinHandle<()>,
}

/// Starts the worker on the current tokio runtime.
pub fn spawn(target: WorkerTarget, config: ConsoleConfig) -> WorkerHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut w = Worker::new(target, config, ev_tx);
        w.run(cmd_rx).await;
    });
    WorkerHandle { commands: cmd_tx, events: ev_rx, task }
}

/// What a running request can be cancelled through.
enum Cancel {
    /// Its backend, once it has one, and whether the operator asked to cancel it.
    Backend { pid: Option<i32>, requested: bool },
    /// Its task (behind a transaction pooler, where a request has no backend of its own).
    Abort(tokio::task::AbortHandle),
    /// A batch's stop flag.
    Batch(Arc<Progress>),
}

type Running = Arc<Mutex<HashMap<RequestId, Cancel>>>;

struct Worker {
    target: WorkerTarget,
    config: ConsoleConfig,
    events: mpsc::UnboundedSender<DbEvent>,
    settings: Option<ConnectSettings>,
    pool: Option<Db>,
    running: Running,
    audit: AuditState,
    audit_running: Arc<AtomicBool>,
    last_latency: Option<u32>,
    attempt: u32,
    /// The incident journal to keep copied to the database.
    journal: Option<(String, std::path::PathBuf)>,
    /// Behind a transaction pooler: the audit log's last id and maintenance mode as last
    /// polled.
    polled: (Option<i64>, Option<MaintenanceState>),
}

fn latency_bucket(ms: f64) -> u32 {
    // Coarse, so that a jittering round trip does not redraw an idle screen.
    [1u32, 2, 5, 10, 20, 50, 100, 200, 500, 1000].into_iter().find(|b| ms <= f64::from(*b)).unwrap_or(5000)
}

impl Worker {
    fn new(target: WorkerTarget, config: ConsoleConfig, events: mpsc::UnboundedSender<DbEvent>) -> Self {
        Worker {
            target,
            config,
            events,
            settings: None,
            pool: None,
            running: Arc::new(Mutex::new(HashMap::new())),
            audit: Arc::new(Mutex::new((None, None))),
            audit_running: Arc::new(AtomicBool::new(false)),
            last_latency: None,
            attempt: 0,
            journal: None,
            polled: (None, None),
        }
    }

    fn send(&self, ev: DbEvent) {
        let _ = self.events.send(ev);
    }

    async fn connect(&mut self) -> Result<()> {
        let settings = match &self.target {
            WorkerTarget::Url(s) => s.clone(),
            WorkerTarget::Sandbox(template) => {
                self.send(DbEvent::Connection(ConnState::Connecting { detail: "starting the sandbox".into() }));
                let cluster = tokio::task::spawn_blocking(sandbox::sandbox_cluster)
                    .await
                    .map_err(|e| Error::Sandbox(e.to_string()))??;
                let events = self.events.clone();
                let say = move |m: &str| {
                    let _ = events.send(DbEvent::Connection(ConnState::Connecting { detail: m.to_string() }));
                };
                let url = crate::store::target::ensure_ready(&cluster, Durability::Durable, &say).await?;
                ConnectSettings { url, is_sandbox: true, ..template.clone() }
            }
        };
        let pool = settings.pool(8).await?;
        self.send(DbEvent::Target(settings.label()));
        self.settings = Some(settings);
        self.pool = Some(pool);
        Ok(())
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let heard = Arc::new(Heard::default());
        let mut listener: Option<JoinHandle<()>> = None;
        let mut refresh = tokio::time::interval(self.config.refresh);
        let mut audit = tokio::time::interval(self.config.audit);
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        let mut poll = tokio::time::interval(Duration::from_secs(2));
        let mut retry_at = tokio::time::Instant::now();
        // A notification marks the dashboard (or maintenance mode) stale; each is read
        // again at most every 300 ms, however many notifications came.
        let mut dashboard_due: Option<tokio::time::Instant> = None;
        let mut maintenance_due: Option<tokio::time::Instant> = None;
        loop {
            if self.pool.is_none() && tokio::time::Instant::now() >= retry_at {
                match self.connect().await {
                    Ok(()) => {
                        self.attempt = 0;
                        self.last_latency = None;
                        self.ping().await;
                        self.maintenance().await;
                        listener = self.listen(heard.clone()).await;
                        dashboard_due = Some(tokio::time::Instant::now());
                        // What was journalled while the database was away goes over now.
                        self.sync_journal();
                    }
                    Err(e) => {
                        self.attempt += 1;
                        let wait = (1u64 << self.attempt.min(5)).min(30);
                        retry_at = tokio::time::Instant::now() + Duration::from_secs(wait);
                        self.send(DbEvent::Connection(ConnState::Down { error: e.to_string(), retry_in: wait }));
                    }
                }
            }
            let wake = dashboard_due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let reconnect =
                if self.pool.is_none() { retry_at } else { tokio::time::Instant::now() + Duration::from_secs(3600) };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::RefreshDashboard) => dashboard_due = Some(tokio::time::Instant::now()),
                    Some(Command::AuditNow) => self.background_audit(),
                    Some(c) => self.handle(c),
                },
                _ = heard.wake.notified() => {
                    let soon = tokio::time::Instant::now() + Duration::from_millis(300);
                    if heard.maintenance.swap(false, Ordering::AcqRel) {
                        maintenance_due = Some(maintenance_due.map_or(soon, |d| d.min(soon)));
                    }
                    if heard.audit.swap(false, Ordering::AcqRel) {
                        dashboard_due = Some(dashboard_due.map_or(soon, |d| d.min(soon)));
                    }
                }
                _ = tokio::time::sleep_until(maintenance_due.unwrap_or(reconnect)), if maintenance_due.is_some() => {
                    maintenance_due = None;
                    self.maintenance().await;
                }
                _ = tokio::time::sleep_until(wake) => {
                    dashboard_due = None;
                    self.dashboard();
                }
                _ = tokio::time::sleep_until(reconnect) => {}
                _ = refresh.tick() => {
                    if self.pool.is_some() {
                        self.dashboard();
                        self.maintenance().await;
                    }
                }
                _ = audit.tick() => self.background_audit(),
                _ = poll.tick(), if self.pool.as_ref().is_some_and(Db::transaction_pooled) => {
                    if self.poll_changes().await {
                        let soon = tokio::time::Instant::now() + Duration::from_millis(300);
                        dashboard_due = Some(dashboard_due.map_or(soon, |d| d.min(soon)));
                    }
                }
                _ = ping.tick() => {
                    if self.pool.is_some() && !self.ping().await {
                        if let Some(l) = listener.take() {
                            l.abort();
                        }
                        self.pool = None;
                        retry_at = tokio::time::Instant::now();
                    }
                }
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        let cancels: Vec<RequestId> = self.running.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
        for id in cancels {
            self.cancel(id);
        }
        if let Some(pool) = self.pool.take() {
            // Give cancellations a moment to reach the server.
            tokio::time::sleep(Duration::from_millis(50)).await;
            pool.close().await;
        }
    }

    async fn ping(&mut self) -> bool {
        let Some(pool) = self.pool.clone() else { return false };
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), db::ping(&pool)).await {
            Ok(Ok(())) => {
                let bucket = latency_bucket(started.elapsed().as_secs_f64() * 1000.0);
                if self.last_latency != Some(bucket) {
                    self.last_latency = Some(bucket);
                    self.send(DbEvent::Connection(ConnState::Up { latency_ms: bucket }));
                }
                true
            }
            Ok(Err(e)) => {
                self.last_latency = None;
                self.send(DbEvent::Connection(ConnState::Down { error: e.to_string(), retry_in: 0 }));
                false
            }
            Err(_) => {
                self.last_latency = None;
                self.send(DbEvent::Connection(ConnState::Down { error: "no answer within 5 s".into(), retry_in: 0 }));
                false
            }
        }
    }

    async fn maintenance(&self) {
        if let Some(pool) = &self.pool
            && let Ok(m) = db::maintenance_state(pool).await
        {
            self.send(DbEvent::Maintenance(m));
        }
    }

    /// Behind a transaction pooler: what LISTEN would have said. Sends maintenance mode
    /// when it changed; true when the audit log grew.
    async fn poll_changes(&mut self) -> bool {
        let Some(pool) = self.pool.clone() else { return false };
        if let Ok(m) = db::maintenance_state(&pool).await
            && self.polled.1.as_ref() != Some(&m)
        {
            self.polled.1 = Some(m.clone());
            self.send(DbEvent::Maintenance(m));
        }
        match db::audit_log_mark(&pool).await {
            Ok(mark) if self.polled.0 != Some(mark) => {
                let first = self.polled.0.is_none();
                self.polled.0 = Some(mark);
                !first
            }
            _ => false,
        }
    }

    async fn listen(&self, heard: Arc<Heard>) -> Option<JoinHandle<()>> {
        let pool = self.pool.clone()?;
        // A transaction pooler keeps no LISTEN: the run loop polls instead.
        let pool = pool.session_pool("LISTEN").ok()?.clone();
        let mut l = PgListener::connect_with(&pool).await.ok()?;
        l.listen_all(["order_audit", "maintenance_mode"]).await.ok()?;
        Some(tokio::spawn(async move {
            while let Ok(n) = l.recv().await {
                let flag = if n.channel() == "maintenance_mode" { &heard.maintenance } else { &heard.audit };
                flag.store(true, Ordering::Release);
                heard.wake.notify_one();
            }
        }))
    }

    fn dashboard(&self) {
        let Some(pool) = self.pool.clone() else { return };
        let (events, config, audit) = (self.events.clone(), self.config.clone(), self.audit.clone());
        tokio::spawn(async move {
            if let Ok(d) = dashboard_data(&pool, &config, &audit).await {
                let _ = events.send(DbEvent::Dashboard(d));
            }
        });
    }

    fn background_audit(&self) {
        let Some(pool) = self.pool.clone() else { return };
        // One at a time: on a book where an audit outlasts the interval, ticks must not
        // pile audits up on the server.
        let Some(running) = AuditRunning::start(&self.audit_running) else { return };
        let (events, config, audit) = (self.events.clone(), self.config.clone(), self.audit.clone());
        tokio::spawn(async move {
            let _running = running;
            let Ok(v) = db::ledger_audit(&pool).await else { return };
            if let Ok(mut a) = audit.lock() {
                *a = (Some(v.len()), Some(Utc::now()));
            }
            // A viewer may not take checkpoints, nor a session behind a transaction pooler;
            // the next audit is then just slower.
            if let (true, Ok(session)) = (v.is_empty(), pool.session_pool("a checkpoint")) {
                let _ = db::refresh_audit_checkpoint(session, false).await;
            }
            // Show the result now: a violation raises the data-inconsistency alert.
            if let Ok(d) = dashboard_data(&pool, &config, &audit).await {
                let _ = events.send(DbEvent::Dashboard(d));
            }
        });
    }

    fn sync_journal(&self) {
        let (Some(pool), Some((incident, path))) = (self.pool.clone(), self.journal.clone()) else { return };
        let events = self.events.clone();
        tokio::spawn(async move {
            let result = async {
                let entries =
                    tokio::task::spawn_blocking(move || crate::store::journal::Journal::open(path)?.entries())
                        .await
                        .map_err(|e| Error::task("reading the journal", e))??;
                crate::ops::incident::copy_new_entries(&pool, &incident, entries).await
            }
            .await;
            let _ = events.send(DbEvent::JournalSynced(result.map(|n| n.max(0) as u64).map_err(|e| e.to_string())));
        });
    }

    fn cancel(&self, id: RequestId) {
        let pids = self.running.lock().ok().map_or_else(Vec::new, |mut m| match m.get_mut(&id) {
            Some(Cancel::Batch(p)) => {
                // No new order, no retry; and the calls in flight are cancelled on the
                // server (each is one transaction: a cancelled one changes nothing).
                p.cancel.store(true, Ordering::Relaxed);
                p.backend_pids()
            }
            Some(Cancel::Backend { pid: Some(pid), requested }) => {
                *requested = true;
                vec![*pid]
            }
            Some(Cancel::Abort(task)) => {
                // Its connection is closed mid-transaction: nothing of it commits, and the
                // server abandons the statement when it sees the client gone. The operator
                // asked for it: no failure is recorded (the task is gone).
                task.abort();
                m.remove(&id);
                let _ = self.events.send(DbEvent::Cancelled { id });
                Vec::new()
            }
            Some(Cancel::Backend { pid: None, .. }) => {
                // Not started yet: it will see it was removed and not run.
                m.remove(&id);
                Vec::new()
            }
            None => Vec::new(),
        });
        if let Some(pool) = self.pool.clone()
            && !pids.is_empty()
        {
            tokio::spawn(async move {
                for pid in pids {
                    let _ = db::cancel_backend(&pool, pid).await;
                }
            });
        }
    }

    fn handle(&mut self, cmd: Command) {
        if let Command::Cancel { id } = cmd {
            self.cancel(id);
            return;
        }
        if let Command::SyncJournal { incident, path } = cmd {
            self.journal = Some((incident, path));
            self.sync_journal();
            return;
        }
        let (Some(pool), Some(settings)) = (self.pool.clone(), self.settings.clone()) else {
            if let Some(id) = request_id(&cmd) {
                self.send(DbEvent::Failed { id, error: "the database is not reachable; retrying".into() });
            }
            return;
        };
        let job = Job { pool, running: self.running.clone(), events: self.events.clone() };
        match cmd {
            Command::LoadOrders { id, query, page, limit } => requests::load_orders(job, id, query, page, limit),
            Command::CountOrders { id, query } => requests::count_orders(job, id, query),
            Command::Precheck { id, order, user } => requests::precheck(job, id, order, user),
            Command::Rollback { id, order, user, reason, baseline, group, operation, waive_journal } => {
                requests::rollback(
                    job,
                    id,
                    RollbackRequest { order, user, reason, baseline, group, operation },
                    waive_journal,
                )
            }
            Command::PreviewBatch { id, target } => requests::preview_batch(job, id, target),
            Command::RunBatch { id, items, reason, operation, waive_journal } => {
                requests::run_batch(job, settings, id, items, reason, operation, waive_journal)
            }
            Command::SetMaintenance { id, on, reason } => requests::set_maintenance(job, id, on, reason),
            Command::Cancel { .. }
            | Command::RefreshDashboard
            | Command::AuditNow
            | Command::Shutdown
            | Command::SyncJournal { .. } => {}
        }
    }
}

/// What the listener heard since the run loop last looked: flags, not a queue. Any login
/// may NOTIFY on these channels, so a flood must cost one refresh, not one per message.
#[derive(Default)]
struct Heard {
    audit: AtomicBool,
    maintenance: AtomicBool,
    wake: tokio::sync::Notify,
}

type AuditState = Arc<Mutex<(Option<usize>, Option<chrono::DateTime<Utc>>)>>;

/// The background audit in progress; the flag is cleared when it is dropped, however the
/// audit ended.
struct AuditRunning(Arc<AtomicBool>);

impl AuditRunning {
    fn start(flag: &Arc<AtomicBool>) -> Option<Self> {
        (!flag.swap(true, Ordering::AcqRel)).then(|| AuditRunning(flag.clone()))
    }
}

impl Drop for AuditRunning {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn dashboard_data(pool: &Db, config: &ConsoleConfig, audit: &AuditState) -> Result<DashboardData> {
    let now = Utc::now();
    let since = now - config.metrics_window;
    let records = db::rollback_records(pool, since).await?;
    let failed_postchecks = db::failed_postchecks(pool, since).await?;
    let (violations, audit_at) = audit.lock().map(|a| *a).unwrap_or((None, None));
    let m = metrics::compute(
        &records,
        violations.unwrap_or(0) as u64,
        failed_postchecks.max(0) as u64,
        now,
        &config.thresholds,
    );
    Ok(DashboardData {
        metrics: m,
        per_minute: db::rollbacks_per_minute(pool, 60).await?,
        in_flight: db::rollbacks_in_flight(pool).await?.max(0) as u64,
        audit_violations: violations,
        audit_at,
    })
}

fn request_id(cmd: &Command) -> Option<RequestId> {
    match cmd {
        Command::LoadOrders { id, .. }
        | Command::CountOrders { id, .. }
        | Command::Precheck { id, .. }
        | Command::Rollback { id, .. }
        | Command::PreviewBatch { id, .. }
        | Command::RunBatch { id, .. }
        | Command::SetMaintenance { id, .. }
        | Command::Cancel { id } => Some(*id),
        Command::RefreshDashboard | Command::AuditNow | Command::Shutdown | Command::SyncJournal { .. } => None,
    }
}
