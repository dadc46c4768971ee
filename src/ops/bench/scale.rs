//! `incident-console bench --scale`: the cost curve. For each size (10 k to 10 M orders) a
//! book is generated on the server in the bench's own database, then every figure a person
//! waits for is timed through the very functions the console and the CLI call: the first
//! page of the orders list, a symbol and time-window filter, the count in the list's
//! title, a pre-check, a single rollback, a batch of 1,000, the audit from its checkpoint
//! and the full one, the blast-radius view, and the console's memory after paging. Each
//! figure is the median of a few runs; each carries what the design says it should do as
//! the book grows, and the factor by which it grew since the size before.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveTime, Utc};
use serde::Serialize;
use sqlx::Connection;
use uuid::Uuid;

use super::Say;
/// "10k", "1m": a size as `--sizes` takes it.
pub use super::generate::size_label;
use super::generate::{self, BuildTimes, SPACING_MS};
use super::server::Server;
use crate::core::batch::BatchItem;
use crate::core::error::{Error, Result};
use crate::core::orders::{OrderQuery, OrderSort, ResolvedQuery, TimeBound};
use crate::ops::batch::{self, BatchOptions, Progress};
use crate::ops::rollback::{RollbackRequest, rollback_and_prove};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, DbConn};
use crate::store::sandbox;

/// Rows in a page of the console's orders list (`console::panes::orders::PAGE`).
const PAGE: i64 = 200;
/// Orders in the batch figure.
const BATCH: usize = 1000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    /// Book sizes, in orders, smallest first.
    pub sizes: Vec<u64>,
    /// Runs of each quick figure (the full audit, the batch and the console get fewer:
    /// at most 3).
    pub runs: usize,
    /// Keep each size's database afterwards.
    pub keep_database: bool,
    /// The console binary whose memory is measured (None: not measured).
    pub console: Option<PathBuf>,
}

/// What a figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Wall time, in seconds.
    Seconds,
    /// Resident memory, in KiB.
    Kib,
}

/// One figure at one size.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was timed.
    pub name: &'static str,
    /// Seconds or KiB.
    pub unit: Unit,
    /// The median of the runs.
    pub median: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
    /// Runs.
    pub runs: usize,
    /// How the design says it grows with the book.
    pub expected: &'static str,
    /// This median divided by the same figure's at the size before.
    pub growth: Option<f64>,
}

/// One size's book and figures.
#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    /// Orders in the book.
    pub orders: u64,
    /// Accounts.
    pub accounts: u64,
    /// How long generating the book took, step by step.
    pub build: BuildTimes,
    /// The full checkpoint the audit starts from, in seconds.
    pub checkpoint_seconds: f64,
    /// The database's size on disk after the build.
    pub database_bytes: i64,
    /// The figures.
    pub figures: Vec<Figure>,
}

/// Everything `bench --scale` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Server version.
    pub server: String,
    /// One entry per size, smallest first.
    pub sizes: Vec<SizeReport>,
}

/// Each figure's name and what it should do as the book grows (n orders, n/100 accounts,
/// 100,000 orders a day).
const EXPECTED: [(&str, &str); 10] = [
    ("orders list, first page", "flat: keyset page on an index, log n"),
    ("symbol + 1 h window, first page", "flat: index range of one hour, log n"),
    ("count in the list's title", "linear up to its cap of 100,000, then flat"),
    ("blast radius", "grows with the last day's orders (<= 100,000), then flat"),
    ("pre-check", "flat: lookups by key, log n"),
    ("single rollback", "flat: lookups by key, log n"),
    ("batch of 1,000", "flat: 1,000 lookups by key, log n"),
    ("audit from checkpoint", "linear in accounts (n/100), not in orders"),
    ("full audit", "linear: reads every row"),
    ("console RSS after paging", "flat: holds a window of pages"),
];

fn expected(name: &str) -> &'static str {
    EXPECTED.iter().find(|(n, _)| *n == name).map_or("", |(_, e)| e)
}

/// Runs the cost curve on the server of `admin`: one database per size, dropped after it
/// unless `keep_database`.
/// `done` is told each size's report as soon as it is complete.
pub async fn run(
    admin: ConnectSettings,
    plan: &ScalePlan,
    say: Say<'_>,
    done: &(dyn Fn(&SizeReport) + Sync),
) -> Result<ScaleReport> {
    let server = Server { admin, binaries: sandbox::ServerBinaries::find().ok() };
    let mut admin = server.admin.session_connection("the benchmark").await?;
    let version = db::server_version(&mut admin).await?;
    if !db::is_superuser(&mut admin).await? {
        return Err(Error::BadInput(
            "bench --scale loads its books without triggers, as a replica does: it needs a superuser login".into(),
        ));
    }
    let mut sizes: Vec<SizeReport> = Vec::new();
    for &n in &plan.sizes {
        let name = format!("incident_scale_{}_{}", std::process::id(), size_label(n));
        db::drop_database(&mut admin, &name).await?;
        db::create_database(&mut admin, &name, None).await?;
        let book = server.database(&name)?;
        let result = one_size(&book, n, plan, say).await;
        if plan.keep_database {
            say(&format!("Kept the database {name}"));
        } else {
            let _ = db::drop_database(&mut admin, &name).await;
        }
        let mut report = result?;
        if let Some(before) = sizes.last() {
            for f in &mut report.figures {
                let prev = before.figures.iter().find(|p| p.name == f.name).map(|p| p.median);
                f.growth = prev.filter(|p| *p > 0.0).map(|p| f.median / p);
            }
        }
        done(&report);
        sizes.push(report);
    }
    Ok(ScaleReport { server: version, sizes })
}

/// Median, fastest and slowest of some runs.
fn figure(name: &'static str, unit: Unit, mut runs: Vec<f64>) -> Figure {
    runs.sort_by(f64::total_cmp);
    let n = runs.len();
    let median = super::median(runs.clone()).unwrap_or(0.0);
    Figure {
        name,
        unit,
        median,
        min: runs.first().copied().unwrap_or(0.0),
        max: runs.last().copied().unwrap_or(0.0),
        runs: n,
        expected: expected(name),
        growth: None,
    }
}

/// The wall times of `runs` runs of a block (`$i`: the run's number).
macro_rules! timed {
    ($runs:expr, |$i:ident| $body:block) => {{
        let mut out = Vec::with_capacity($runs);
        for $i in 0..$runs {
            let t = Instant::now();
            $body
            out.push(t.elapsed().as_secs_f64());
        }
        out
    }};
}

/// The console's filter resolution (`console::worker::requests::resolve`): times of day
/// against the book's last trading day, unknown symbols refused.
async fn resolve(conn: &mut DbConn, q: &OrderQuery) -> Result<ResolvedQuery> {
    let times = db::resolve_time_bounds(&mut *conn, [q.from, q.to]).await?;
    let unknown = if q.symbols.is_empty() { Vec::new() } else { db::unknown_symbols(&mut *conn, &q.symbols).await? };
    q.resolved(times, &unknown).map_err(Error::BadInput)
}

/// A first page as the console loads it (`load_orders`): the filter resolved, the page,
/// then the repeat marks of its rows. Fails on an empty page: the figure would time nothing.
async fn first_page(conn: &mut DbConn, q: &OrderQuery) -> Result<()> {
    let f = resolve(conn, q).await?;
    let (rows, _) = db::orders_page(&mut *conn, &f, OrderSort::default(), &db::PageFrom::Start, PAGE).await?;
    if rows.is_empty() {
        return Err(Error::CheckFailed(format!("the first page is empty: {f:?}")));
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    db::repeat_counts(&mut *conn, &ids, crate::core::blast::REPEAT_WITHIN_SECONDS).await?;
    Ok(())
}

async fn one_size(book: &ConnectSettings, n: u64, plan: &ScalePlan, say: Say<'_>) -> Result<SizeReport> {
    let label = size_label(n);
    say(&format!("Book of {label} orders: migrating …"));
    {
        let pool = book.session_pool(2, "the benchmark").await?;
        db::migrate(&pool).await?;
        // Four eyes off in the bench's own database, as in the rollback bench: it measures
        // the rollback, not the policy (which the step still reads).
        db::set_approval_policy(&pool, &serde_json::json!({ "enabled": false })).await?;
        pool.close().await;
    }
    // The book ends just before midnight UTC today: its last day is yesterday, full.
    let midnight = Utc::now().date_naive().and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    let end_ms = midnight - SPACING_MS;
    let first_ms = end_ms - (n as i64 - 1) * SPACING_MS;
    say(&format!("Book of {label} orders: generating on the server …"));
    let mut conn = book.session_connection("the benchmark").await?;
    let build = generate::build(&mut conn, n, end_ms, say).await?;
    let database_bytes = db::database_bytes(&mut conn).await?;
    say(&format!(
        "Book of {label} orders: generated in {:.1} s ({:.1} GB); the audit's checkpoint …",
        build.total_seconds,
        database_bytes as f64 / 1e9
    ));
    let pool = book.pool(4).await?;
    let t = Instant::now();
    db::refresh_audit_checkpoint(pool.session_pool("the benchmark")?, true).await?;
    let checkpoint_seconds = t.elapsed().as_secs_f64();

    let runs = plan.runs.max(1);
    let few = runs.min(3);
    let mut figures = Vec::new();
    let mut c = pool.acquire().await?;

    say(&format!("Book of {label} orders: the orders list …"));
    let all = OrderQuery::default();
    let page = timed!(runs, |_i| { first_page(&mut c, &all).await? });
    figures.push(figure("orders list, first page", Unit::Seconds, page));
    // EURUSD from 22:00 to 23:00 on the book's last day (times of day, as typed in the
    // console's filter line): within the last 2.4 hours, which even the 10 k book covers.
    let window = OrderQuery {
        symbols: vec!["EURUSD".into()],
        from: Some(TimeBound::TimeOfDay(NaiveTime::from_hms_opt(22, 0, 0).unwrap_or(NaiveTime::MIN))),
        to: Some(TimeBound::TimeOfDay(NaiveTime::from_hms_opt(23, 0, 0).unwrap_or(NaiveTime::MIN))),
        ..OrderQuery::default()
    };
    let filtered = timed!(runs, |_i| { first_page(&mut c, &window).await? });
    figures.push(figure("symbol + 1 h window, first page", Unit::Seconds, filtered));
    let mut counted = 0;
    let count_runs = timed!(runs, |_i| {
        let f = resolve(&mut c, &all).await?;
        counted = db::count_orders(&mut c, &f, crate::core::orders::TITLE_COUNT_CAP).await?.0;
    });
    let expected_count = (n as i64).min(crate::core::orders::TITLE_COUNT_CAP);
    if counted != expected_count {
        return Err(Error::CheckFailed(format!("the title counted {counted} orders, not {expected_count}")));
    }
    figures.push(figure("count in the list's title", Unit::Seconds, count_runs));

    say(&format!("Book of {label} orders: the blast radius …"));
    let blast = timed!(runs, |_i| {
        let per_minute = db::executions_per_minute(&mut c).await?;
        let repeated = db::repeated_executions(&mut c, crate::core::blast::REPEAT_WITHIN_SECONDS).await?;
        let _ = crate::core::blast::suspicions(repeated, chrono::Duration::minutes(2));
        if per_minute.is_empty() {
            return Err(Error::CheckFailed("the blast radius found no executions".into()));
        }
    });
    figures.push(figure("blast radius", Unit::Seconds, blast));

    // Orders to roll back, from three places in the book: a tenth in (pre-checks), a fifth
    // (single rollbacks), two fifths on (batches: 3,000 orders, which even 10 k has).
    let at = |tenths: i64| first_ms + (n as i64 * tenths / 10) * SPACING_MS;
    let prechecked = db::scale_orders_from(&mut conn, at(1), runs as i64).await?;
    let singles = db::scale_orders_from(&mut conn, at(2), runs as i64).await?;
    let batched = db::scale_orders_from(&mut conn, at(4), (few * BATCH) as i64).await?;
    if prechecked.len() < runs || singles.len() < runs || batched.len() < few * BATCH {
        return Err(Error::CheckFailed("the book has too few executed orders for the figures".into()));
    }

    say(&format!("Book of {label} orders: pre-checks and single rollbacks …"));
    let pre = timed!(runs, |i| {
        let (order, user) = prechecked[i];
        if !db::precheck(&pool, order, user).await?.ready {
            return Err(Error::CheckFailed(format!("the pre-check of {order} did not pass")));
        }
    });
    figures.push(figure("pre-check", Unit::Seconds, pre));
    let mut single_runs = Vec::new();
    for &(order, user) in &singles {
        let p = db::precheck(&pool, order, user).await?;
        let baseline = p.baseline.ok_or_else(|| Error::CheckFailed(format!("no baseline for {order}")))?;
        let req = RollbackRequest {
            order,
            user,
            reason: "bench: single rollback".into(),
            baseline,
            group: false,
            operation: Uuid::new_v4(),
        };
        let t = Instant::now();
        let r = rollback_and_prove(&pool, &mut c, &req, &|| false).await?;
        single_runs.push(t.elapsed().as_secs_f64());
        if !r.rollback.success || !r.postcheck.as_ref().is_some_and(|p| p.successful) {
            return Err(Error::CheckFailed(format!("the rollback of {order} was not proved")));
        }
    }
    figures.push(figure("single rollback", Unit::Seconds, single_runs));

    say(&format!("Book of {label} orders: batches of {BATCH} …"));
    let mut batch_runs = Vec::new();
    for chunk in batched.chunks(BATCH).take(few) {
        let items: Vec<BatchItem> = chunk.iter().map(|&(order_id, user_id)| BatchItem { order_id, user_id }).collect();
        // The CLI's defaults (`rollback --orders FILE --yes`): 4 connections, 50 per call.
        let opts = BatchOptions::new("bench: batch of 1,000".into());
        let t = Instant::now();
        let (summary, outcomes) = batch::run(book, items, &opts, Arc::new(Progress::default())).await?;
        let proof = batch::prove(&pool, &summary, &outcomes).await?;
        batch_runs.push(t.elapsed().as_secs_f64());
        if summary.rolled_back != chunk.len() || !proof.passed() {
            return Err(Error::CheckFailed(format!(
                "the batch rolled back {} of {} orders; proof: {}",
                summary.rolled_back,
                chunk.len(),
                proof.sentence()
            )));
        }
    }
    figures.push(figure("batch of 1,000", Unit::Seconds, batch_runs));

    say(&format!("Book of {label} orders: the audits …"));
    let mut violations = 0;
    let checkpointed = timed!(runs, |_i| {
        violations += db::ledger_audit(&mut c).await?.len();
    });
    figures.push(figure("audit from checkpoint", Unit::Seconds, checkpointed));
    let full = timed!(few, |_i| {
        violations += db::ledger_audit_full(&mut c).await?.len();
    });
    figures.push(figure("full audit", Unit::Seconds, full));
    if violations > 0 {
        return Err(Error::CheckFailed(format!("the audits found {violations} violation(s) in the {label} book")));
    }
    drop(c);
    pool.close().await;

    if let Some(binary) = &plan.console {
        say(&format!("Book of {label} orders: the console, paging …"));
        let mut rss = Vec::new();
        for i in 0..few {
            let (binary, url, tag) = (binary.clone(), book.url.clone(), format!("{label}-{i}"));
            let kib = tokio::task::spawn_blocking(move || super::console_rss::rss_after_paging(&binary, &url, &tag))
                .await
                .map_err(|e| Error::task("console", e))??;
            rss.push(kib as f64);
        }
        figures.push(figure("console RSS after paging", Unit::Kib, rss));
    }
    let _ = conn.close().await;
    Ok(SizeReport {
        orders: n,
        accounts: generate::accounts_for(n),
        build,
        checkpoint_seconds,
        database_bytes,
        figures,
    })
}
