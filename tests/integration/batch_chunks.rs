//! Batches in chunks (migration 20, `rollback_orders`): many orders per call and per
//! transaction, each in a subtransaction of its own, on a real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use crate::support::db::*;
use incident_console::core::batch::{BatchItem, Outcome, Summary};
use incident_console::core::contract::ChunkAnswer;
use incident_console::ops::batch::{self, BatchOptions, Progress};
use incident_console::ops::drill::wait_until_waiting;
use incident_console::store::db;
use incident_console::store::db::is_retryable;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The code of an answer, or `retry`/`not attempted`/`success`.
fn code(a: &ChunkAnswer) -> String {
    match a {
        ChunkAnswer::Answered(r) if r.success => "success".into(),
        ChunkAnswer::Answered(r) => r.error_code.clone().unwrap_or_default(),
        ChunkAnswer::Retry { sqlstate } => format!("retry {sqlstate}"),
        ChunkAnswer::NotAttempted => "not attempted".into(),
    }
}

/// How many `order_rolled_back` audit rows each of `orders` has, in their order.
async fn audit_rows(t: &TestDb, orders: &[Uuid]) -> Vec<i64> {
    let mut n = Vec::new();
    for o in orders {
        n.push(
            sqlx::query_scalar(
                "SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back' AND order_id = $1",
            )
            .bind(o)
            .fetch_one(&t.pool)
            .await
            .expect("audit rows"),
        );
    }
    n
}

/// A refusal in a chunk (another user's order, one already rolled back, an unknown id)
/// is answered in its place and undoes none of its neighbours; the money is exact.
#[tokio::test]
async fn a_refusal_in_a_chunk_does_not_undo_its_neighbours() {
    let t = test_db().await;
    let (alice, bob) = (account(&t.pool, "100000").await, account(&t.pool, "100000").await);
    let a: Vec<Uuid> =
        [executed(&t.pool, alice, "1000", None).await, executed(&t.pool, alice, "2000", None).await].to_vec();
    let b = executed(&t.pool, bob, "500", None).await;
    let r = db::rollback_order(&t.pool, a[1], alice, "first").await.expect("rollback");
    assert!(r.success, "{r:?}");

    let orders = [a[0], b, a[1], Uuid::new_v4(), b];
    let users = [alice, alice, alice, alice, bob];
    let answers = db::rollback_orders(&t.pool, &orders, &users, "chunk").await.expect("rollback_orders");
    let codes: Vec<String> = answers.iter().map(code).collect();
    assert_eq!(codes, ["success", "order_not_found", "already_rolled_back", "order_not_found", "success"]);
    assert_eq!(audit_rows(&t, &[a[0], a[1], b]).await, [1, 1, 1]);
    for user in [alice, bob] {
        assert_eq!(money_of(&t.pool, user).await, (dec("100000"), Decimal::ZERO));
    }
    assert_consistent(&t.pool).await;

    // Bad calls change nothing and say why, once for every order.
    let before = fingerprint(&t.pool).await;
    let c = executed(&t.pool, bob, "10", None).await;
    let before_c = fingerprint(&t.pool).await;
    assert_ne!(before, before_c);
    for (orders, users, reason, expected) in [
        (vec![c], vec![bob], " ", "invalid_reason"),
        (vec![c], vec![bob, bob], "r", "invalid_argument"),
        (vec![], vec![], "r", "invalid_argument"),
        (vec![c; 1001], vec![bob; 1001], "r", "invalid_argument"),
    ] {
        let answers = db::rollback_orders(&t.pool, &orders, &users, reason).await.expect("answer");
        assert_eq!(answers.len(), orders.len());
        assert!(answers.iter().all(|a| code(a) == expected), "{expected}: {answers:?}");
    }
    assert_eq!(fingerprint(&t.pool).await, before_c);
}

/// With the breaker open the first order is refused and the rest of the chunk is not
/// tried; nothing changes.
#[tokio::test]
async fn an_open_breaker_stops_the_chunk_at_its_first_order() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(executed(&t.pool, user, "100", None).await);
    }
    db::open_breaker(&t.pool, "test", "person").await.expect("open the breaker");
    let before = fingerprint(&t.pool).await;
    let answers = db::rollback_orders(&t.pool, &orders, &[user; 3], "chunk").await.expect("answer");
    assert_eq!(answers.iter().map(code).collect::<Vec<_>>(), ["breaker_open", "not attempted", "not attempted"]);
    assert_eq!(fingerprint(&t.pool).await, before);

    // The batch reports the rest not attempted and stops.
    let items: Vec<BatchItem> = orders.iter().map(|&order_id| BatchItem { order_id, user_id: user }).collect();
    let progress = Arc::new(Progress::default());
    let (summary, _) =
        batch::run(&t.settings(), items, &BatchOptions::new("chunk".into()), progress.clone()).await.expect("batch");
    assert_eq!((summary.refused.len(), summary.not_attempted, summary.rolled_back), (1, 2, 0), "{summary:?}");
    assert!(progress.breaker.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(fingerprint(&t.pool).await, before);
}

/// A lock timeout on one order of a chunk undoes that order's subtransaction only: it is
/// answered `retry`, its neighbours are done.
#[tokio::test]
async fn a_lock_timeout_in_a_chunk_marks_only_that_order_for_retry() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(executed(&t.pool, user, "100", None).await);
    }
    let mut holder = t.conn().await;
    sqlx::query("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE")
        .bind(orders[1])
        .execute(&mut holder)
        .await
        .expect("lock");
    let mut c = t.conn().await;
    sqlx::query("SET lock_timeout = '200ms'").execute(&mut c).await.expect("lock_timeout");
    let answers = db::rollback_orders(&mut c, &orders, &[user; 3], "chunk").await.expect("answer");
    assert_eq!(answers.iter().map(code).collect::<Vec<_>>(), ["success", "retry 55P03", "success"]);
    sqlx::query("ROLLBACK").execute(&mut holder).await.expect("release");
    assert_eq!(audit_rows(&t, &orders).await, [1, 0, 1]);
    let again = db::rollback_orders(&mut c, &orders[1..2], &[user], "chunk").await.expect("again");
    assert_eq!(again.iter().map(code).collect::<Vec<_>>(), ["success"]);
    assert_eq!(money_of(&t.pool, user).await, (dec("100000"), Decimal::ZERO));
    assert_consistent(&t.pool).await;
}

/// A deadlock planted on one order of a batch's chunk: the server picks the chunk's
/// subtransaction, and the batch sends that order alone again; the others are done in the
/// first call (one attempt each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_deadlock_retries_only_that_order() {
    let t = test_db().await;
    let (alice, bob) = (account(&t.pool, "100000").await, account(&t.pool, "100000").await);
    let a1 = executed(&t.pool, alice, "100", None).await;
    let b1 = executed(&t.pool, bob, "100", None).await;
    let a2 = executed(&t.pool, alice, "100", None).await;

    // The other side of the deadlock: holds bob's profile (the chunk waits on it at b1),
    // then asks for a1's row, which the chunk holds. Its deadlock_timeout is long, so the
    // chunk's session is the one that finds the deadlock and gives up.
    let mut holder = t.conn().await;
    sqlx::query("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SET LOCAL deadlock_timeout = '30s'").execute(&mut holder).await.expect("deadlock_timeout");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE").bind(bob).execute(&mut holder).await.expect("lock");

    let mut opts = BatchOptions::new("chunk".into());
    opts.concurrency = 1;
    let progress = Arc::new(Progress::default());
    let items: Vec<BatchItem> = [(a1, alice), (b1, bob), (a2, alice)]
        .iter()
        .map(|&(order_id, user_id)| BatchItem { order_id, user_id })
        .collect();
    let run = {
        let (settings, progress) = (t.settings(), progress.clone());
        tokio::spawn(async move { batch::run(&settings, items, &opts, progress).await })
    };
    let pid = loop {
        if let Some(&pid) = progress.backends.lock().expect("backends").first() {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut observer = t.conn().await;
    assert!(wait_until_waiting(&mut observer, pid, Duration::from_secs(10)).await.expect("pg_stat_activity"));
    // Blocks until the chunk commits (the deadlock is broken on the chunk's side).
    sqlx::query("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE").bind(a1).execute(&mut holder).await.expect("a1");
    sqlx::query("ROLLBACK").execute(&mut holder).await.expect("release");

    let (summary, outcomes) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the batch ends")
        .expect("join")
        .expect("the batch runs");
    assert_eq!(summary.rolled_back, 3, "{summary:?}");
    let attempts: Vec<u32> = outcomes
        .iter()
        .map(|(_, o)| match o {
            Outcome::RolledBack { attempts, .. } => *attempts,
            o => panic!("not rolled back: {o:?}"),
        })
        .collect();
    assert_eq!(attempts, [1, 2, 1], "only the deadlocked order was sent again");
    assert_eq!(summary.retries, 1);
    assert_eq!(audit_rows(&t, &[a1, b1, a2]).await, [1, 1, 1]);
    for user in [alice, bob] {
        assert_eq!(money_of(&t.pool, user).await, (dec("100000"), Decimal::ZERO));
    }
    assert_consistent(&t.pool).await;
}

/// Single rollbacks on their own connections, retried as every client must.
async fn singles(t: &TestDb, mut pairs: Vec<(Uuid, Uuid)>, seed: u64) -> (usize, Decimal) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    let mut c: PgConnection = t.conn().await;
    let (mut done, mut refunded) = (0, Decimal::ZERO);
    for (order, user) in pairs {
        if rng.random_range(0..3) != 0 {
            continue;
        }
        let mut retries = 0;
        let r = loop {
            match db::rollback_order(&mut c, order, user, "single").await {
                Ok(r) => break r,
                Err(e) if is_retryable(e.sqlstate()) && retries < 50 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(2 * retries)).await;
                }
                Err(e) => panic!("single rollback failed: {e}"),
            }
        };
        if r.success {
            done += 1;
            refunded += r.refunded.unwrap_or_default();
        } else {
            assert_eq!(r.error_code.as_deref(), Some("already_rolled_back"), "{r:?}");
        }
    }
    (done, refunded)
}

/// Two chunked batches over the same orders (in different orders) race each other and
/// single rollbacks on other connections: every order is rolled back exactly once, every
/// account's money is back to its deposit, and the figures add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_batches_and_single_rollbacks_reverse_each_order_exactly_once() {
    let t = test_db().await;
    let deposit = dec("1000000");
    let mut users = Vec::new();
    let mut pairs = Vec::new();
    for _ in 0..12 {
        let user = account(&t.pool, "1000000").await;
        for n in 0..10 {
            pairs.push((executed(&t.pool, user, &format!("{}", 100 + n), None).await, user));
        }
        users.push(user);
    }
    let total: Decimal = {
        let ids: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
        sqlx::query_scalar("SELECT sum(total_cost) FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&t.pool)
            .await
            .expect("total")
    };

    let batch_of = |seed: u64, chunk: usize| {
        let mut items: Vec<BatchItem> =
            pairs.iter().map(|&(order_id, user_id)| BatchItem { order_id, user_id }).collect();
        items.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let settings = t.settings();
        let opts = BatchOptions { concurrency: 2, chunk_size: chunk, ..BatchOptions::new("race".into()) };
        async move { batch::run(&settings, items, &opts, Arc::new(Progress::default())).await.expect("batch") }
    };
    let ((one, _), (two, _), (s1, r1), (s2, r2)) =
        tokio::join!(batch_of(1, 7), batch_of(2, 50), singles(&t, pairs.clone(), 3), singles(&t, pairs.clone(), 4));
    let check = |s: &Summary| {
        assert!(s.failed.is_empty() && s.unknown.is_empty() && s.refused.is_empty(), "{s:?}");
        assert_eq!(s.rolled_back + s.already_rolled_back, pairs.len(), "{s:?}");
    };
    check(&one);
    check(&two);
    assert_eq!(one.rolled_back + two.rolled_back + s1 + s2, pairs.len(), "each order reversed once");
    assert_eq!(one.refunded + two.refunded + r1 + r2, total, "the refunds add up to what was taken");

    let ids: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    assert!(audit_rows(&t, &ids).await.iter().all(|&n| n == 1), "one audit row per order");
    for user in users {
        assert_eq!(money_of(&t.pool, user).await, (deposit, Decimal::ZERO));
    }
    assert_consistent(&t.pool).await;
}
