//! The console's database worker: the only part of the console that touches the database.
//! It owns the pool, answers `Command`s with `DbEvent`s, listens on `order_audit` and
//! `maintenance_mode` (behind a transaction pooler, which keeps no LISTEN, it polls the
//! audit log and maintenance mode every two seconds instead, and the header says so),
//! refreshes the dashboard and audits the ledger in the background, and reconnects with
//! backoff when the database goes away. Every request runs in its own task; cancelling
//! one cancels its query on the server and throws its connection away (behind a
//! transaction pooler: aborts the task, whose connection is closed mid-transaction).
//!
//! Whether the database answers is the health probe's to say (`health`: a connection of
//! its own, once a second, bounded by short timeouts); the run loop drops the pool when
//! the probe finds the database gone, and reconnects as soon as it answers again. The run
//! loop itself never waits on the network: connecting, listening and reading maintenance
//! mode run in tasks of their own, so a dead or stopped server cannot hold up a command
//! (a cancel, above all).

mod approvals;
mod health;
mod replica;
mod requests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::console::protocol::{Command, ConnState, DashboardData, DbEvent, RequestId};
use crate::core::error::{Error, Result};
use crate::core::metrics;
use crate::ops::batch::Progress;
use crate::ops::rollback::RollbackRequest;
use crate::store::config::ConsoleConfig;
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, Db};
use crate::store::sandbox::{self, Durability};
use health::Verdict;
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
    /// Its backend, once it has one, and whether the operator asked to cancel it; `on`, the
    /// standby's pool when the backend is there (None: the primary).
    Backend { pid: Option<i32>, requested: bool, on: Option<Db> },
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
    attempt: u32,
    /// What the health probe and the run loop share (the outage, whether the pool is ready).
    health: Arc<health::Shared>,
    /// Maintenance mode is read one query at a time, so that the answers arrive in the
    /// order the database gave them: an older state after a newer one would be journalled
    /// as a switch seen.
    maintenance_turn: Arc<tokio::sync::Mutex<()>>,
    /// The incident journal to keep copied to the database.
    journal: Option<(String, std::path::PathBuf)>,
    /// Behind a transaction pooler: the audit log's last id as last polled.
    polled: Option<i64>,
    /// The standby the reads that decide nothing may go to (with a replica URL), and the
    /// task measuring its lag.
    replica: Option<(Arc<replica::Replica>, JoinHandle<()>)>,
}

/// How long reconnecting to a database URL may take before it is tried afresh (the
/// sandbox's first start, with initdb and seeding, is not bounded).
const CONNECT_WITHIN: Duration = Duration::from_secs(20);

/// How long a read of maintenance mode, or a transaction pooler's poll, may take.
const READ_WITHIN: Duration = Duration::from_secs(5);

/// After connecting, the work nobody waits for (the ledger audit and its checkpoint, the
/// journal's copy, the worker's own dashboard read and the one the console asks for with the
/// first page) waits this long, so that the first page does not queue behind it for the
/// server's CPU and for new connections of the pool.
const QUIET_AFTER_CONNECT: Duration = Duration::from_millis(400);

/// After connecting, listening and reading maintenance mode wait for the first page of
/// orders to be asked for (it then gets the pool's open connection), or this long.
const FIRST_PAGE_FIRST: Duration = Duration::from_millis(100);

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
            attempt: 0,
            health: Arc::new(health::Shared::default()),
            maintenance_turn: Arc::new(tokio::sync::Mutex::new(())),
            journal: None,
            polled: None,
            replica: None,
        }
    }

    fn send(&self, ev: DbEvent) {
        let _ = self.events.send(ev);
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let heard = Arc::new(Heard::default());
        let mut listener: Option<JoinHandle<()>> = None;
        let mut probe: Option<JoinHandle<()>> = None;
        let (verdict_tx, mut verdicts) = tokio::sync::watch::channel(Verdict::Unknown);
        let mut connecting: Option<JoinHandle<Result<Connected>>> = None;
        let mut refresh = tokio::time::interval(self.config.refresh);
        let mut audit = tokio::time::interval(self.config.audit);
        // Its first tick waits for the first connection (connecting runs beside the loop);
        // ticks missed during an outage are not made up in a burst.
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut poll = tokio::time::interval(Duration::from_secs(2));
        let mut retry_at = tokio::time::Instant::now();
        // A notification marks the dashboard (or maintenance mode) stale; each is read
        // again at most every 300 ms, however many notifications came.
        let mut dashboard_due: Option<tokio::time::Instant> = None;
        let mut maintenance_due: Option<tokio::time::Instant> = None;
        // The journal's copy after a connection, once the first page had its turn.
        let mut journal_due: Option<tokio::time::Instant> = None;
        // Listening and maintenance mode after a connection: when the first page is asked
        // for, or at this time.
        let mut watch_due: Option<tokio::time::Instant> = None;
        // The end of the quiet after the last connection.
        let mut quiet_until = tokio::time::Instant::now();
        loop {
            if self.pool.is_none() && connecting.is_none() && tokio::time::Instant::now() >= retry_at {
                // During an outage the header keeps saying what failed and since when,
                // not "starting the sandbox" at every attempt.
                let announce = !self.health.in_outage();
                connecting = Some(tokio::spawn(connect(self.target.clone(), self.events.clone(), announce)));
            }
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let wake = dashboard_due.unwrap_or(far);
            let reconnect = if self.pool.is_none() && connecting.is_none() { retry_at } else { far };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    // Not before the first page's turn after connecting (the console asks
                    // for both at once then).
                    Some(Command::RefreshDashboard) => dashboard_due = Some(tokio::time::Instant::now().max(quiet_until)),
                    Some(Command::AuditNow) => self.background_audit(),
                    Some(c) => {
                        let page = matches!(c, Command::LoadOrders { .. });
                        self.handle(c);
                        if page && watch_due.take().is_some() {
                            self.maintenance();
                            if let Some(l) = std::mem::replace(&mut listener, self.listen(heard.clone())) {
                                l.abort();
                            }
                        }
                    }
                },
                done = async {
                    match connecting.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                } => {
                    connecting = None;
                    match done.map_err(|e| Error::task("connecting", e)).and_then(|r| r) {
                        Ok(Connected { settings, pool, round_trip }) => {
                            crate::console::startup::mark("connected");
                            self.attempt = 0;
                            self.send(DbEvent::Target(settings.label()));
                            // The pool just answered (its check of the operator's name, then
                            // a timed round trip): the header may say so now, and the first
                            // page be asked for, without waiting for the probe's own
                            // connection. The probe goes on saying what it finds.
                            self.health.outage_over();
                            self.send(DbEvent::Connection(ConnState::Up {
                                latency_ms: health::latency_bucket(round_trip.as_secs_f64() * 1000.0),
                            }));
                            if probe.is_none() {
                                let (shared, events) = (self.health.clone(), self.events.clone());
                                probe = Some(health::spawn(settings.clone(), shared, events, verdict_tx.clone()));
                            }
                            if self.replica.is_none()
                                && let Some(url) = self.config.replica_url.clone()
                            {
                                let shared = Arc::new(replica::Replica::default());
                                let max_lag = self.config.replica_max_lag;
                                let task = replica::spawn(
                                    settings.clone(),
                                    url.expose().to_string(),
                                    max_lag,
                                    shared.clone(),
                                    self.events.clone(),
                                );
                                self.replica = Some((shared, task));
                            }
                            self.settings = Some(settings);
                            self.pool = Some(pool);
                            self.health.pool_ready.store(true, Ordering::Release);
                            // The probe looks now too: its own connection is then open
                            // before anything can stop the server, and a server that stops
                            // answering shows by the query's timeout.
                            self.health.probe_now.notify_one();
                            watch_due = Some(tokio::time::Instant::now() + FIRST_PAGE_FIRST);
                            let quiet = tokio::time::Instant::now() + QUIET_AFTER_CONNECT;
                            quiet_until = quiet;
                            // The console asks for the dashboard itself when it first
                            // connects; this read is for a reconnection.
                            dashboard_due = Some(dashboard_due.map_or(quiet, |d| d.min(quiet)));
                            // What was journalled while the database was away goes over soon.
                            journal_due = Some(quiet);
                            audit.reset_at(quiet);
                        }
                        Err(e) => {
                            self.attempt += 1;
                            let wait = (1u64 << self.attempt.min(5)).min(30);
                            retry_at = tokio::time::Instant::now() + Duration::from_secs(wait);
                            let since = self.health.outage_since(Utc::now());
                            self.send(DbEvent::Connection(ConnState::Down { error: e.to_string(), retry_in: wait, since }));
                        }
                    }
                }
                _ = heard.wake.notified() => {
                    let soon = tokio::time::Instant::now() + Duration::from_millis(300);
                    if heard.maintenance.swap(false, Ordering::AcqRel) {
                        maintenance_due = Some(maintenance_due.map_or(soon, |d| d.min(soon)));
                    }
                    if heard.audit.swap(false, Ordering::AcqRel) {
                        dashboard_due = Some(dashboard_due.map_or(soon, |d| d.min(soon)));
                    }
                }
                Ok(()) = verdicts.changed() => {
                    let verdict = *verdicts.borrow_and_update();
                    match verdict {
                        Verdict::Silent if self.pool.is_some() => {
                            // Requests fail at once ("not reachable") instead of waiting on
                            // a dead pool; reconnecting restarts the sandbox when it died.
                            if let Some(l) = listener.take() {
                                l.abort();
                            }
                            self.health.pool_ready.store(false, Ordering::Release);
                            self.pool = None;
                            retry_at = tokio::time::Instant::now();
                        }
                        // It answers again: reconnect now, not at the end of the backoff.
                        Verdict::Answers if self.pool.is_none() => retry_at = tokio::time::Instant::now(),
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(watch_due.unwrap_or(reconnect)), if watch_due.is_some() => {
                    watch_due = None;
                    self.maintenance();
                    if let Some(l) = std::mem::replace(&mut listener, self.listen(heard.clone())) {
                        l.abort();
                    }
                }
                _ = tokio::time::sleep_until(journal_due.unwrap_or(reconnect)), if journal_due.is_some() => {
                    journal_due = None;
                    self.sync_journal();
                }
                _ = tokio::time::sleep_until(maintenance_due.unwrap_or(reconnect)), if maintenance_due.is_some() => {
                    maintenance_due = None;
                    self.maintenance();
                }
                _ = tokio::time::sleep_until(wake) => {
                    dashboard_due = None;
                    self.dashboard();
                }
                _ = tokio::time::sleep_until(reconnect) => {}
                _ = refresh.tick() => {
                    if self.pool.is_some() {
                        self.dashboard();
                        self.maintenance();
                    }
                }
                _ = audit.tick(), if self.pool.is_some() => self.background_audit(),
                _ = poll.tick(), if self.pool.as_ref().is_some_and(Db::transaction_pooled) => {
                    if tokio::time::timeout(READ_WITHIN, self.poll_changes()).await.unwrap_or(false) {
                        let soon = tokio::time::Instant::now() + Duration::from_millis(300);
                        dashboard_due = Some(dashboard_due.map_or(soon, |d| d.min(soon)));
                    }
                }
            }
        }
        for task in [listener, probe].iter().flatten() {
            task.abort();
        }
        if let Some((shared, task)) = self.replica.take() {
            task.abort();
            if let Some(pool) = shared.reads() {
                pool.close().await;
            }
        }
        if let Some(task) = connecting {
            task.abort();
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

    /// Reads maintenance mode in a task of its own (see `maintenance_turn`).
    fn maintenance(&self) {
        let Some(pool) = self.pool.clone() else { return };
        let (events, turn) = (self.events.clone(), self.maintenance_turn.clone());
        tokio::spawn(async move {
            let _turn = turn.lock().await;
            if let Ok(Ok(m)) = tokio::time::timeout(READ_WITHIN, db::maintenance_state(&pool)).await {
                let _ = events.send(DbEvent::Maintenance(m));
            }
            // A database before migration 19 has no requests: nothing to show.
            if let Ok(Ok(list)) = tokio::time::timeout(READ_WITHIN, db::approval_requests(&pool, false, 20)).await {
                let _ = events.send(DbEvent::Approvals(list));
            }
        });
    }

    /// Behind a transaction pooler: what LISTEN would have said. Sends maintenance mode as
    /// read; true when the audit log grew.
    async fn poll_changes(&mut self) -> bool {
        let Some(pool) = self.pool.clone() else { return false };
        let turn = self.maintenance_turn.clone();
        let _turn = turn.lock().await;
        // Sent at every poll, not only when it differs from the last poll's: a switch made
        // through this worker between two polls is not seen by them, and the next change
        // back would then look like no change. The console ignores a state it already shows.
        if let Ok(m) = db::maintenance_state(&pool).await {
            self.send(DbEvent::Maintenance(m));
        }
        match db::audit_log_mark(&pool).await {
            Ok(mark) if self.polled != Some(mark) => {
                let first = self.polled.is_none();
                self.polled = Some(mark);
                !first
            }
            _ => false,
        }
    }

    /// LISTENs in a task of its own (connecting may wait on a server that stopped).
    fn listen(&self, heard: Arc<Heard>) -> Option<JoinHandle<()>> {
        // A transaction pooler keeps no LISTEN: the run loop polls instead.
        let pool = self.pool.as_ref()?.session_pool("LISTEN").ok()?.clone();
        Some(tokio::spawn(async move {
            let Ok(mut l) = PgListener::connect_with(&pool).await else { return };
            // The breaker's state is read with maintenance mode's: its switch is heard the same way.
            // Approval requests are read with it too: a request filed or decided anywhere shows at once.
            if l.listen_all(["order_audit", "maintenance_mode", "circuit_breaker", "approvals"]).await.is_err() {
                return;
            }
            while let Ok(n) = l.recv().await {
                let flag = match n.channel() {
                    "maintenance_mode" | "circuit_breaker" | "approvals" => &heard.maintenance,
                    _ => &heard.audit,
                };
                flag.store(true, Ordering::Release);
                heard.wake.notify_one();
            }
        }))
    }

    fn dashboard(&self) {
        let Some(pool) = self.pool.clone() else { return };
        let (events, config, audit) = (self.events.clone(), self.config.clone(), self.audit.clone());
        let replica = self.replica.as_ref().map(|(r, _)| r.clone());
        tokio::spawn(async move {
            if let Ok(d) = dashboard_data(&pool, replica.as_deref(), &config, &audit).await {
                let _ = events.send(DbEvent::Dashboard(d));
            }
        });
    }

    /// The standby's pool while reads may go to it.
    fn reads(&self) -> Option<Db> {
        self.replica.as_ref().and_then(|(r, _)| r.reads())
    }

    fn background_audit(&self) {
        let Some(pool) = self.pool.clone() else { return };
        // One at a time: on a book where an audit outlasts the interval, ticks must not
        // pile audits up on the server.
        let Some(running) = AuditRunning::start(&self.audit_running) else { return };
        let (events, config, audit) = (self.events.clone(), self.config.clone(), self.audit.clone());
        let replica = self.replica.as_ref().map(|(r, _)| r.clone());
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
            if let Ok(d) = dashboard_data(&pool, replica.as_deref(), &config, &audit).await {
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
                crate::ops::incident::sync_entries(&pool, &incident, entries).await
            }
            .await;
            let _ = events.send(DbEvent::JournalSynced(result.map_err(|e| e.to_string())));
        });
    }

    fn cancel(&self, id: RequestId) {
        let pids = self.running.lock().ok().map_or_else(Vec::new, |mut m| match m.get_mut(&id) {
            Some(Cancel::Batch(p)) => {
                // No new order, no retry; and the calls in flight are cancelled on the
                // server (each is one transaction: a cancelled one changes nothing).
                p.cancel.store(true, Ordering::Relaxed);
                p.backend_pids().into_iter().map(|pid| (pid, None)).collect()
            }
            Some(Cancel::Backend { pid: Some(pid), requested, on }) => {
                *requested = true;
                vec![(*pid, on.clone())]
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
                // A read on the standby is cancelled there.
                for (pid, on) in pids {
                    let _ = db::cancel_backend(on.as_ref().unwrap_or(&pool), pid).await;
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
        let job = Job {
            pool,
            reads: self.reads(),
            replica: self.replica.as_ref().map(|(r, _)| r.clone()),
            running: self.running.clone(),
            events: self.events.clone(),
            journal: self.journal.clone(),
        };
        match cmd {
            Command::LoadOrders { id, query, sort, page, limit } => {
                requests::load_orders(job, id, query, sort, page, limit)
            }
            Command::OrdersPerMinute { id, query } => requests::orders_per_minute(job, id, query),
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
            Command::RunBatch { id, items, reason, operation, waive_journal, preview } => {
                let run = requests::BatchRun { items, reason, operation, waive_journal, preview };
                requests::run_batch(job, settings, id, run)
            }
            Command::SetMaintenance { id, on, reason, symbol } => {
                requests::set_maintenance(job, id, on, reason, symbol)
            }
            Command::BlastRadius { id } => requests::blast_radius(job, id),
            Command::ReleasePlan { id } => requests::release_plan(job, id),
            Command::SwitchBreaker { id, open, reason } => requests::switch_breaker(job, id, open, reason),
            Command::GatherEvidence { id, incident, touched } => requests::gather_evidence(job, id, incident, touched),
            Command::ReleaseRollback { id, to, reason } => requests::release_rollback(job, id, to, reason),
            Command::DecideApproval { id, request, approve, reason } => {
                approvals::decide(job, id, request, approve, reason)
            }
            Command::Cancel { .. }
            | Command::RefreshDashboard
            | Command::AuditNow
            | Command::Shutdown
            | Command::SyncJournal { .. } => {}
        }
    }
}

/// Connects to the target (starting the sandbox first, when it is the target): the
/// settings, filled in, and a pool checked as `ConnectSettings::pool` checks it. Progress
/// is said as `Connecting` when `announce`.
async fn connect(target: WorkerTarget, events: mpsc::UnboundedSender<DbEvent>, announce: bool) -> Result<Connected> {
    let say = move |m: &str| {
        if announce {
            let _ = events.send(DbEvent::Connection(ConnState::Connecting { detail: m.to_string() }));
        }
    };
    let settings = match target {
        WorkerTarget::Url(s) => s,
        WorkerTarget::Sandbox(template) => {
            say("starting the sandbox");
            let cluster = tokio::task::spawn_blocking(sandbox::sandbox_cluster)
                .await
                .map_err(|e| Error::Sandbox(e.to_string()))??;
            let url = crate::store::target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            crate::console::startup::mark("sandbox ready");
            ConnectSettings { url, is_sandbox: true, ..template }
        }
    };
    // A server that stopped answering leaves a connect waiting: try afresh instead.
    let pool = tokio::time::timeout(CONNECT_WITHIN, settings.pool(8))
        .await
        .map_err(|_| Error::Unreachable(format!("no connection within {} s", CONNECT_WITHIN.as_secs())))??;
    let started = std::time::Instant::now();
    tokio::time::timeout(health::ANSWER_WITHIN, db::ping(&pool))
        .await
        .map_err(|_| Error::Unreachable(format!("no answer within {} ms", health::ANSWER_WITHIN.as_millis())))??;
    Ok(Connected { settings, pool, round_trip: started.elapsed() })
}

/// A pool ready for requests, where it leads, and the round trip of a query on it.
struct Connected {
    settings: ConnectSettings,
    pool: Db,
    round_trip: Duration,
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

/// The dashboard's figures: read on the standby while it may be used (a failure there sets
/// it aside and reads the primary), except the rollbacks in flight, which only the
/// primary's sessions show.
async fn dashboard_data(
    pool: &Db,
    replica: Option<&replica::Replica>,
    config: &ConsoleConfig,
    audit: &AuditState,
) -> Result<DashboardData> {
    if let Some(r) = replica
        && let Some(standby) = r.reads()
    {
        match dashboard_reads(&standby, config).await {
            Ok(reads) => return dashboard_from(pool, reads, config, audit).await,
            Err(e) => {
                tracing::warn!("the dashboard's read on the standby failed, read on the primary: {e}");
                r.failed();
            }
        }
    }
    let reads = dashboard_reads(pool, config).await?;
    dashboard_from(pool, reads, config, audit).await
}

/// What the dashboard reads from the book: rollback records, failed post-checks and
/// rollbacks per minute, at one instant.
type DashboardReads = (chrono::DateTime<Utc>, Vec<crate::core::contract::RollbackRecord>, i64, Vec<u64>);

async fn dashboard_reads(on: &Db, config: &ConsoleConfig) -> Result<DashboardReads> {
    let now = Utc::now();
    let since = now - config.metrics_window;
    let records = db::rollback_records(on, since).await?;
    let failed_postchecks = db::failed_postchecks(on, since).await?;
    let per_minute = db::rollbacks_per_minute(on, 60).await?;
    Ok((now, records, failed_postchecks, per_minute))
}

async fn dashboard_from(
    pool: &Db,
    (now, records, failed_postchecks, per_minute): DashboardReads,
    config: &ConsoleConfig,
    audit: &AuditState,
) -> Result<DashboardData> {
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
        per_minute,
        in_flight: db::rollbacks_in_flight(pool).await?.max(0) as u64,
        audit_violations: violations,
        audit_at,
    })
}

fn request_id(cmd: &Command) -> Option<RequestId> {
    match cmd {
        Command::LoadOrders { id, .. }
        | Command::OrdersPerMinute { id, .. }
        | Command::CountOrders { id, .. }
        | Command::Precheck { id, .. }
        | Command::Rollback { id, .. }
        | Command::PreviewBatch { id, .. }
        | Command::RunBatch { id, .. }
        | Command::SetMaintenance { id, .. }
        | Command::BlastRadius { id }
        | Command::ReleasePlan { id }
        | Command::GatherEvidence { id, .. }
        | Command::SwitchBreaker { id, .. }
        | Command::ReleaseRollback { id, .. }
        | Command::DecideApproval { id, .. }
        | Command::Cancel { id } => Some(*id),
        Command::RefreshDashboard | Command::AuditNow | Command::Shutdown | Command::SyncJournal { .. } => None,
    }
}
