//! The worker's requests, one function each: every one runs in its own task, on a pooled
//! connection registered as cancellable (its backend, or behind a transaction pooler its
//! task; a batch on connections of its own, with a stop flag), and answers with a
//! `DbEvent` tagged with its request id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Cancel, Running};
use crate::console::protocol::{BatchTarget, DbEvent, PageRequest, RequestId};
use crate::core::batch::BatchItem;
use crate::core::error::{Error, Result};
use crate::core::orders::{OrderQuery, OrderSort, ResolvedQuery};
use crate::ops::batch::{self, BatchOptions, Progress};
use crate::ops::journaling;
use crate::ops::rollback::{RollbackRequest, rollback_and_prove};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, Db, DbConn, QUERY_CANCELED, is_cancel};

/// What a request's task needs: the pool, the table of running requests (to be
/// cancellable) and the way back to the UI.
pub(super) struct Job {
    /// The primary's pool: every request that decides or writes runs here.
    pub(super) pool: Db,
    /// The standby's pool while the reads that decide nothing may go to it.
    pub(super) reads: Option<Db>,
    /// The standby's state, told when a read failed there.
    pub(super) replica: Option<Arc<super::replica::Replica>>,
    pub(super) running: Running,
    pub(super) events: mpsc::UnboundedSender<DbEvent>,
    /// The incident's journal (id, path), for the level an approval request declares.
    pub(super) journal: Option<(String, std::path::PathBuf)>,
}

/// A page of orders, then which of its rows are repeated executions (the page's ids only:
/// the marks cost a page, not the book).
pub(super) fn load_orders(job: Job, id: RequestId, query: OrderQuery, sort: OrderSort, page: PageRequest, limit: i64) {
    read_request(job, id, move |mut conn, events| {
        let (query, page) = (query.clone(), page.clone());
        async move {
            let r = async {
                let f = resolve(&mut conn, &query).await?;
                let from = match &page {
                    PageRequest::First => db::PageFrom::Start,
                    PageRequest::Last => db::PageFrom::End,
                    PageRequest::Below(k) => db::PageFrom::After(k.clone()),
                    PageRequest::Above(k) => db::PageFrom::Before(k.clone()),
                };
                let (rows, has_more) = db::orders_page(&mut conn, &f, sort, &from, limit).await?;
                let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();
                let _ = events.send(DbEvent::Orders { id, page, rows, has_more });
                // The marks help read the page; a page without them is still the truth, so a
                // failure here leaves the rows unmarked rather than failing the page shown.
                if let Ok(marks) = db::repeat_counts(&mut conn, &ids, crate::core::blast::REPEAT_WITHIN_SECONDS).await {
                    let _ = events.send(DbEvent::RepeatMarks { id, rows: ids, marks });
                }
                Ok(())
            }
            .await;
            (conn, r)
        }
    });
}

/// Orders matching the filter per minute, counted on the server.
pub(super) fn orders_per_minute(job: Job, id: RequestId, query: OrderQuery) {
    read_request(job, id, move |mut conn, events| {
        let query = query.clone();
        async move {
            let r = async {
                let f = resolve(&mut conn, &query).await?;
                let result = db::orders_per_minute(&mut conn, &f).await;
                match result {
                    Err(e) if is_cancel(&e) => Err(e),
                    result => {
                        let _ = events.send(DbEvent::OrdersPerMinute { id, result: result.map_err(|e| e.to_string()) });
                        Ok(())
                    }
                }
            }
            .await;
            (conn, r)
        }
    });
}

/// How many orders match (capped).
pub(super) fn count_orders(job: Job, id: RequestId, query: OrderQuery) {
    read_request(job, id, move |mut conn, events| {
        let query = query.clone();
        async move {
            let r = async {
                let f = resolve(&mut conn, &query).await?;
                let (count, capped) = db::count_orders(&mut conn, &f, crate::core::orders::TITLE_COUNT_CAP).await?;
                let _ = events.send(DbEvent::OrderCount { id, count, capped });
                Ok(())
            }
            .await;
            (conn, r)
        }
    });
}

/// `rollback_precheck` for one order.
pub(super) fn precheck(job: Job, id: RequestId, order: uuid::Uuid, user: uuid::Uuid) {
    request(job.pool, job.running, job.events, id, move |mut conn, events| async move {
        let r = match db::precheck(&mut conn, order, user).await {
            Err(e) if is_cancel(&e) => Err(e),
            result => {
                let _ = events.send(DbEvent::Precheck { id, order, user, result: result.map_err(|e| e.to_string()) });
                Ok(())
            }
        };
        (conn, r)
    });
}

/// A rollback and its post-check, recorded. With `waive_journal` the waiver goes to the
/// audit log first, and a waiver that cannot be written stops the rollback before it starts.
pub(super) fn rollback(job: Job, id: RequestId, req: RollbackRequest, waive_journal: bool) {
    let recorder = job.pool.clone();
    let running = job.running.clone();
    // A cancel the operator asked for is not a failure of the rollback; a statement
    // timeout or a cancel from elsewhere is.
    let asked =
        move || running.lock().is_ok_and(|m| matches!(m.get(&id), Some(Cancel::Backend { requested: true, .. })));
    request(job.pool, job.running, job.events, id, move |mut conn, events| async move {
        if waive_journal {
            let mode = if req.group { "transaction" } else { "single" };
            let pairs = [(req.order, req.user)];
            if let Err(e) = journaling::waive(&recorder, req.operation, mode, &pairs, &req.reason).await {
                let error = format!("not rolled back: the journal waiver could not be recorded in the audit log: {e}");
                let _ = events.send(DbEvent::Rollback { id, result: Err(error) });
                return (conn, Ok(()));
            }
        }
        let r = match rollback_and_prove(&recorder, &mut conn, &req, &asked).await {
            Err(e) if is_cancel(&e) => Err(e),
            other => {
                let _ = events.send(DbEvent::Rollback { id, result: other.map_err(|e| e.to_string()) });
                Ok(())
            }
        };
        (conn, r)
    });
}

/// What a batch would roll back: its orders and their money.
pub(super) fn preview_batch(job: Job, id: RequestId, target: BatchTarget) {
    request(job.pool, job.running, job.events, id, move |mut conn, events| async move {
        let r = async {
            let items: Vec<BatchItem> = match target {
                BatchTarget::Orders(items) => items,
                BatchTarget::Matching(query) => {
                    let f = resolve(&mut conn, &query).await?;
                    db::executed_matching(&mut conn, &f, 100_000)
                        .await?
                        .into_iter()
                        .map(|(order_id, user_id)| BatchItem { order_id, user_id })
                        .collect()
                }
            };
            let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.order_id).collect();
            let preview = db::batch_preview(&mut conn, &ids).await?;
            let _ = events.send(DbEvent::BatchPreview { id, result: Ok((preview, items)) });
            Ok(())
        }
        .await;
        (conn, r)
    });
}

/// A batch as `Command::RunBatch` asks for it.
pub(super) struct BatchRun {
    pub(super) items: Vec<BatchItem>,
    pub(super) reason: String,
    pub(super) operation: uuid::Uuid,
    pub(super) waive_journal: bool,
    /// The preview its confirmation showed.
    pub(super) preview: String,
}

/// A batch runs on its own connections (one transaction per order); its progress is sent
/// every 250 ms, and cancelling it raises its stop flag. `operation` is its batch id; with
/// `waive_journal` the waiver goes to the audit log first, and stops the batch if it cannot.
pub(super) fn run_batch(job: Job, settings: ConnectSettings, id: RequestId, run: BatchRun) {
    let BatchRun { items, reason, operation, waive_journal, preview } = run;
    let Job { pool, running, events, journal, .. } = job;
    let progress = Arc::new(Progress::default());
    if let Ok(mut m) = running.lock() {
        m.insert(id, Cancel::Batch(progress.clone()));
    }
    tokio::spawn(async move {
        let total = items.len() as u64;
        // A second person first, when the policy asks for one; cancelling the batch while
        // it waits withdraws the request.
        let ask = crate::ops::approval::Ask {
            kind: crate::core::approval::ApprovalKind::Batch,
            operation,
            orders: items.iter().map(|i| (i.order_id, i.user_id)).collect(),
            target: None,
            reason: reason.clone(),
            incident: super::approvals::incident_of(journal).await,
            preview: serde_json::json!({ "preview": preview, "source": "console batch" }),
            single: false,
        };
        let stop = super::approvals::stopped(progress.clone());
        let approved = match super::approvals::gate(&pool, &events, ask, stop).await {
            Ok(a) => a,
            Err(why) => {
                if let Ok(mut m) = running.lock() {
                    m.remove(&id);
                }
                let _ = events.send(DbEvent::BatchDone { id, result: Err(format!("not started: {why}")) });
                return;
            }
        };
        if waive_journal {
            let pairs: Vec<(uuid::Uuid, uuid::Uuid)> = items.iter().map(|i| (i.order_id, i.user_id)).collect();
            if let Err(e) = journaling::waive(&pool, operation, "batch", &pairs, &reason).await {
                if let Ok(mut m) = running.lock() {
                    m.remove(&id);
                }
                let error = format!("not started: the journal waiver could not be recorded in the audit log: {e}");
                let _ = events.send(DbEvent::BatchDone { id, result: Err(error) });
                return;
            }
        }
        let mut opts = BatchOptions::new(reason);
        opts.batch_id = operation;
        let reporter = {
            let progress = progress.clone();
            let events = events.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let _ = events.send(progress_event(id, total, &progress));
                }
            })
        };
        let result = batch::run(&settings, items, &opts, progress.clone()).await;
        reporter.abort();
        let _ = events.send(progress_event(id, total, &progress));
        if let Ok(mut m) = running.lock() {
            m.remove(&id);
        }
        match result {
            // The proof comes after the summary, so the result shows at once; it reads on
            // the pool and gives up after its own timeout when the server is gone.
            Ok((summary, outcomes)) => {
                let _ = events.send(DbEvent::BatchDone { id, result: Ok(summary.clone()) });
                if summary.rolled_back > 0 {
                    super::approvals::used(&events, approved.as_ref());
                }
                let result = batch::prove(&pool, &summary, &outcomes).await.map_err(|e| e.to_string());
                let _ = events.send(DbEvent::BatchProof { operation: summary.batch_id, result });
            }
            Err(e) => {
                let _ = events.send(DbEvent::BatchDone { id, result: Err(e.to_string()) });
            }
        }
    });
}

/// Maintenance mode switched, then proved by a probe order.
pub(super) fn set_maintenance(job: Job, id: RequestId, on: bool, reason: String, symbol: Option<String>) {
    let Job { pool, events, .. } = job;
    tokio::spawn(async move {
        let result = match &symbol {
            Some(s) => crate::ops::maintenance::switch_symbol_maintenance(&pool, s, on, &reason).await,
            None => crate::ops::maintenance::switch_maintenance(&pool, on, &reason).await,
        }
        .map(|(_, probe)| probe);
        if let Ok(p) = &result {
            let _ = events.send(DbEvent::Maintenance(p.state.clone()));
        }
        let result = result.map_err(|e| e.to_string());
        let _ = events.send(DbEvent::MaintenanceSet { id, on, reason, symbol, result });
    });
}

/// The release overlay's plan: the history, and the pre-check of going back one release.
pub(super) fn release_plan(job: Job, id: RequestId) {
    let Job { pool, events, .. } = job;
    tokio::spawn(async move {
        let result = async {
            let releases = crate::ops::release::list(&pool).await?;
            let mut active = releases.iter().filter(|r| r.active()).rev();
            let target = active.nth(1).map(|r| r.name.clone());
            let precheck = match &target {
                Some(t) => Some(crate::ops::release::precheck(&pool, t).await?),
                None => None,
            };
            Ok::<_, crate::core::error::Error>(crate::console::protocol::ReleasePlan { releases, target, precheck })
        }
        .await
        .map_err(|e| e.to_string());
        let _ = events.send(DbEvent::ReleasePlan { id, result });
    });
}

/// The circuit breaker opened or closed by a person, then the state as the header shows it.
pub(super) fn switch_breaker(job: Job, id: RequestId, open: bool, reason: String) {
    let Job { pool, events, journal, .. } = job;
    tokio::spawn(async move {
        let answer = if open {
            db::open_breaker(&pool, &reason, "person").await
        } else {
            // Closing it at Level 3 needs a second person, when the policy says so.
            let operation = uuid::Uuid::new_v4();
            let ask = crate::ops::approval::Ask {
                kind: crate::core::approval::ApprovalKind::BreakerClose,
                operation,
                orders: Vec::new(),
                target: None,
                reason: reason.clone(),
                incident: super::approvals::incident_of(journal).await,
                preview: serde_json::json!({ "source": "console" }),
                single: false,
            };
            match super::approvals::gate(&pool, &events, ask, std::future::pending()).await {
                Ok(Some(r)) => {
                    let answer = db::close_breaker_approved(&pool, &reason, operation).await;
                    if answer
                        .as_ref()
                        .is_ok_and(|v| v.get("success").and_then(serde_json::Value::as_bool) == Some(true))
                    {
                        super::approvals::used(&events, Some(&r));
                    }
                    answer
                }
                Ok(None) => db::close_breaker(&pool, &reason).await,
                Err(why) => Err(Error::CheckFailed(why)),
            }
        };
        let result = match answer {
            Ok(v) if v.get("success").and_then(serde_json::Value::as_bool) == Some(true) => {
                Ok(v.get("changed").and_then(serde_json::Value::as_bool) == Some(true))
            }
            Ok(v) => Err(crate::core::sanitize::line(
                v.get("message").and_then(serde_json::Value::as_str).unwrap_or("refused"),
            )
            .into_owned()),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(state) = db::maintenance_state(&pool).await {
            let _ = events.send(DbEvent::Maintenance(state));
        }
        let _ = events.send(DbEvent::BreakerSwitched { id, open, reason, result });
    });
}

/// The database's part of the evidence bundle.
pub(super) fn gather_evidence(job: Job, id: RequestId, incident: String, touched: crate::core::bundle::Touched) {
    let Job { pool, events, .. } = job;
    tokio::spawn(async move {
        let result = crate::ops::bundle::gather(&pool, &incident, &touched).await.map_err(|e| e.to_string());
        let _ = events.send(DbEvent::Evidence { id, result });
    });
}

/// A release rollback, then its proof; the maintenance state after it.
pub(super) fn release_rollback(job: Job, id: RequestId, to: String, reason: String) {
    let Job { pool, events, journal, .. } = job;
    tokio::spawn(async move {
        let operation = uuid::Uuid::new_v4();
        let ask = crate::ops::approval::Ask {
            kind: crate::core::approval::ApprovalKind::ReleaseRollback,
            operation,
            orders: Vec::new(),
            target: Some(to.clone()),
            reason: reason.clone(),
            incident: super::approvals::incident_of(journal).await,
            preview: serde_json::json!({ "source": "console release overlay" }),
            single: false,
        };
        let result = match super::approvals::gate(&pool, &events, ask, std::future::pending()).await {
            Ok(approved) => {
                let r = crate::ops::release::rollback(&pool, &to, &reason, false, false, Some(operation))
                    .await
                    .map_err(|e| e.to_string());
                if matches!(&r, Ok(crate::ops::release::Answer::Done(_))) {
                    super::approvals::used(&events, approved.as_ref());
                }
                r
            }
            Err(why) => Err(format!("not started: {why}")),
        };
        let _ = events.send(DbEvent::ReleaseRolledBack { id, reason, result });
    });
}

/// The blast radius: executions per minute and the repeated executions, grouped.
pub(super) fn blast_radius(job: Job, id: RequestId) {
    read_request(job, id, move |mut conn, events| async move {
        let r = async {
            let per_minute = db::executions_per_minute(&mut conn).await?;
            let repeated = db::repeated_executions(&mut conn, crate::core::blast::REPEAT_WITHIN_SECONDS).await?;
            let suspicions = crate::core::blast::suspicions(repeated, chrono::Duration::minutes(2));
            let data = crate::console::protocol::BlastData { per_minute, suspicions };
            let _ = events.send(DbEvent::BlastRadius { id, result: Ok(data) });
            Ok(())
        }
        .await;
        (conn, r)
    });
}

fn progress_event(id: RequestId, total: u64, p: &Progress) -> DbEvent {
    DbEvent::BatchProgress {
        id,
        done: p.done.load(Ordering::Relaxed),
        total,
        rolled_back: p.rolled_back.load(Ordering::Relaxed),
        problems: p.problems.load(Ordering::Relaxed),
        recent: p.take_recent(),
    }
}

/// A pooled connection.
type Conn = DbConn;

/// Resolves a filter's times of day against the book's latest trading day; a symbol no
/// instrument has, or an empty window, is bad input.
async fn resolve(conn: &mut Conn, q: &OrderQuery) -> Result<ResolvedQuery> {
    let times = db::resolve_time_bounds(&mut *conn, [q.from, q.to]).await?;
    let unknown = if q.symbols.is_empty() { Vec::new() } else { db::unknown_symbols(&mut *conn, &q.symbols).await? };
    q.resolved(times, &unknown).map_err(crate::core::error::Error::BadInput)
}

/// Runs one cancellable request on the primary: a pooled connection whose backend id is
/// registered, so `Cancel` can reach its query on the server (behind a transaction pooler
/// the task is registered instead, and aborting it closes the connection mid-transaction).
/// A cancelled connection is closed, never returned to the pool mid-way.
fn request<F, Fut>(pool: Db, running: Running, events: mpsc::UnboundedSender<DbEvent>, id: RequestId, f: F)
where
    F: FnOnce(Conn, mpsc::UnboundedSender<DbEvent>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send,
{
    register(&running, id);
    let pooled = pool.transaction_pooled();
    let table = running.clone();
    let task = tokio::spawn(async move {
        let outcome = attempt(&pool, None, &running, id, &events, f).await;
        answer(&running, &events, id, outcome);
    });
    abort_through(pooled, &table, id, task);
}

/// A read that decides nothing (the orders list, its count and strip, the blast radius):
/// on the standby while it may be used, else on the primary. When it fails on the standby
/// (not a cancel the operator asked for), the standby is set aside and the read runs again
/// on the primary at once, so a standby that dies or is cut off from its primary costs a
/// moment, not an answer.
fn read_request<F, Fut>(job: Job, id: RequestId, f: F)
where
    F: Fn(Conn, mpsc::UnboundedSender<DbEvent>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send,
{
    let Job { pool, reads, replica, running, events, .. } = job;
    let (Some(standby), Some(replica)) = (reads, replica) else {
        return request(pool, running, events, id, f);
    };
    register(&running, id);
    let pooled = pool.transaction_pooled() || standby.transaction_pooled();
    let table = running.clone();
    let task = tokio::spawn(async move {
        let first = attempt(&standby, Some(&standby), &running, id, &events, &f).await;
        let outcome = match first {
            // A filter the book refuses is the person's to fix, not the standby's fault.
            Err(e) if !is_cancel(&e) && !matches!(e, Error::BadInput(_)) && !cancel_asked(&running, id) => {
                tracing::warn!("a read on the standby failed, read on the primary: {e}");
                replica.failed();
                if let Ok(mut m) = running.lock()
                    && let Some(slot @ Cancel::Backend { .. }) = m.get_mut(&id)
                {
                    *slot = Cancel::Backend { pid: None, requested: false, on: None };
                }
                attempt(&pool, None, &running, id, &events, &f).await
            }
            other => other,
        };
        answer(&running, &events, id, outcome);
    });
    abort_through(pooled, &table, id, task);
}

/// Registers a request as cancellable before its task starts.
fn register(running: &Running, id: RequestId) {
    if let Ok(mut m) = running.lock() {
        m.insert(id, Cancel::Backend { pid: None, requested: false, on: None });
    }
}

/// Whether the operator asked to cancel the request.
fn cancel_asked(running: &Running, id: RequestId) -> bool {
    running.lock().map(|m| !matches!(m.get(&id), Some(Cancel::Backend { requested: false, .. }))).unwrap_or(true)
}

/// Behind a transaction pooler a running request is cancelled by aborting its task.
fn abort_through(pooled: bool, table: &Running, id: RequestId, task: tokio::task::JoinHandle<()>) {
    if pooled && let Ok(mut m) = table.lock() {
        // Still running (a finished task has removed itself): cancel it by aborting it.
        if let Some(slot @ Cancel::Backend { pid: None, .. }) = m.get_mut(&id) {
            *slot = Cancel::Abort(task.abort_handle());
        }
    }
}

/// One run of a request on `pool` (`on`: the standby's, for its cancel): a connection, its
/// backend registered, then `f`.
async fn attempt<F, Fut>(
    pool: &Db,
    on: Option<&Db>,
    running: &Running,
    id: RequestId,
    events: &mpsc::UnboundedSender<DbEvent>,
    f: F,
) -> Result<()>
where
    F: FnOnce(Conn, mpsc::UnboundedSender<DbEvent>) -> Fut,
    Fut: std::future::Future<Output = (Conn, Result<()>)>,
{
    // On the standby the wait is short: a dead one would hold the read for the pool's
    // whole acquire timeout, and the primary can answer instead.
    let mut conn = match on {
        Some(_) => tokio::time::timeout(super::replica::ACQUIRE_WITHIN, pool.acquire())
            .await
            .map_err(|_| Error::Unreachable("the standby gave no connection in time".into()))??,
        None => pool.acquire().await?,
    };
    let pid = match conn.session() {
        Some(session) => Some(db::backend_pid(session).await?),
        None => None,
    };
    let still_wanted = running
        .lock()
        .map(|mut m| match m.get_mut(&id) {
            Some(Cancel::Backend { pid: slot, on: server, .. }) => {
                *slot = pid;
                *server = on.cloned();
                true
            }
            Some(Cancel::Abort(_)) => true,
            _ => false,
        })
        .unwrap_or(false);
    if !still_wanted {
        return Err(Error::Database(crate::core::error::DbErrorText {
            code: Some(QUERY_CANCELED.into()),
            message: "cancelled before it started".into(),
        }));
    }
    let (conn, r) = f(conn, events.clone()).await;
    if r.as_ref().err().is_some_and(is_cancel) {
        // The server cancelled this connection's query: do not reuse it.
        conn.close().await;
    }
    r
}

/// The request's end: removed from the table, and a failure or the operator's cancel told.
fn answer(running: &Running, events: &mpsc::UnboundedSender<DbEvent>, id: RequestId, outcome: Result<()>) {
    // Whether the operator asked for this cancel: an entry the cancel removed, or one it
    // marked. A cancel nobody here asked for (a statement timeout, another session's
    // pg_cancel_backend) is a failure, and is shown with the server's words.
    let asked = match running.lock().map(|mut m| m.remove(&id)) {
        Ok(None) => true,
        Ok(Some(Cancel::Backend { requested, .. })) => requested,
        Ok(Some(_)) | Err(_) => false,
    };
    match outcome {
        Ok(()) => {}
        Err(e) if is_cancel(&e) && asked => {
            let _ = events.send(DbEvent::Cancelled { id });
        }
        Err(e) => {
            let _ = events.send(DbEvent::Failed { id, error: e.to_string() });
        }
    }
}
