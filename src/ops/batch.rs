//! Rolling back many orders on a few connections, in chunks: each chunk is one call of
//! `rollback_orders` and one transaction (one round trip and one commit for many orders),
//! each order in a subtransaction of its own, so one refusal or one retryable error does
//! not undo its neighbours; only the orders the server marks retryable (serialization
//! failure, deadlock, lock timeout) are sent again. With a chunk size of 1 each order is its
//! own call of `rollback_execute_order_atomic`, as before. Orders of one user always go to
//! the same connection, one after the other, so workers never queue on each other's profile
//! locks. Running the same batch again rolls back nothing twice.
//!
//! Every order ends done, not done or unknown. A call whose reply never came (the
//! connection broke, the server died) may have committed: its worker reconnects with
//! backoff, ends the old server process (so what it did is settled), reads the order back,
//! and counts it as this batch's only if the audit row carries this batch's id (for a chunk:
//! every order of it, each by its own audit row). Only what cannot be read back, because
//! the server stays away, is reported unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::core::batch::{BatchItem, BatchTally, Outcome, Summary, queues_by_user};
use crate::core::contract::{ChunkAnswer, OrderRollbackState, RollbackResult};
use crate::core::error::{Error, Result};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, DbConn, may_have_committed};

mod prove;

pub use prove::prove;

/// Orders per call by default: most of the commit and round trip amortized, with room
/// under the 64 subtransactions a transaction keeps in shared memory.
pub const DEFAULT_CHUNK_SIZE: usize = 50;

/// The most orders one `rollback_orders` call takes (the function's own bound).
pub const MAX_CHUNK_SIZE: usize = 1000;

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Identifies the batch on every audit row.
    pub batch_id: Uuid,
    /// The rollback reason recorded on every order.
    pub reason: String,
    /// Connections working at once.
    pub concurrency: usize,
    /// Attempts per order for retryable errors.
    pub max_attempts: u32,
    /// How often dashboards are told that the audit log moved.
    pub notify_interval: Duration,
    /// How long a worker whose connection broke keeps trying to reconnect before its
    /// orders are reported (not done, or unknown for the one in flight).
    pub reconnect_for: Duration,
    /// Orders that fail (past their retries) before the batch opens the circuit breaker.
    pub breaker_failures: u64,
    /// Orders per call and per transaction (1: one `rollback_execute_order_atomic` call per
    /// order). Kept under 64: past that many subtransactions with writes in one transaction,
    /// every other session's snapshot overflows to pg_subtrans.
    pub chunk_size: usize,
}

impl BatchOptions {
    /// Defaults for a reason.
    pub fn new(reason: String) -> Self {
        BatchOptions {
            batch_id: Uuid::new_v4(),
            reason,
            concurrency: 4,
            max_attempts: 8,
            notify_interval: Duration::from_millis(500),
            reconnect_for: Duration::from_secs(30),
            breaker_failures: 5,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// Live progress, shared with whoever draws it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Orders finished (any outcome).
    pub done: AtomicU64,
    /// Orders rolled back.
    pub rolled_back: AtomicU64,
    /// Orders refused or failed.
    pub problems: AtomicU64,
    /// Set to stop taking new orders; no retry starts after it. The calls in flight are
    /// cancelled on the server through `backends`.
    pub cancel: AtomicBool,
    /// Set when the circuit breaker refused an order: no new order is sent (each would be
    /// refused too); the calls in flight finish.
    pub breaker: AtomicBool,
    /// Orders that failed past their retries.
    pub failures: AtomicU64,
    /// The backend pids of the batch's connections, one slot per worker (for
    /// `pg_cancel_backend`; 0 while a worker has none).
    pub backends: std::sync::Mutex<Vec<i32>>,
    /// The orders each worker has in flight (their places in the batch: one chunk), for a
    /// report made without waiting for the workers.
    pub in_flight: std::sync::Mutex<Vec<Vec<usize>>>,
    /// Every outcome so far with its place in the batch.
    pub finished: std::sync::Mutex<Vec<(usize, BatchItem, Outcome)>>,
    /// Outcomes not yet shown, for a live display (drained by whoever draws).
    pub recent: std::sync::Mutex<Vec<(BatchItem, Outcome)>>,
}

impl Progress {
    /// Counts an order that finished (any outcome but not attempted) and keeps it for the
    /// live display.
    fn record(&self, place: usize, item: BatchItem, outcome: &Outcome) {
        match outcome {
            Outcome::RolledBack { .. } => {
                self.rolled_back.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Refused { .. } | Outcome::Failed { .. } | Outcome::Unknown { .. } => {
                self.problems.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::AlreadyRolledBack | Outcome::NotAttempted => {}
        }
        if let Ok(mut f) = self.finished.lock() {
            f.push((place, item, outcome.clone()));
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.recent.lock() {
            // Bounded: a display that never drains must not grow memory.
            if recent.len() < 1000 {
                recent.push((item, outcome.clone()));
            }
        }
    }

    /// The backend pids to cancel on the server.
    pub fn backend_pids(&self) -> Vec<i32> {
        self.backends.lock().map(|b| b.iter().copied().filter(|&p| p != 0).collect()).unwrap_or_default()
    }

    fn set_backend(&self, worker: usize, pid: i32) {
        if let Ok(mut b) = self.backends.lock() {
            if b.len() <= worker {
                b.resize(worker + 1, 0);
            }
            b[worker] = pid;
        }
    }

    fn set_in_flight(&self, worker: usize, places: Vec<usize>) {
        if let Ok(mut f) = self.in_flight.lock() {
            if f.len() <= worker {
                f.resize(worker + 1, Vec::new());
            }
            f[worker] = places;
        }
    }

    /// Takes the outcomes recorded since the last call.
    pub fn take_recent(&self) -> Vec<(BatchItem, Outcome)> {
        self.recent.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// One attempt at an order on a live connection, retried for serialization failures,
/// deadlocks and lock timeouts: its outcome, or the error of a call that may have
/// committed (the reply never came), with the attempts made.
async fn roll_back_one(
    conn: &mut DbConn,
    item: BatchItem,
    opts: &BatchOptions,
    retries: &AtomicU64,
    cancel: &AtomicBool,
) -> std::result::Result<Outcome, (Error, u32)> {
    let backoff = |attempt: u32| -> Option<Duration> {
        let wait = backoff(cancel, item.order_id, attempt)?;
        retries.fetch_add(1, Ordering::Relaxed);
        Some(wait)
    };
    let mut retry = db::Retry::new(opts.max_attempts);
    let result = loop {
        let r = db::rollback_order(&mut *conn, item.order_id, item.user_id, &opts.reason).await;
        if !retry.again(&r, backoff).await {
            break r;
        }
    };
    Ok(match (result, retry.attempts()) {
        (Ok(r), attempts) => answered(r, attempts),
        (Err(e), attempts) if may_have_committed(&e) => return Err((e, attempts)),
        // Cancelled meanwhile (perhaps this very call, on the server): its transaction
        // rolled back, so the order is as it was.
        (Err(_), _) if cancel.load(Ordering::Relaxed) => Outcome::NotAttempted,
        (Err(e), _) => Outcome::Failed { error: e.to_string() },
    })
}

/// What the server's answer for an order means: done, found done, or refused.
fn answered(r: RollbackResult, attempts: u32) -> Outcome {
    if r.success {
        return Outcome::RolledBack {
            refunded: r.refunded.unwrap_or_default(),
            margin_released: r.margin_released.unwrap_or_default(),
            attempts,
            reply_lost: false,
        };
    }
    if r.error_code.as_deref() == Some("already_rolled_back") {
        return Outcome::AlreadyRolledBack;
    }
    Outcome::Refused {
        error_code: r.error_code.unwrap_or_else(|| "unknown".into()),
        message: r.message.unwrap_or_default(),
    }
}

/// The wait before sending again after the `attempt`th try, exponential with jitter (from
/// the order's id) so colliding workers fall out of step; none once the batch is cancelled.
fn backoff(cancel: &AtomicBool, order: Uuid, attempt: u32) -> Option<Duration> {
    if cancel.load(Ordering::Relaxed) {
        return None;
    }
    let base = 5u64 << attempt.min(8);
    let jitter = u64::from(order.as_bytes()[attempt as usize % 16]) % base.max(1);
    Some(Duration::from_millis(base + jitter))
}

/// An order's outcome as the database shows it after a call whose reply was lost: this
/// batch's rollback (its audit row carries the batch id), someone else's, or not done.
fn settled(state: Option<&OrderRollbackState>, batch: Uuid, attempts: u32) -> Option<Outcome> {
    match state {
        Some(s) if s.rolled_back_by(batch) => Some(Outcome::RolledBack {
            refunded: s.refunded,
            margin_released: s.margin_released,
            attempts,
            reply_lost: true,
        }),
        Some(s) if s.status == "rolled_back" => Some(Outcome::AlreadyRolledBack),
        _ => None,
    }
}

/// The server process a worker's connection had, to end it before reading what it did.
type Backend = Option<(i32, DateTime<Utc>)>;

/// One worker: a connection it replaces when it breaks, and its place among the workers.
struct Worker<'a> {
    index: usize,
    settings: &'a ConnectSettings,
    opts: &'a BatchOptions,
    progress: &'a Progress,
    retries: &'a AtomicU64,
    conn: Option<DbConn>,
    backend: Backend,
    /// Set when reconnecting failed for the whole window: the rest of the queue is not
    /// sent (each order would wait the window again), and a rerun finishes it.
    gave_up: Option<String>,
}

impl Worker<'_> {
    /// The live connection, reconnecting with backoff (up to `reconnect_for`, or until the
    /// batch is cancelled) when there is none.
    async fn connected(&mut self) -> Result<&mut DbConn> {
        if let Some(why) = &self.gave_up {
            return Err(Error::Unreachable(why.clone()));
        }
        if self.conn.is_none() {
            let deadline = Instant::now() + self.opts.reconnect_for;
            let mut wait = Duration::from_millis(100);
            let conn = loop {
                let attempt = tokio::time::timeout(Duration::from_secs(5), open_worker(self.settings, self.opts)).await;
                let err = match attempt {
                    Ok(Ok(c)) => break c,
                    Ok(Err(e)) => e,
                    Err(_) => Error::Unreachable("no answer within 5 s".into()),
                };
                if self.progress.cancel.load(Ordering::Relaxed) {
                    return Err(err);
                }
                if Instant::now() + wait > deadline {
                    let why = match &err {
                        Error::Unreachable(m) => m.clone(),
                        e => e.to_string(),
                    };
                    self.gave_up = Some(format!("{why} (gave up reconnecting after {:?})", self.opts.reconnect_for));
                    return Err(err);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            };
            let (conn, backend) = conn;
            self.progress.set_backend(self.index, backend.map_or(0, |b| b.0));
            self.backend = backend;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| Error::Unreachable("no connection".into()))
    }

    /// Drops a connection that lost a reply, ends its server process so its work is
    /// settled, and reads the order back: its outcome if done, None if not done, or the
    /// error when the database cannot be asked.
    async fn settle(&mut self, item: BatchItem, attempts: u32) -> Result<Option<Outcome>> {
        let states = self.read_back(&[item.order_id]).await?;
        Ok(settled(states.first(), self.opts.batch_id, attempts))
    }

    /// Drops a connection that lost a reply, ends its server process so its work is
    /// settled (committed or rolled back), and reads the orders back on a new connection.
    async fn read_back(&mut self, orders: &[Uuid]) -> Result<Vec<OrderRollbackState>> {
        self.conn = None;
        self.progress.set_backend(self.index, 0);
        let old = self.backend.take();
        let conn = self.connected().await?;
        if let (Some((pid, started)), Some(s)) = (old, conn.session())
            && !db::fence_backend(s, pid, started, 5000).await?
        {
            return Err(Error::Unreachable(format!(
                "the server process {pid} that lost the reply is still running after 5 s"
            )));
        }
        db::order_rollback_states(&mut *conn, orders).await
    }

    /// Rolls back one order, through broken connections: done, not done or unknown.
    async fn roll_back(&mut self, item: BatchItem) -> Outcome {
        let mut attempts = 0;
        loop {
            let (opts, retries, progress) = (self.opts, self.retries, self.progress);
            let conn = match self.connected().await {
                Ok(c) => c,
                // Nothing was sent: not done.
                Err(e) => return Outcome::Failed { error: format!("not sent: {e}") },
            };
            let lost = match roll_back_one(conn, item, opts, retries, &progress.cancel).await {
                Ok(outcome) => return outcome,
                Err((lost, n)) => {
                    attempts += n;
                    lost
                }
            };
            match self.settle(item, attempts).await {
                Ok(Some(outcome)) => return outcome,
                // Not done: again on the new connection, unless cancelled or tried enough.
                Ok(None) if self.progress.cancel.load(Ordering::Relaxed) => return Outcome::NotAttempted,
                Ok(None) if attempts >= self.opts.max_attempts => return Outcome::Failed { error: lost.to_string() },
                Ok(None) => continue,
                Err(e) => return Outcome::Unknown { error: format!("{lost}; then: {e}") },
            }
        }
    }

    /// Rolls back a chunk of orders in calls of `rollback_orders`, through broken
    /// connections: each order done, not done or unknown, in the chunk's order. Only the
    /// orders the server marked retryable are sent again (after the backoff); a call whose
    /// reply was lost is settled order by order from the database, and the orders it did
    /// not do are sent again. None for an order to send alone: the call failed as a whole
    /// with an error no order's subtransaction caught (a fault, a statement timeout), which
    /// rolled all of it back, so each order gets its own outcome as with one call per order.
    async fn roll_back_chunk(&mut self, chunk: &[BatchItem]) -> Vec<Option<Outcome>> {
        let max = self.opts.max_attempts.max(1);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; chunk.len()];
        let mut attempts = vec![0u32; chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        while !pending.is_empty() {
            if self.progress.cancel.load(Ordering::Relaxed) {
                // Cancelled before this call: nothing of it was sent.
                break;
            }
            for &p in &pending {
                attempts[p] += 1;
            }
            let orders: Vec<Uuid> = pending.iter().map(|&p| chunk[p].order_id).collect();
            let users: Vec<Uuid> = pending.iter().map(|&p| chunk[p].user_id).collect();
            let opts = self.opts;
            let conn = match self.connected().await {
                Ok(c) => c,
                Err(e) => {
                    // Nothing was sent: not done.
                    for &p in &pending {
                        outcomes[p] = Some(Outcome::Failed { error: format!("not sent: {e}") });
                    }
                    break;
                }
            };
            let answer = db::rollback_orders(&mut *conn, &orders, &users, &opts.reason).await;
            let mut again = Vec::new();
            match answer {
                Ok(answers) => {
                    for (&p, a) in pending.iter().zip(answers) {
                        match a {
                            ChunkAnswer::Answered(r) => outcomes[p] = Some(answered(*r, attempts[p])),
                            ChunkAnswer::NotAttempted => outcomes[p] = Some(Outcome::NotAttempted),
                            ChunkAnswer::Retry { sqlstate } if attempts[p] >= max => {
                                outcomes[p] = Some(Outcome::Failed {
                                    error: format!(
                                        "SQLSTATE {} after {} attempts",
                                        crate::core::sanitize::line(&sqlstate),
                                        attempts[p]
                                    ),
                                })
                            }
                            ChunkAnswer::Retry { .. } => again.push(p),
                        }
                    }
                }
                Err(lost) if may_have_committed(&lost) => match self.read_back(&orders).await {
                    Ok(states) => {
                        for &p in &pending {
                            let state = states.iter().find(|s| s.order_id == chunk[p].order_id);
                            match settled(state, self.opts.batch_id, attempts[p]) {
                                Some(done) => outcomes[p] = Some(done),
                                // Not done: again on the new connection, unless tried enough
                                // (a cancel is seen at the top of the loop).
                                None if attempts[p] >= max => {
                                    outcomes[p] = Some(Outcome::Failed { error: lost.to_string() })
                                }
                                None => again.push(p),
                            }
                        }
                    }
                    Err(e) => {
                        for &p in &pending {
                            outcomes[p] = Some(Outcome::Unknown { error: format!("{lost}; then: {e}") });
                        }
                    }
                },
                // The call itself failed retryably (outside any order's subtransaction): the
                // whole call rolled back, every order is sent again.
                Err(e) if db::is_retryable(e.sqlstate()) => {
                    for &p in &pending {
                        if attempts[p] >= max {
                            outcomes[p] = Some(Outcome::Failed { error: e.to_string() });
                        } else {
                            again.push(p);
                        }
                    }
                }
                // Cancelled meanwhile (perhaps this very call, on the server): its
                // transaction rolled back, so every order of it is as it was.
                Err(_) if self.progress.cancel.load(Ordering::Relaxed) => {
                    for &p in &pending {
                        outcomes[p] = Some(Outcome::NotAttempted);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "a chunk of {} orders failed as a whole ({e}); sending them one by one",
                        pending.len()
                    );
                    return outcomes;
                }
            }
            pending = again;
            if let Some(&first) = pending.first() {
                let attempt = pending.iter().map(|&p| attempts[p]).max().unwrap_or(1);
                let Some(wait) = backoff(&self.progress.cancel, chunk[first].order_id, attempt) else { break };
                self.retries.fetch_add(pending.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
        }
        // What is left was never sent again: the batch was cancelled.
        outcomes.into_iter().map(|o| Some(o.unwrap_or(Outcome::NotAttempted))).collect()
    }

    /// Records a failure where the dashboard counts it, on the worker's connection (a new
    /// one if it broke). Best effort: the failure is in the summary either way.
    async fn record_failure(&mut self, item: BatchItem, error: &str) {
        let detail = serde_json::json!({ "error": error, "batch_id": self.opts.batch_id });
        if let Ok(conn) = self.connected().await {
            let _ = db::record_failure(&mut *conn, item.order_id, item.user_id, "rollback_failed", &detail).await;
        }
    }
}

/// Runs the batch. `progress` is updated as orders finish; setting its `cancel` stops the
/// batch after the orders in flight.
pub async fn run(
    settings: &ConnectSettings,
    items: Vec<BatchItem>,
    opts: &BatchOptions,
    progress: Arc<Progress>,
) -> Result<(Summary, Vec<(BatchItem, Outcome)>)> {
    let started = Instant::now();
    let concurrency = opts.concurrency.clamp(1, 64).min(items.len().max(1));
    let queues = queues_by_user(&items, concurrency);
    let conns = open_workers(settings, opts, &progress, concurrency).await?;
    let mut notifier = settings.connection().await.ok();

    let retries = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (queue, (conn, backend))) in queues.into_iter().zip(conns).enumerate() {
        let (settings, opts, progress, retries) = (settings.clone(), opts.clone(), progress.clone(), retries.clone());
        tasks.spawn(async move {
            let worker = Worker {
                index,
                settings: &settings,
                opts: &opts,
                progress: &progress,
                retries: &retries,
                conn: Some(conn),
                backend,
                gave_up: None,
            };
            work_queue(worker, queue).await
        });
    }

    // Tell dashboards about progress a few times a second instead of on every commit.
    let mut outcomes: Vec<Option<(BatchItem, Outcome)>> = vec![None; items.len()];
    let mut last_notified = 0;
    let mut ticker = tokio::time::interval(opts.notify_interval);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(results)) => {
                    for (i, item, outcome) in results {
                        outcomes[i] = Some((item, outcome));
                    }
                }
                Some(Err(e)) => return Err(Error::task("a batch worker", e)),
                None => break,
            },
            _ = ticker.tick() => {
                let now = progress.rolled_back.load(Ordering::Relaxed);
                if now != last_notified {
                    last_notified = now;
                    notify(settings, &mut notifier).await;
                }
            }
        }
    }
    notify(settings, &mut notifier).await;

    let mut outcomes: Vec<(BatchItem, Outcome)> = outcomes.into_iter().flatten().collect();
    settle_unknown(settings, opts.batch_id, &mut outcomes).await;
    let tally = BatchTally {
        batch_id: opts.batch_id,
        total: items.len(),
        retries: retries.load(Ordering::Relaxed),
        elapsed_ms: started.elapsed().as_millis(),
        cancelled: progress.cancel.load(Ordering::Relaxed),
    };
    Ok((Summary::of(tally, &outcomes), outcomes))
}

/// Tells dashboards the audit log moved, on a connection that is replaced when it broke.
async fn notify(settings: &ConnectSettings, notifier: &mut Option<DbConn>) {
    if notifier.is_none() {
        *notifier = tokio::time::timeout(Duration::from_secs(2), settings.connection()).await.ok().and_then(Result::ok);
    }
    if let Some(conn) = notifier
        && db::notify_audit_changed(&mut *conn).await.is_err()
    {
        *notifier = None;
    }
}

/// One more look at the orders still unknown at the end (the server may be back): each is
/// settled from the database if it can be read, and stays unknown if not. Their server
/// processes were ended when their workers reconnected, or are gone with the server.
async fn settle_unknown(settings: &ConnectSettings, batch: Uuid, outcomes: &mut [(BatchItem, Outcome)]) {
    let ids: Vec<Uuid> =
        outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Unknown { .. })).map(|(i, _)| i.order_id).collect();
    if ids.is_empty() {
        return;
    }
    let read = async {
        let mut conn = settings.connection().await?;
        db::order_rollback_states(&mut conn, &ids).await
    };
    let Ok(Ok(states)) = tokio::time::timeout(Duration::from_secs(5), read).await else { return };
    for (item, outcome) in outcomes.iter_mut() {
        if !matches!(outcome, Outcome::Unknown { .. }) {
            continue;
        }
        let state = states.iter().find(|s| s.order_id == item.order_id);
        *outcome = match settled(state, batch, 1) {
            Some(done) => done,
            // Its reply was lost, or the wait for it was given up (a second Ctrl-C).
            None => Outcome::Failed {
                error: "not done: its answer never came, and the database shows it not rolled back".into(),
            },
        };
    }
}

/// A worker's connection, marked as part of the batch, and its server process (none
/// behind a transaction pooler, where a connection has no backend of its own).
async fn open_worker(settings: &ConnectSettings, opts: &BatchOptions) -> Result<(DbConn, Backend)> {
    let mut conn = settings.connection().await?;
    db::join_batch(&mut conn, opts.batch_id).await?;
    let backend = match conn.session() {
        Some(session) => Some(db::backend_identity(session).await?),
        None => None,
    };
    Ok((conn, backend))
}

/// The workers' connections, their backends registered so a cancel reaches the calls in
/// flight.
async fn open_workers(
    settings: &ConnectSettings,
    opts: &BatchOptions,
    progress: &Progress,
    n: usize,
) -> Result<Vec<(DbConn, Backend)>> {
    let mut conns = Vec::with_capacity(n);
    for index in 0..n {
        let (conn, backend) = open_worker(settings, opts).await?;
        // Behind a transaction pooler a cancel stops the batch after the orders in flight
        // (each a short transaction).
        progress.set_backend(index, backend.map_or(0, |b| b.0));
        conns.push((conn, backend));
    }
    Ok(conns)
}

/// One worker: its queue in order, in chunks of `chunk_size`; after a cancel or a
/// `breaker_open`, the rest is not attempted. Returns each order's outcome with its place in
/// the batch.
async fn work_queue(mut w: Worker<'_>, queue: Vec<(usize, BatchItem)>) -> Vec<(usize, BatchItem, Outcome)> {
    let mut results = Vec::with_capacity(queue.len());
    let size = w.opts.chunk_size.clamp(1, MAX_CHUNK_SIZE);
    for chunk in queue.chunks(size) {
        let stopped = w.progress.cancel.load(Ordering::Relaxed) || w.progress.breaker.load(Ordering::Relaxed);
        let outcomes = if stopped {
            vec![Some(Outcome::NotAttempted); chunk.len()]
        } else {
            w.progress.set_in_flight(w.index, chunk.iter().map(|(i, _)| *i).collect());
            match chunk {
                [_] if size == 1 => vec![None],
                _ => w.roll_back_chunk(&chunk.iter().map(|(_, item)| *item).collect::<Vec<_>>()).await,
            }
        };
        for (&(i, item), outcome) in chunk.iter().zip(outcomes) {
            let outcome = match outcome {
                Some(o) => o,
                // Sent alone (a chunk of one, or one that failed as a whole), unless the
                // batch stopped meanwhile (a cancel, a `breaker_open`, the failures).
                None if w.progress.cancel.load(Ordering::Relaxed) || w.progress.breaker.load(Ordering::Relaxed) => {
                    Outcome::NotAttempted
                }
                None => w.roll_back(item).await,
            };
            finish(&mut w, i, item, &outcome).await;
            results.push((i, item, outcome));
        }
        // Only once its outcomes are recorded: `known_so_far` reads the orders in flight
        // before the finished ones, so an order is always in one or the other, never
        // reported not attempted in between.
        w.progress.set_in_flight(w.index, Vec::new());
    }
    // Its connection closes with it: nothing of this worker's is left to cancel.
    w.progress.set_backend(w.index, 0);
    results
}

/// What a worker does with an order's outcome: a failure recorded (and the breaker opened
/// past the threshold), a `breaker_open` stops the batch, and the outcome counted.
async fn finish(w: &mut Worker<'_>, i: usize, item: BatchItem, outcome: &Outcome) {
    {
        if *outcome != Outcome::NotAttempted {
            if let Outcome::Failed { error } = outcome {
                w.record_failure(item, error).await;
                // Failures above the threshold open the breaker: something is wrong that
                // more rollbacks would make worse.
                let failed = w.progress.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let why = format!("{failed} orders of batch {} failed: {}", w.opts.batch_id, error);
                if failed == w.opts.breaker_failures
                    && let Ok(conn) = w.connected().await
                {
                    let _ = db::open_breaker(&mut *conn, &why, "failures").await;
                }
            }
            if matches!(outcome, Outcome::Refused { error_code, .. } if error_code == "breaker_open") {
                w.progress.breaker.store(true, Ordering::Relaxed);
            }
            w.progress.record(i, item, outcome);
        }
    }
}

/// Stops a batch: no new order, no retry, and the calls in flight cancelled on the server
/// (each is one transaction, a whole chunk: a cancelled one changes nothing).
pub async fn cancel(pool: &db::Db, progress: &Progress) {
    progress.cancel.store(true, Ordering::Relaxed);
    let pids = progress.backend_pids();
    for &pid in &pids {
        let _ = tokio::time::timeout(Duration::from_secs(2), db::cancel_backend(pool, pid)).await;
    }
    // Returns once the server has acted on the cancels (or after 1 s), so that "cancelled"
    // is said after it is true: a lock released just after the operator's Ctrl-C must not
    // let the call in flight commit.
    let deadline = Instant::now() + Duration::from_secs(1);
    for &pid in &pids {
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), db::backend_active(pool, pid)).await {
                Ok(Ok(true)) => tokio::time::sleep(Duration::from_millis(10)).await,
                _ => break,
            }
        }
    }
}

/// What is known of a batch without waiting for its workers (a second Ctrl-C, a signal
/// that must end the process): the outcomes so far; each order in flight settled from the
/// database after its server process is ended, else unknown; the rest not attempted. An
/// order whose server process did not end when asked stays unknown unless the database
/// already shows it rolled back: that process may still commit after the read.
pub async fn known_so_far(
    settings: &ConnectSettings,
    items: &[BatchItem],
    opts: &BatchOptions,
    progress: &Progress,
    elapsed_ms: u128,
) -> (Summary, Vec<(BatchItem, Outcome)>) {
    // Each worker's order in flight with its server process (0: none of its own to end,
    // behind a pooler or between connections). Read before the finished outcomes: a worker
    // records an outcome before it clears its order in flight, so no order falls between.
    let backends: Vec<i32> = progress.backends.lock().map(|b| b.clone()).unwrap_or_default();
    let in_flight: Vec<(usize, i32)> = progress
        .in_flight
        .lock()
        .map(|f| {
            f.iter()
                .enumerate()
                .flat_map(|(w, places)| places.iter().map(move |&i| (i, w)))
                .map(|(i, w)| (i, backends.get(w).copied().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut outcomes: Vec<Option<(BatchItem, Outcome)>> = vec![None; items.len()];
    for (i, item, outcome) in progress.finished.lock().map(|f| f.clone()).unwrap_or_default() {
        if let Some(slot) = outcomes.get_mut(i) {
            *slot = Some((item, outcome));
        }
    }
    // A chunk's orders are recorded one by one before the chunk leaves `in_flight`: those
    // already recorded keep their outcome, only the rest are in flight.
    let in_flight: Vec<(usize, i32)> =
        in_flight.into_iter().filter(|&(i, _)| outcomes.get(i).is_some_and(Option::is_none)).collect();
    for &(i, _) in &in_flight {
        if let (Some(slot), Some(item)) = (outcomes.get_mut(i), items.get(i))
            && slot.is_none()
        {
            *slot = Some((*item, Outcome::Unknown { error: "the wait for it was ended".into() }));
        }
    }
    let pids = progress.backend_pids();
    // The server processes known to be gone, so their calls have rolled back or committed.
    let mut ended: Vec<i32> = Vec::new();
    let fence = async {
        let mut conn = settings.connection().await?;
        if let Some(s) = conn.session() {
            for pid in pids {
                // Ends the call in flight and waits until it has rolled back or committed.
                if let Ok(true) = db::terminate_backend(&mut *s, pid, 2000).await {
                    ended.push(pid);
                }
            }
        }
        Ok::<(), Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), fence).await;
    let mut outcomes: Vec<(BatchItem, Outcome)> =
        outcomes.into_iter().zip(items).map(|(o, item)| o.unwrap_or((*item, Outcome::NotAttempted))).collect();
    settle_unknown(settings, opts.batch_id, &mut outcomes).await;
    // Not rolled back yet is not "not done" while its server process runs: it may commit
    // after the read (a stopped or stalled process, the termination not yet acted on).
    for &(i, pid) in &in_flight {
        if pid != 0
            && !ended.contains(&pid)
            && let Some((_, outcome)) = outcomes.get_mut(i)
            && !outcome.done()
        {
            *outcome = Outcome::Unknown {
                error: format!(
                    "the wait for it was ended and its server process {pid} did not end when asked: it may still commit"
                ),
            };
        }
    }
    let tally = BatchTally { batch_id: opts.batch_id, total: items.len(), retries: 0, elapsed_ms, cancelled: true };
    (Summary::of(tally, &outcomes), outcomes)
}
