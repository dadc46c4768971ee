//! The fault harness proves itself (issue 9): a server killed with -9 comes back on the
//! same socket and data with what it committed and without what it had not; only the
//! sessions named are terminated; a frozen server answers again once thawed; the checks
//! catch money that moved and a rollback without its row. Every test has a private
//! server of its own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::db::BURST_SQL;
use crate::support::faults::*;
use incident_console::store::db;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The first `n` executed orders of the demo book's burst, with their users.
async fn burst_orders(pool: &PgPool, n: i64) -> Vec<(Uuid, Uuid)> {
    let sql = format!("SELECT id, user_id FROM orders WHERE status = 'executed' AND {BURST_SQL} ORDER BY id LIMIT $1");
    let orders: Vec<(Uuid, Uuid)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(n).fetch_all(pool).await.expect("burst orders");
    assert_eq!(orders.len() as i64, n, "the burst has {n} executed orders");
    orders
}

async fn status(pool: &PgPool, order: Uuid) -> String {
    sqlx::query_scalar("SELECT status::text FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(pool)
        .await
        .expect("status")
}

async fn answers(conn: &mut PgConnection) -> bool {
    sqlx::query("SELECT 1").execute(conn).await.is_ok()
}

#[tokio::test]
async fn a_server_killed_with_minus_9_comes_back_with_what_it_committed() {
    let server = PrivateServer::start().await;
    let pool = server.pool().await;
    let orders = burst_orders(&pool, 2).await;
    let before = Book::read(&pool).await;
    let (done, done_user) = orders[0];
    assert!(db::rollback_order(&pool, done, done_user, "committed before the crash").await.expect("rollback").success);
    // A rollback in flight when the server dies: done, not committed.
    let mut open = server.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut open).await.expect("begin");
    let (undone, undone_user) = orders[1];
    let r = db::rollback_order(&mut open, undone, undone_user, "in flight").await.expect("rollback in flight");
    assert!(r.success, "{r:?}");

    let postmaster = server.postmaster_pid().expect("running");
    let started = Instant::now();
    let killed = server.kill9();
    let killed_in = started.elapsed();
    // The postmaster, its helpers (checkpointer, WAL writer …) and the pool's and our sessions.
    assert!(killed >= 4, "{killed} processes");
    assert_eq!(server.postmaster_pid(), None);
    assert!(!answers(&mut open).await, "a session outlived its server");
    pool.close().await;

    let started = Instant::now();
    server.restart().await;
    eprintln!("kill9 took {killed_in:?} ({killed} processes); restart with crash recovery {:?}", started.elapsed());
    assert_ne!(server.postmaster_pid(), Some(postmaster));
    assert!(server.log().contains("automatic recovery in progress"), "no crash recovery:\n{}", server.log());

    let pool = server.pool().await;
    let after = Book::read(&pool).await;
    assert_eq!(after.assert_money_exact(&before), BTreeSet::from([done]), "the committed rollback survived, alone");
    assert_eq!(status(&pool, undone).await, "executed");
    assert_eq!(assert_rolled_back_once(&pool).await, 1);
    // And the server works: the order whose rollback died with it can be rolled back now.
    assert!(db::rollback_order(&pool, undone, undone_user, "after the crash").await.expect("rollback").success);
    assert_eq!(assert_rolled_back_once(&pool).await, 2);
}

#[tokio::test]
async fn terminate_backends_ends_only_the_sessions_it_names() {
    let server = PrivateServer::start().await;
    let named = async |app: &str| {
        let opts: PgConnectOptions = server.url().parse().expect("url");
        PgConnection::connect_with(&opts.application_name(app)).await
    };
    let mut victims = [named("fault-victim").await.expect("victim"), named("fault-victim").await.expect("victim")];
    let mut bystander = named("fault-bystander").await.expect("bystander");
    let mut sleeper = named("fault-sleeper").await.expect("sleeper");
    let sleeping = tokio::spawn(async move {
        let started = Instant::now();
        let r = sqlx::query("SELECT pg_sleep(60) /* fault-sleep-marker */").execute(&mut sleeper).await;
        (r.is_ok(), started.elapsed())
    });
    server.wait_for_sessions(Sessions::QueryLike("%fault-sleep-marker%"), 1, Duration::from_secs(10)).await;

    assert_eq!(server.terminate_backends(Sessions::App("fault-victim")).await, 2);
    for victim in &mut victims {
        assert!(!answers(victim).await, "a terminated session answered");
    }
    assert!(answers(&mut bystander).await, "the bystander was terminated");
    assert!(!sleeping.is_finished(), "the sleeper was terminated");

    assert_eq!(server.terminate_backends(Sessions::QueryLike("%fault-sleep-marker%")).await, 1);
    let (ok, slept) = tokio::time::timeout(Duration::from_secs(10), sleeping).await.expect("in time").expect("join");
    assert!(!ok && slept < Duration::from_secs(30), "the sleep ended by itself after {slept:?}");
    assert!(answers(&mut bystander).await, "the bystander was terminated");
    assert_eq!(server.terminate_backends(Sessions::App("nobody")).await, 0);
}

#[tokio::test]
async fn a_frozen_server_answers_nothing_until_it_is_resumed() {
    let server = PrivateServer::start().await;
    let mut conn = server.conn().await;
    let stopped = server.stop_answering();
    assert!(stopped >= 3, "{stopped} processes");
    let query = tokio::spawn(async move {
        let r = sqlx::query_scalar::<_, i32>("SELECT 41 + 1").fetch_one(&mut conn).await;
        r.expect("answered after resume")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "a frozen server answered");
    server.resume();
    let answer = tokio::time::timeout(Duration::from_secs(10), query).await.expect("answered in time").expect("join");
    assert_eq!(answer, 42);
}

#[tokio::test]
async fn the_checks_catch_money_that_moved_and_a_rollback_without_its_row() {
    let server = PrivateServer::start().await;
    let pool = server.pool().await;
    let (order, user) = burst_orders(&pool, 1).await[0];
    let before = Book::read(&pool).await;
    // Behind the contract's back (triggers off for this session): a cent appears.
    let mut forger = server.conn().await;
    sqlx::raw_sql("SET session_replication_role = replica").execute(&mut forger).await.expect("replica");
    sqlx::query("UPDATE profiles SET balance = balance + 0.01 WHERE id = $1")
        .bind(user)
        .execute(&mut forger)
        .await
        .expect("forge a cent");
    let after = Book::read(&pool).await;
    let caught = std::panic::catch_unwind(|| after.assert_money_exact(&before)).expect_err("a cent went unnoticed");
    let said = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(said.contains(&user.to_string()), "{said}");

    // An order marked rolled back without its rollback: no audit row, its position open.
    sqlx::query(
        "UPDATE orders SET status = 'rolled_back', rolled_back_at = now(), rolled_back_reason = 'forged' WHERE id = $1",
    )
    .bind(order)
    .execute(&mut forger)
    .await
    .expect("forge a rollback");
    let checking = pool.clone();
    let caught = tokio::spawn(async move { assert_rolled_back_once(&checking).await }).await;
    assert!(caught.expect_err("a forged rollback went unnoticed").is_panic());
}
