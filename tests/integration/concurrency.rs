//! Rollbacks racing each other and the executor, on a real PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::db::*;
use incident_console::core::error::Error;
use incident_console::ops::drill::wait_until_waiting;
use incident_console::store::db;
use incident_console::store::db::is_retryable;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
enum Isolation {
    ReadCommitted,
    Serializable,
}

async fn connect(t: &TestDb, isolation: Isolation) -> PgConnection {
    let mut c = t.conn().await;
    if let Isolation::Serializable = isolation {
        db::set_serializable(&mut c).await.expect("serializable");
    }
    c
}

/// Calls a rollback function, retrying the whole call on serialization failures and
/// deadlocks as every client of the contract must. Returns the result and the retries.
async fn rollback_retrying(
    c: &mut PgConnection,
    order: Uuid,
    user: Uuid,
    group: bool,
) -> (incident_console::core::contract::RollbackResult, u32) {
    let mut retries = 0;
    loop {
        let r = if group {
            db::rollback_group(&mut *c, order, user, "race").await
        } else {
            db::rollback_order(&mut *c, order, user, "race").await
        };
        match r {
            Ok(r) => return (r, retries),
            Err(e) if is_retryable(e.sqlstate()) && retries < 20 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(5 * u64::from(retries))).await;
            }
            Err(e) => panic!("rollback failed: {e}"),
        }
    }
}

async fn double_rollback_overlapping(isolation: Isolation, first_group: bool, second_group: bool) {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let order = executed(&t.pool, user, "1000", Some(tx)).await;
    let before = money_of(&t.pool, user).await;

    let mut first = connect(&t, isolation).await;
    let mut second = connect(&t, isolation).await;
    let mut observer = t.conn().await;
    let second_pid = db::backend_pid(&mut second).await.expect("pid");

    // The first operator's rollback holds its locks inside an open transaction ...
    let mut open = first.begin().await.expect("begin");
    let r1 = if first_group {
        db::rollback_group(&mut *open, order, user, "first").await
    } else {
        db::rollback_order(&mut *open, order, user, "first").await
    }
    .expect("first rollback");
    assert!(r1.success, "{r1:?}");

    // ... while the second one starts and is seen waiting for them.
    let racer = tokio::spawn(async move { rollback_retrying(&mut second, order, user, second_group).await });
    assert!(
        wait_until_waiting(&mut observer, second_pid, Duration::from_secs(10)).await.expect("poll"),
        "the second rollback never waited on the first one's lock"
    );
    open.commit().await.expect("commit");
    let (r2, retries) = racer.await.expect("racer");

    assert!(!r2.success, "{isolation:?}: the second rollback must not succeed: {r2:?}");
    assert_eq!(r2.error_code.as_deref(), Some("already_rolled_back"), "{r2:?}");
    if let Isolation::Serializable = isolation {
        assert!(retries >= 1, "at SERIALIZABLE the waiting call fails with 40001 and is retried");
    }
    let after = money_of(&t.pool, user).await;
    assert_eq!(after.0, before.0 + dec("22.22"), "refunded exactly once");
    assert_eq!(after.1, before.1 - dec("22"), "margin released exactly once");
    assert_eq!(db::rollback_audit_rows(&t.pool, order).await.expect("rows"), 1);
    let reversals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE order_id = $1 AND kind = 'reversal'")
            .bind(order)
            .fetch_one(&t.pool)
            .await
            .expect("reversals");
    assert_eq!(reversals, 2);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn concurrent_double_rollback_read_committed() {
    double_rollback_overlapping(Isolation::ReadCommitted, false, false).await;
}

#[tokio::test]
async fn concurrent_double_rollback_serializable() {
    double_rollback_overlapping(Isolation::Serializable, false, false).await;
}

#[tokio::test]
async fn concurrent_group_rollbacks_read_committed() {
    double_rollback_overlapping(Isolation::ReadCommitted, true, true).await;
}

#[tokio::test]
async fn concurrent_group_and_single_serializable() {
    double_rollback_overlapping(Isolation::Serializable, true, false).await;
}

#[tokio::test]
async fn concurrent_single_and_group_read_committed() {
    double_rollback_overlapping(Isolation::ReadCommitted, false, true).await;
}

struct Book {
    /// Executed orders not yet picked for rollback: (order, user).
    live: Vec<(Uuid, Uuid)>,
    /// Orders some worker rolled back successfully.
    rolled_back: Vec<Uuid>,
}

fn retryable(e: &Error) -> bool {
    is_retryable(e.sqlstate())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_test_money_is_never_created_or_lost() {
    const WORKERS: usize = 4;
    const RUN_FOR: Duration = Duration::from_secs(4);
    let t = test_db().await;
    let deposit = dec("100000");
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(account(&t.pool, "100000").await);
    }
    let users = Arc::new(users);
    let book = Arc::new(Mutex::new(Book { live: Vec::new(), rolled_back: Vec::new() }));
    let stop_at = Instant::now() + RUN_FOR;

    // The reader: on every snapshot the book nets to zero and nothing is negative.
    let reader_db = t.url.clone();
    let reader = tokio::spawn(async move {
        let mut c = PgConnection::connect(&reader_db).await.expect("reader");
        let mut snapshots = 0u64;
        while Instant::now() < stop_at {
            let (net, min_balance, min_margin): (Decimal, Decimal, Decimal) = sqlx::query_as(
                "SELECT (SELECT coalesce(sum(balance + margin_used), 0) FROM profiles) \
                      + (SELECT coalesce(sum(CASE WHEN credit_account IN ('house_clearing', 'house_commission') THEN amount \
                                                  WHEN debit_account IN ('house_clearing', 'house_commission') THEN -amount \
                                                  ELSE 0 END), 0) FROM ledger_transfers), \
                        (SELECT min(balance) FROM profiles), (SELECT min(margin_used) FROM profiles)",
            )
            .fetch_one(&mut c)
            .await
            .expect("snapshot");
            assert_eq!(net, Decimal::ZERO, "the ledger does not net to zero at snapshot {snapshots}");
            assert!(min_balance >= Decimal::ZERO && min_margin >= Decimal::ZERO);
            if snapshots.is_multiple_of(10) {
                let violations = db::ledger_audit(&mut c).await.expect("audit");
                assert!(violations.is_empty(), "snapshot {snapshots}: {violations:?}");
            }
            snapshots += 1;
        }
        snapshots
    });

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let url = t.url.clone();
        let users = users.clone();
        let book = book.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(w as u64);
            let mut c = PgConnection::connect(&url).await.expect("worker");
            let mut twin = PgConnection::connect(&url).await.expect("twin");
            // Half the workers run at SERIALIZABLE, where conflicts surface as 40001.
            if w % 2 == 1 {
                db::set_serializable(&mut c).await.expect("serializable");
                db::set_serializable(&mut twin).await.expect("serializable");
            }
            let (mut executed_n, mut rolled, mut doubles, mut retries) = (0u32, 0u32, 0u32, 0u32);
            while Instant::now() < stop_at {
                let roll = rng.random_range(0..10);
                if roll < 5 {
                    let user = users[rng.random_range(0..users.len())];
                    let key = Uuid::new_v4().to_string();
                    let qty = Decimal::from(rng.random_range(1..=50) * 100);
                    let side = if rng.random_bool(0.5) { "buy" } else { "sell" };
                    let o = db::NewOrder {
                        user_id: user,
                        symbol: "GBPUSD",
                        order_type: "market",
                        side,
                        quantity: qty,
                        price: dec("1.27"),
                        idempotency_key: &key,
                        transaction_id: None,
                    };
                    match db::execute_order(&mut c, &o).await {
                        Ok(r) if r["success"] == true => {
                            let id = Uuid::parse_str(r["order_id"].as_str().unwrap_or_default()).expect("id");
                            book.lock().await.live.push((id, user));
                            executed_n += 1;
                        }
                        Ok(r) => panic!("execution refused: {r}"),
                        Err(e) if retryable(&e) => retries += 1,
                        Err(e) => panic!("execution failed: {e}"),
                    }
                } else {
                    let pick = {
                        let mut b = book.lock().await;
                        if b.live.is_empty() {
                            None
                        } else {
                            let i = rng.random_range(0..b.live.len());
                            Some(b.live.swap_remove(i))
                        }
                    };
                    let Some((order, user)) = pick else { continue };
                    // Sometimes two rollbacks of the same order at once.
                    let (r, extra) = if roll == 9 {
                        doubles += 1;
                        let (a, b) = tokio::join!(
                            rollback_retrying(&mut c, order, user, false),
                            rollback_retrying(&mut twin, order, user, false)
                        );
                        let wins = u32::from(a.0.success) + u32::from(b.0.success);
                        assert_eq!(wins, 1, "exactly one of two racing rollbacks succeeds: {a:?} {b:?}");
                        (if a.0.success { a.0 } else { b.0 }, a.1 + b.1)
                    } else {
                        rollback_retrying(&mut c, order, user, false).await
                    };
                    retries += extra;
                    assert!(r.success, "{r:?}");
                    book.lock().await.rolled_back.push(order);
                    rolled += 1;
                }
            }
            (executed_n, rolled, doubles, retries)
        }));
    }

    let mut totals = (0, 0, 0, 0);
    for w in workers {
        let (e, r, d, x) = w.await.expect("worker");
        totals = (totals.0 + e, totals.1 + r, totals.2 + d, totals.3 + x);
    }
    let snapshots = reader.await.expect("reader");
    eprintln!(
        "bank test: {} executed, {} rolled back ({} raced twice), {} retries, {snapshots} snapshots checked",
        totals.0, totals.1, totals.2, totals.3
    );
    assert!(totals.0 > 50 && totals.1 > 20 && totals.2 > 0, "too little happened: {totals:?}");
    assert!(snapshots > 10);
    assert_consistent(&t.pool).await;

    // Every rolled-back order left its user exactly as before its execution: its transfers
    // and their reversals cancel out, account by account.
    let rolled_back = book.lock().await.rolled_back.clone();
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ( \
             SELECT order_id, acct, sum(delta) AS net FROM ( \
                 SELECT order_id, credit_account AS acct, amount AS delta FROM ledger_transfers WHERE order_id = ANY($1) \
                 UNION ALL \
                 SELECT order_id, debit_account, -amount FROM ledger_transfers WHERE order_id = ANY($1)) x \
             GROUP BY order_id, acct HAVING sum(delta) <> 0) bad",
    )
    .bind(&rolled_back)
    .fetch_one(&t.pool)
    .await
    .expect("net per order");
    assert_eq!(unbalanced, 0);
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM order_audit_log WHERE order_id = ANY($1) AND action = 'order_rolled_back'",
    )
    .bind(&rolled_back)
    .fetch_one(&t.pool)
    .await
    .expect("rows");
    assert_eq!(rows as usize, rolled_back.len(), "one audit row per rolled-back order");

    // And rolling back everything that is left brings every account back to its deposit.
    let live = book.lock().await.live.clone();
    for (order, user) in live {
        let mut c = t.conn().await;
        let (r, _) = rollback_retrying(&mut c, order, user, false).await;
        assert!(r.success, "{r:?}");
    }
    for &user in users.iter() {
        assert_eq!(money_of(&t.pool, user).await, (deposit, Decimal::ZERO));
    }
    assert_consistent(&t.pool).await;
}

/// A batch cancelled while its call waits on a lock: the call is cancelled on the server,
/// nothing is retried or started afterwards, and nothing changed — also once the lock is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_stops_on_the_server_and_changes_nothing() {
    use incident_console::core::batch::BatchItem;
    use incident_console::ops::batch::{self, BatchOptions, Progress};
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(executed(&t.pool, user, "1000", None).await);
    }
    let before = fingerprint(&t.pool).await;

    // Another session holds the first order's row: the batch's first call waits on it.
    let mut holder = t.conn().await;
    sqlx::query("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE")
        .bind(orders[0])
        .execute(&mut holder)
        .await
        .expect("lock the order");

    let mut settings = t.settings();
    settings.lock_timeout = Duration::from_secs(60);
    let mut opts = BatchOptions::new("cancel test".into());
    opts.concurrency = 1;
    let progress = Arc::new(Progress::default());
    let items: Vec<BatchItem> = orders.iter().map(|&order_id| BatchItem { order_id, user_id: user }).collect();
    let run = {
        let progress = progress.clone();
        tokio::spawn(async move { batch::run(&settings, items, &opts, progress).await })
    };
    let pid = loop {
        if let Some(&pid) = progress.backends.lock().expect("backends").first() {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut observer = t.conn().await;
    assert!(
        wait_until_waiting(&mut observer, pid, Duration::from_secs(10)).await.expect("pg_stat_activity"),
        "the batch's call waits on the held row"
    );

    // What the console's cancel does: stop, and cancel the calls in flight on the server.
    let started = Instant::now();
    progress.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let pids = progress.backends.lock().expect("backends").clone();
    for pid in pids {
        db::cancel_backend(&t.pool, pid).await.expect("pg_cancel_backend");
    }
    let (summary, _) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the batch ends without waiting for the lock")
        .expect("join")
        .expect("the batch runs");
    assert!(started.elapsed() < Duration::from_secs(5), "ended {:?} after the cancel", started.elapsed());
    assert_eq!((summary.rolled_back, summary.not_attempted), (0, 3), "{summary:?}");
    assert!(summary.failed.is_empty() && summary.refused.is_empty(), "{summary:?}");

    // The lock released: still nothing happens, nothing changed.
    sqlx::query("ROLLBACK").execute(&mut holder).await.expect("release");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fingerprint(&t.pool).await, before);
    assert_consistent(&t.pool).await;
}
