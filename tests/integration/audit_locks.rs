//! Issue 8, findings 3 and 4: the audit neither blocks nor aborts trading (no table locks:
//! a checkpoint is what one snapshot sees), and cannot be falsified (nothing a session
//! can SET switches the change log off; the server takes the horizon; an operator cannot
//! freeze the incremental audit or make a checkpoint hide a violation).

use std::time::Duration;

use crate::support::db::*;
use incident_console::store::db;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Both audits, sorted, as comparable text.
async fn both(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let show = |v: Vec<incident_console::core::contract::Violation>| {
        let mut s: Vec<String> = v
            .into_iter()
            .map(|v| format!("{:?} {} {:?} {:?}", v.user_id, v.check_name, v.expected, v.actual))
            .collect();
        s.sort();
        s
    };
    (show(db::ledger_audit(pool).await.expect("audit")), show(db::ledger_audit_full(pool).await.expect("full audit")))
}

/// Both audits agree and find nothing.
async fn assert_clean_both_ways(pool: &PgPool, when: &str) {
    let (incremental, full) = both(pool).await;
    assert_eq!(incremental, full, "{when}: the incremental audit must agree with the full one");
    assert!(full.is_empty(), "{when}: {full:?}");
}

/// A login role in `group`, with a unique name; dropped by `drop_role`.
async fn login_role(t: &TestDb, group: &str) -> String {
    let name = format!("audit_{}", &Uuid::new_v4().simple().to_string()[..12]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {name} LOGIN PASSWORD 'irrelevant'; GRANT {group} TO {name}"
    )))
    .execute(&t.pool)
    .await
    .expect("create role");
    name
}

async fn drop_role(t: &TestDb, name: &str) {
    for _ in 0..40 {
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}"))).execute(&t.pool).await;
        if r.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn connect_as(t: &TestDb, role: &str) -> PgConnection {
    let mut c = PgConnection::connect(&t.url_as(role, "irrelevant")).await.expect("login as test role");
    let who: String = sqlx::query_scalar("SELECT session_user::text").fetch_one(&mut c).await.expect("session_user");
    assert_eq!(who, role);
    c
}

/// Executes an order on `c` (any role that may) and returns its id.
async fn execute_on(c: &mut PgConnection, user: Uuid, qty: i64) -> Uuid {
    let r: serde_json::Value = sqlx::query_scalar(
        "SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', $2::numeric, 1.1, gen_random_uuid()::text)",
    )
    .bind(user)
    .bind(qty)
    .fetch_one(&mut *c)
    .await
    .expect("execute");
    assert_eq!(r["success"], true, "{r}");
    r["order_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).expect("order id")
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

// ---------------------------------------------------------------------------------------
// Finding 3: audits never block or abort trading
// ---------------------------------------------------------------------------------------

/// pgbench's binary, where the project finds the server's tools.
fn pgbench() -> Option<std::path::PathBuf> {
    let found = incident_console::store::sandbox::ServerBinaries::find().ok().map(|b| b.tool("pgbench"));
    found.filter(|p| p.is_file()).or_else(|| {
        let debian = std::path::PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
        debian.is_file().then_some(debian)
    })
}

/// What pgbench reported: transactions processed and failed.
#[derive(Debug)]
struct PgbenchRun {
    processed: u64,
    failed: u64,
    output: String,
}

/// Runs `script` with pgbench on the test database: `clients` clients for `seconds`.
fn run_pgbench(bin: &std::path::Path, t: &TestDb, script: &str, clients: u16, seconds: u32) -> PgbenchRun {
    let dir = std::env::temp_dir().join(format!("ic-audit-pgbench-{}-{}", std::process::id(), t.name));
    std::fs::create_dir_all(&dir).expect("script dir");
    let file = dir.join("execute.sql");
    std::fs::write(&file, script).expect("script");
    let opts: PgConnectOptions = t.url.parse().expect("test url");
    let host =
        opts.get_socket().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| opts.get_host().to_string());
    let c = clients.to_string();
    let out = std::process::Command::new(bin)
        .env("PGHOST", host)
        .env("PGPORT", opts.get_port().to_string())
        .env("PGUSER", opts.get_username())
        .env("PGDATABASE", opts.get_database().unwrap_or("postgres"))
        .args(["-n", "-c", &c, "-j", "2", "-T", &seconds.to_string(), "--failures-detailed", "-f"])
        .arg(&file)
        .output()
        .expect("run pgbench");
    let _ = std::fs::remove_dir_all(&dir);
    let output = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgbench failed (a client aborted?):\n{output}");
    let figure = |prefix: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    PgbenchRun {
        processed: figure("number of transactions actually processed: ").expect("processed line"),
        failed: figure("number of failed transactions: ").unwrap_or(0),
        output,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executions_under_pgbench_never_fail_while_audits_and_checkpoints_loop() {
    let Some(bin) = pgbench() else {
        eprintln!("pgbench is not installed: skipping the pgbench test");
        return;
    };
    let t = test_db().await;
    // Accounts pgbench can name: md5 of 1..=30 as uuids.
    let made: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM generate_series(1, 30) g, create_trading_account(md5(g::text)::uuid, 1e9) r \
         WHERE (r ->> 'success')::boolean",
    )
    .fetch_one(&t.pool)
    .await
    .expect("accounts");
    assert_eq!(made, 30);
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("first checkpoint");

    let script = "\\set u random(1, 30)\n\
        SELECT execute_order_atomic(md5(:u::text)::uuid, 'EURUSD', 'market', 'buy', 1000, 1.1, gen_random_uuid()::text);\n";
    let t2 = TestDb { url: t.url.clone(), name: t.name.clone(), pool: t.pool.clone() };
    let bench = tokio::task::spawn_blocking(move || run_pgbench(&bin, &t2, script, 6, 12));

    // The console's background audit, back to back: audit, then a checkpoint (a full one
    // now and then), for as long as pgbench runs.
    let (mut rounds, mut audit_errors) = (0u32, Vec::new());
    while !bench.is_finished() {
        match db::ledger_audit(&t.pool).await {
            Ok(v) => assert!(v.is_empty(), "{v:?}"),
            Err(e) => audit_errors.push(e.to_string()),
        }
        if let Err(e) = db::refresh_audit_checkpoint(&t.pool, rounds % 5 == 4).await {
            audit_errors.push(e.to_string());
        }
        rounds += 1;
    }
    let run = bench.await.expect("pgbench task");
    eprintln!(
        "pgbench: {} executions, {} failed; {rounds} audit+checkpoint rounds, {} failed",
        run.processed,
        run.failed,
        audit_errors.len()
    );
    assert!(run.processed > 0, "{}", run.output);
    assert!(rounds >= 5, "the audits must have run while pgbench did ({rounds} rounds)");
    assert_eq!(run.failed, 0, "executions failed while the audit ran:\n{}", run.output);
    assert!(audit_errors.is_empty(), "{audit_errors:?}");
    let executed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'executed'")
        .fetch_one(&t.pool)
        .await
        .expect("n");
    assert_eq!(executed as u64, run.processed);
    assert_clean_both_ways(&t.pool, "after pgbench").await;
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    assert_clean_both_ways(&t.pool, "after the last checkpoint").await;
}

#[tokio::test]
async fn a_checkpoint_neither_waits_for_an_execution_in_flight_nor_misses_it() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    executed(&t.pool, u, "1000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");

    // An execution holds its transaction open across two checkpoints.
    let mut writer = t.conn().await;
    sqlx::query("BEGIN").execute(&mut writer).await.expect("begin");
    let late = execute_on(&mut writer, u, 2000).await;
    for full in [false, true, false] {
        let c = tokio::time::timeout(Duration::from_secs(10), db::refresh_audit_checkpoint(&t.pool, full))
            .await
            .expect("a checkpoint must not wait for an execution in flight")
            .expect("checkpoint");
        assert_eq!(c.full, full);
        assert_clean_both_ways(&t.pool, "while the execution is in flight").await;
    }
    sqlx::query("COMMIT").execute(&mut writer).await.expect("commit");
    // The checkpoints did not see it; the audit from them does.
    assert_clean_both_ways(&t.pool, "after it committed").await;
    let r = db::rollback_order(&t.pool, late, u, "r").await.expect("rollback");
    assert!(r.success, "{r:?}");
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    assert_clean_both_ways(&t.pool, "after a rollback and a checkpoint").await;
}

#[tokio::test]
async fn an_open_audit_or_checkpoint_holds_no_lock_that_trading_waits_for() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    let o = executed(&t.pool, u, "1000", None).await;

    // Everything the console runs, in one transaction left open.
    let mut auditor = t.conn().await;
    sqlx::query("BEGIN").execute(&mut auditor).await.expect("begin");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut auditor).await.expect("pid");
    db::ledger_audit(&mut auditor).await.expect("audit");
    db::ledger_audit_full(&mut auditor).await.expect("full audit");
    db::ledger_audit_users(&mut auditor, &[u]).await.expect("user audit");
    let c: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_audit_checkpoint(false)").fetch_one(&mut auditor).await.expect("checkpoint");
    assert_eq!(c["success"], true, "{c}");
    let strong: Vec<(String, String)> = sqlx::query_as(
        "SELECT relation::regclass::text, mode FROM pg_locks \
         WHERE pid = $1 AND locktype = 'relation' AND mode <> 'AccessShareLock' \
           AND relation IN ('profiles'::regclass, 'orders'::regclass, 'positions'::regclass, \
                            'ledger_transfers'::regclass, 'order_audit_log'::regclass, 'book_changes'::regclass) \
         ORDER BY 1",
    )
    .bind(pid)
    .fetch_all(&t.pool)
    .await
    .expect("locks");
    assert!(strong.is_empty(), "the audit holds {strong:?}");

    // Trading goes on meanwhile, bounded by a lock timeout.
    let mut trader = t.conn().await;
    sqlx::query("SET lock_timeout = '2s'").execute(&mut trader).await.expect("lock timeout");
    execute_on(&mut trader, u, 500).await;
    let r = db::rollback_order(&mut trader, o, u, "while an audit is open").await.expect("rollback");
    assert!(r.success, "{r:?}");
    sqlx::query("COMMIT").execute(&mut auditor).await.expect("commit");
    assert_clean_both_ways(&t.pool, "after the open audit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_taken_while_executions_and_rollbacks_commit_miss_nothing() {
    let t = test_db().await;
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(account(&t.pool, "10000000").await);
    }
    let mut mine = Vec::new();
    for &u in &users {
        for _ in 0..15 {
            mine.push((executed(&t.pool, u, "500", None).await, u));
        }
    }
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");

    let mut tasks = Vec::new();
    // Rollbacks on two connections.
    for chunk in mine.chunks(45).map(|c| c.to_vec()) {
        let url = t.url.clone();
        tasks.push(tokio::spawn(async move {
            let pool = PgPool::connect(&url).await.expect("pool");
            for (o, u) in chunk {
                loop {
                    match db::rollback_order(&pool, o, u, "r").await {
                        Ok(r) => {
                            assert!(r.success, "{r:?}");
                            break;
                        }
                        Err(e) if db::is_retryable(e.sqlstate()) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    // Executions on two more, some in transactions that stay open a while, so that they
    // are in flight when a checkpoint's snapshot is taken and commit after it.
    for (n, &u) in users.iter().take(2).enumerate() {
        let url = t.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = PgConnection::connect(&url).await.expect("connection");
            for i in 0..30i64 {
                let slow = (i + n as i64) % 3 == 0;
                if slow {
                    sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
                }
                execute_on(&mut c, u, 100 + i).await;
                if slow {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    execute_on(&mut c, u, 7).await;
                    sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
                }
            }
        }));
    }
    let mut rounds = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        db::refresh_audit_checkpoint(&t.pool, rounds % 4 == 3).await.expect("checkpoint");
        rounds += 1;
        let (incremental, full) = both(&t.pool).await;
        assert_eq!(incremental, full, "round {rounds}");
        assert!(full.is_empty(), "round {rounds}: {full:?}");
    }
    for task in tasks {
        task.await.expect("worker");
    }
    assert!(rounds >= 2, "{rounds} rounds");
    assert_clean_both_ways(&t.pool, "at the end").await;
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    assert_clean_both_ways(&t.pool, "after the last checkpoint").await;
    let rolled: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rolled_back'")
        .fetch_one(&t.pool)
        .await
        .expect("count");
    assert_eq!(rolled, 90);
}

// ---------------------------------------------------------------------------------------
// Finding 4: the incremental audit cannot be falsified
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_setting_does_not_switch_off_the_change_log() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    let before = executed(&t.pool, u, "1000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");

    // Both: one session executes (as the engine) and rolls back (as the operator).
    let operator = login_role(&t, "incident_operator, incident_engine").await;
    let mut c = connect_as(&t, &operator).await;
    // Every way a session can say it: for the session, for the transaction, by function.
    sqlx::query("SET incident.book_changes = 'written'").execute(&mut c).await.expect("set");
    let a = execute_on(&mut c, u, 2000).await;
    sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
    sqlx::query("SET LOCAL incident.book_changes = 'written'").execute(&mut c).await.expect("set local");
    execute_on(&mut c, u, 300).await;
    sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
    sqlx::query("SELECT set_config('incident.book_changes', 'written', false)").execute(&mut c).await.expect("set");
    let r = db::rollback_order(&mut c, before, u, "with the setting on").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_clean_both_ways(&t.pool, "after executions with the setting on").await;

    // The next checkpoint carries nothing wrong forward.
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    let r = db::rollback_order(&mut c, a, u, "after the checkpoint").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_clean_both_ways(&t.pool, "after the next checkpoint").await;
    let _ = c.close().await;
    drop_role(&t, &operator).await;
}

#[tokio::test]
async fn a_row_written_into_the_change_log_directly_is_not_counted() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    executed(&t.pool, u, "1000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");
    // Even the superuser: only the triggers on orders and positions write the change log.
    sqlx::query("INSERT INTO book_changes (user_id, d_n_executed, d_cost_executed) VALUES ($1, 5, 100)")
        .bind(u)
        .execute(&t.pool)
        .await
        .expect("insert");
    assert_clean_both_ways(&t.pool, "after a forged change row").await;
}

#[tokio::test]
async fn operators_cannot_freeze_the_incremental_audit() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    executed(&t.pool, u, "1000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");

    // The engine's role too: the checkpoint must refuse a transaction that executed.
    let operator = login_role(&t, "incident_operator, incident_engine").await;
    let mut c = connect_as(&t, &operator).await;
    // The horizon is the server's: there is no way to pass one in.
    for sql in [
        "SELECT ledger_audit_checkpoint(9e15::bigint, 9e15::bigint, 9e15::bigint, true)",
        "SELECT ledger_audit_checkpoint(9e15::bigint, 9e15::bigint, 9e15::bigint, false)",
        "SELECT * FROM audit_horizon()",
    ] {
        let e = sqlx::query(sql).execute(&mut c).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42883"), "{sql}: {e}");
    }
    // Nor a checkpoint that counts this transaction's own writes as seen.
    sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
    execute_on(&mut c, u, 10).await;
    let r: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_audit_checkpoint(false)").fetch_one(&mut c).await.expect("refused");
    assert_eq!(r["error_code"], "not_alone", "{r}");
    sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
    // A checkpoint from an old snapshot (REPEATABLE READ, opened before an execution) is
    // still exact: what it did not see is after it.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut c).await.expect("begin");
    sqlx::query("SELECT count(*) FROM orders").execute(&mut c).await.expect("snapshot");
    executed(&t.pool, u, "20", None).await;
    let r: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_audit_checkpoint(false)").fetch_one(&mut c).await.expect("checkpoint");
    assert_eq!(r["success"], true, "{r}");
    sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
    assert_clean_both_ways(&t.pool, "after the operator's checkpoints").await;

    // Whatever the operator did, tampering afterwards is found by the incremental audit.
    sqlx::query("UPDATE profiles SET balance = balance + 1 WHERE id = $1").bind(u).execute(&t.pool).await.expect("x");
    let (incremental, full) = both(&t.pool).await;
    assert_eq!(incremental, full);
    assert!(incremental.iter().any(|v| v.contains("balance_matches_ledger")), "{incremental:?}");
    let _ = c.close().await;
    drop_role(&t, &operator).await;
}

#[tokio::test]
async fn a_checkpoint_taken_over_a_violation_does_not_hide_it() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    let o = executed(&t.pool, u, "1000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");
    // A reversal that gives back more than the execution took, written past the functions.
    sqlx::query(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id) \
         SELECT user_id, credit_account, debit_account, amount + 1, 'reversal', order_id, id \
         FROM ledger_transfers WHERE order_id = $1 AND kind = 'commission'",
    )
    .bind(o)
    .execute(&t.pool)
    .await
    .expect("bad reversal");
    let (_, found) = both(&t.pool).await;
    assert!(found.iter().any(|v| v.contains("reversal_mirrors_original")), "{found:?}");
    // Checkpoints now, incremental and full: the violations stay in view.
    for full in [false, true, false] {
        db::refresh_audit_checkpoint(&t.pool, full).await.expect("checkpoint");
        let (incremental, full_audit) = both(&t.pool).await;
        assert_eq!(incremental, found, "after a checkpoint (full: {full})");
        assert_eq!(full_audit, found);
    }
}

#[tokio::test]
async fn checkpoints_record_the_operator_and_the_login_apart() {
    let t = test_db().await;
    account(&t.pool, "100").await;
    let operator = login_role(&t, "incident_operator").await;
    let mut c = connect_as(&t, &operator).await;
    sqlx::query("SET incident.operator = 'dana'").execute(&mut c).await.expect("operator");
    let r: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_audit_checkpoint(true)").fetch_one(&mut c).await.expect("checkpoint");
    assert_eq!(r["success"], true, "{r}");
    let (db_user, full): (String, bool) =
        sqlx::query_as("SELECT db_user, full_recompute FROM ledger_audit_checkpoints WHERE id = $1")
            .bind(r["checkpoint_id"].as_i64().expect("id"))
            .fetch_one(&t.pool)
            .await
            .expect("checkpoint row");
    assert_eq!(db_user, operator, "the login, whatever name the session claims");
    assert!(full);
    // A viewer may audit but not take a checkpoint.
    let viewer = login_role(&t, "incident_viewer").await;
    let mut v = connect_as(&t, &viewer).await;
    db::ledger_audit(&mut v).await.expect("a viewer audits");
    let e = sqlx::query("SELECT ledger_audit_checkpoint(false)").execute(&mut v).await.expect_err("viewer");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let _ = (c.close().await, v.close().await);
    drop_role(&t, &operator).await;
    drop_role(&t, &viewer).await;
}

#[tokio::test]
async fn down_to_7_and_up_again_keeps_the_audit_clean() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    let a = executed(&t.pool, u, "1000", None).await;
    executed(&t.pool, u, "2000", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");
    assert!(db::rollback_order(&t.pool, a, u, "r").await.expect("rollback").success);
    let print = fingerprint(&t.pool).await;
    let checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_audit_checkpoints").fetch_one(&t.pool).await.expect("count");
    assert!(checkpoints >= 1);

    db::undo_to(&t.pool, 7).await.expect("down to 7");
    assert_eq!(fingerprint(&t.pool).await, print, "the down migration keeps the book");
    let archived: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_audit_checkpoints_archive \
         WHERE checkpoint ->> 'db_user' IS NOT NULL AND checkpoint ->> 'snapshot' IS NOT NULL",
    )
    .fetch_one(&t.pool)
    .await
    .expect("archive");
    assert_eq!(archived, checkpoints, "the checkpoints the old audit cannot use are archived, not lost");
    assert_clean_both_ways(&t.pool, "on the old audit").await;
    executed(&t.pool, u, "30", None).await;

    db::migrate(&t.pool).await.expect("up again");
    assert_clean_both_ways(&t.pool, "after the round trip, before a checkpoint").await;
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    executed(&t.pool, u, "40", None).await;
    assert_clean_both_ways(&t.pool, "after the round trip").await;
}
