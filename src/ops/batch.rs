//! Rolling back many orders: one order per database transaction, on a few connections,
//! with retries of serialization failures, deadlocks and lock timeouts. Orders of one user
//! always go to the same connection, one after the other, so workers never queue on each
//! other's profile locks. Running the same batch again rolls back nothing twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::core::batch::{BatchItem, BatchTally, Outcome, Summary, queues_by_user};
use crate::core::error::{Error, Result};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, DbConn};

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
    /// The backend pids of the batch's connections (for `pg_cancel_backend`).
    pub backends: std::sync::Mutex<Vec<i32>>,
    /// Outcomes not yet shown, for a live display (drained by whoever draws).
    pub recent: std::sync::Mutex<Vec<(BatchItem, Outcome)>>,
}

impl Progress {
    /// Counts an order that finished (any outcome but not attempted) and keeps it for the
    /// live display.
    fn record(&self, item: BatchItem, outcome: &Outcome) {
        match outcome {
            Outcome::RolledBack { .. } => {
                self.rolled_back.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Refused { .. } | Outcome::Failed { .. } => {
                self.problems.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::AlreadyRolledBack | Outcome::NotAttempted => {}
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.recent.lock() {
            // Bounded: a display that never drains must not grow memory.
            if recent.len() < 1000 {
                recent.push((item, outcome.clone()));
            }
        }
    }

    /// Takes the outcomes recorded since the last call.
    pub fn take_recent(&self) -> Vec<(BatchItem, Outcome)> {
        self.recent.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

async fn roll_back_one(
    conn: &mut DbConn,
    item: BatchItem,
    opts: &BatchOptions,
    retries: &AtomicU64,
    cancel: &AtomicBool,
) -> Outcome {
    // Exponential backoff with jitter, so colliding workers fall out of step; none once
    // the batch is cancelled.
    let backoff = |attempt: u32| -> Option<Duration> {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        retries.fetch_add(1, Ordering::Relaxed);
        let base = 5u64 << attempt.min(8);
        let jitter = u64::from(item.order_id.as_bytes()[attempt as usize % 16]) % base.max(1);
        Some(Duration::from_millis(base + jitter))
    };
    let mut retry = db::Retry::new(opts.max_attempts);
    let result = loop {
        let r = db::rollback_order(&mut *conn, item.order_id, item.user_id, &opts.reason).await;
        if !retry.again(&r, backoff).await {
            break r;
        }
    };
    match (result, retry.attempts()) {
        (Ok(r), attempts) if r.success => Outcome::RolledBack {
            refunded: r.refunded.unwrap_or_default(),
            margin_released: r.margin_released.unwrap_or_default(),
            attempts,
        },
        (Ok(r), _) if r.error_code.as_deref() == Some("already_rolled_back") => Outcome::AlreadyRolledBack,
        (Ok(r), _) => Outcome::Refused {
            error_code: r.error_code.unwrap_or_else(|| "unknown".into()),
            message: r.message.unwrap_or_default(),
        },
        // Cancelled meanwhile (perhaps this very call, on the server): its transaction
        // rolled back, so the order is as it was.
        (Err(_), _) if cancel.load(Ordering::Relaxed) => Outcome::NotAttempted,
        (Err(e), _) => Outcome::Failed { error: e.to_string() },
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
    let mut notifier = settings.connection().await?;

    let retries = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (queue, conn) in queues.into_iter().zip(conns) {
        let (opts, progress, retries) = (opts.clone(), progress.clone(), retries.clone());
        tasks.spawn(async move { work_queue(conn, queue, &opts, &progress, &retries).await });
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
                    let _ = db::notify_audit_changed(&mut notifier).await;
                }
            }
        }
    }
    let _ = db::notify_audit_changed(&mut notifier).await;

    let outcomes: Vec<(BatchItem, Outcome)> = outcomes.into_iter().flatten().collect();
    let tally = BatchTally {
        batch_id: opts.batch_id,
        total: items.len(),
        retries: retries.load(Ordering::Relaxed),
        elapsed_ms: started.elapsed().as_millis(),
        cancelled: progress.cancel.load(Ordering::Relaxed),
    };
    Ok((Summary::of(tally, &outcomes), outcomes))
}

/// The workers' connections, each marked as part of the batch, their backends registered
/// so a cancel reaches the calls in flight.
async fn open_workers(
    settings: &ConnectSettings,
    opts: &BatchOptions,
    progress: &Progress,
    n: usize,
) -> Result<Vec<DbConn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = settings.connection().await?;
        db::join_batch(&mut conn, opts.batch_id).await?;
        // Behind a transaction pooler a connection has no backend of its own to cancel:
        // a cancel stops the batch after the orders in flight (each a short transaction).
        if let Some(session) = conn.session() {
            let pid = db::backend_pid(session).await?;
            if let Ok(mut b) = progress.backends.lock() {
                b.push(pid);
            }
        }
        conns.push(conn);
    }
    Ok(conns)
}

/// One worker: its queue in order, on its own connection; after a cancel, the rest is not
/// attempted. Returns each order's outcome with its place in the batch.
async fn work_queue(
    mut conn: DbConn,
    queue: Vec<(usize, BatchItem)>,
    opts: &BatchOptions,
    progress: &Progress,
    retries: &AtomicU64,
) -> Vec<(usize, BatchItem, Outcome)> {
    let mut results = Vec::with_capacity(queue.len());
    for (i, item) in queue {
        let outcome = if progress.cancel.load(Ordering::Relaxed) {
            Outcome::NotAttempted
        } else {
            roll_back_one(&mut conn, item, opts, retries, &progress.cancel).await
        };
        if outcome != Outcome::NotAttempted {
            if let Outcome::Failed { error } = &outcome {
                let detail = serde_json::json!({ "error": error, "batch_id": opts.batch_id });
                // Best effort: the failure is in the summary even if this cannot be written.
                let _ = db::record_failure(&mut conn, item.order_id, item.user_id, "rollback_failed", &detail).await;
            }
            progress.record(item, &outcome);
        }
        results.push((i, item, outcome));
    }
    results
}
