//! The CLI and the console's worker through a real PgBouncer, in session pooling (with the
//! common `ignore_startup_parameters = extra_float_digits,options`) and in transaction
//! pooling: the operator's name arrives and is recorded with the login, and every money
//! command works.

use std::path::Path;

use sqlx::Connection;
use uuid::Uuid;

use super::pgbouncer::{Bouncer, PoolMode};
use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::*;

const FROM: &str = "2026-11-25 13:02";
const TO: &str = "2026-11-25 13:06";
const REASON: &str = "duplicate executions of deploy 4711";

/// `incident-console --database-url URL args…` as operator `dana`, with the pooling
/// mode in the environment (`INCIDENT_POOLING`).
async fn ic(dir: &Path, url: &str, pooling: &str, args: &[&str]) -> Out {
    let mut c = console_in(dir, "dana");
    c.env("INCIDENT_POOLING", pooling).arg("--database-url").arg(url).args(args);
    run_cmd(c, None).await
}

/// Executed orders of the burst, oldest first: `(order, user)`.
async fn burst(t: &TestDb) -> Vec<(Uuid, Uuid)> {
    let sql =
        format!("SELECT id, user_id FROM orders WHERE {BURST_SQL} AND status = 'executed' ORDER BY created_at, id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect("burst")
}

/// `(operator, db_user, batch_id is set)` of every rollback audit row.
async fn audit_rows(t: &TestDb) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT operator, db_user, batch_id IS NOT NULL FROM order_audit_log \
         WHERE action = 'order_rolled_back' ORDER BY id",
    )
    .fetch_all(&t.pool)
    .await
    .expect("audit rows")
}

#[tokio::test]
async fn through_session_pooling_that_drops_startup_options_the_name_still_arrives() {
    let t = seeded().await;
    let Some(b) = Bouncer::start(&t, PoolMode::Session, &[], "session pooling") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = b.url("postgres");
    let on = ic(dir.path(), &url, "session", &["maintenance", "on", "--reason", "rolling back the burst"]).await;
    on.code(0).clean();
    let by: Option<String> =
        sqlx::query_scalar("SELECT maintenance_by FROM system_settings").fetch_one(&t.pool).await.expect("by");
    assert_eq!(by.as_deref(), Some("dana (via postgres)"), "the name given, with the login that claimed it");

    let (order, user) = burst(&t).await[0];
    let (os, us) = (order.to_string(), user.to_string());
    let r = ic(dir.path(), &url, "session", &["rollback", &os, "--user", &us, "--reason", REASON, "--yes"]).await;
    r.code(0).clean();
    // A single rollback's row carries its operation id too (the proof if its reply is lost).
    assert_eq!(audit_rows(&t).await, [("dana (via postgres)".to_string(), "postgres".to_string(), true)]);
    ic(dir.path(), &url, "session", &["maintenance", "off", "--reason", "done"]).await.code(0).clean();
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn through_transaction_pooling_every_money_command_works_and_is_attributed() {
    let t = seeded().await;
    let Some(b) = Bouncer::start(&t, PoolMode::Transaction, &[], "transaction pooling") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = b.url("postgres");
    let orders = burst(&t).await;
    let (order, user) = orders[0];
    let (os, us) = (order.to_string(), user.to_string());
    let baseline = dir.path().join("baseline.json").display().to_string();
    let d = dir.path();
    let tx = "transaction";

    ic(d, &url, tx, &["maintenance", "on", "--reason", "rolling back the burst"])
        .await
        .code(0)
        .clean()
        .says("Verified");
    let listed = ic(d, &url, tx, &["orders", "--symbol", "GBPUSD", "--from", FROM, "--to", TO, "--json"]).await;
    assert!(listed.code(0).clean().json().as_array().is_some_and(|a| !a.is_empty()), "{}", listed.stdout);
    ic(d, &url, tx, &["precheck", &os, "--user", &us, "--baseline-out", &baseline]).await.code(0).clean();
    ic(d, &url, tx, &["rollback", &os, "--user", &us, "--reason", REASON, "--yes"]).await.code(0).clean();
    ic(d, &url, tx, &["postcheck", &os, "--user", &us, "--baseline", &baseline]).await.code(0).clean();
    let batch = ["rollback", "--symbol", "GBPUSD", "--from", FROM, "--to", TO, "--reason", REASON, "--yes"];
    ic(d, &url, tx, &batch).await.code(0).clean();
    ic(d, &url, tx, &["audit"]).await.code(0).clean();
    // 60 rollbacks within minutes raise the burst alert: exit 1, as without a pooler.
    ic(d, &url, tx, &["metrics"]).await.code(1).clean().says("ALERT");
    ic(d, &url, tx, &["maintenance", "off", "--reason", "done"]).await.code(0).clean().says("probe rolled back");

    assert!(burst(&t).await.is_empty(), "the whole burst is rolled back");
    let rows = audit_rows(&t).await;
    assert_eq!(rows.len(), orders.len());
    assert!(
        rows.iter().all(|(op, login, _)| op == "dana (via postgres)" && login == "postgres"),
        "every row names dana and the login: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.2), "every row carries its operation's id (the batch's, or the single's)");
    let operations: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT batch_id) FROM order_audit_log WHERE action = 'order_rolled_back'")
            .fetch_one(&t.pool)
            .await
            .expect("operations");
    assert_eq!(operations, 2, "one id for the single rollback, one for the whole batch");
    let by: (Option<String>, String) =
        sqlx::query_as("SELECT operator, db_user FROM maintenance_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&t.pool)
            .await
            .map(|(o, u): (String, String)| (Some(o), u))
            .expect("maintenance_log");
    assert_eq!(by, (Some("dana (via postgres)".into()), "postgres".into()));
    assert_consistent(&t.pool).await;
    let log = b.log();
    assert!(!log.contains("unsupported startup parameter"), "{log}");
}

#[tokio::test]
async fn a_name_the_login_may_not_use_is_refused_before_anything_is_written() {
    let t = seeded().await;
    sqlx::query("INSERT INTO operator_names (login, operator) VALUES ('postgres', 'Dana Whitfield')")
        .execute(&t.pool)
        .await
        .expect("register a name");
    let print = fingerprint(&t.pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (order, user) = burst(&t).await[0];
    let (os, us) = (order.to_string(), user.to_string());
    let mut urls = vec![("session", t.url.clone())];
    let bouncers: Vec<Bouncer> = [PoolMode::Session, PoolMode::Transaction]
        .into_iter()
        .filter_map(|m| Bouncer::start(&t, m, &[], "refusal through pgbouncer"))
        .collect();
    for (b, mode) in bouncers.iter().zip(["session", "transaction"]) {
        urls.push((mode, b.url("postgres")));
    }
    for (mode, url) in &urls {
        let out = ic(
            dir.path(),
            url,
            mode,
            &["--operator", "eve", "rollback", &os, "--user", &us, "--reason", REASON, "--yes"],
        )
        .await;
        out.code(2).clean().complains("may record as: Dana Whitfield");
        let mut c = console_in(dir.path(), "Dana Whitfield");
        c.env("INCIDENT_POOLING", mode).arg("--database-url").arg(url).args(["audit"]);
        run_cmd(c, None).await.code(0).clean();
    }
    assert_eq!(fingerprint(&t.pool).await, print, "nothing changed");
}

#[tokio::test]
async fn a_transaction_pooler_taken_for_a_session_is_refused_and_no_setting_leaks() {
    let t = seeded().await;
    let Some(b) = Bouncer::start(&t, PoolMode::Transaction, &[], "transaction pooler without --pooling") else {
        return;
    };
    let print = fingerprint(&t.pool).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = b.url("postgres");
    let (order, user) = burst(&t).await[0];
    let (os, us) = (order.to_string(), user.to_string());
    for args in [
        vec!["maintenance", "on", "--reason", "rolling back the burst"],
        vec!["rollback", &os, "--user", &us, "--reason", REASON, "--yes"],
        vec!["audit"],
    ] {
        // Before: the rollback ran, its settings left on a server connection of the pooler.
        ic(dir.path(), &url, "session", &args).await.code(2).clean().complains("--pooling transaction");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "nothing changed");
    // What another client of the pooler gets: no operator's name, no timeout of ours.
    let opts = url.parse::<sqlx::postgres::PgConnectOptions>().expect("url").extra_float_digits(None);
    let mut other = sqlx::PgConnection::connect_with(&opts).await.expect("another client");
    let row = sqlx::raw_sql(
        "SELECT coalesce(current_setting('incident.operator', true), ''), current_setting('statement_timeout')",
    )
    .fetch_one(&mut other)
    .await
    .expect("settings");
    use sqlx::Row;
    let (name, timeout): (String, String) = (row.get(0), row.get(1));
    assert_eq!((name.as_str(), timeout.as_str()), ("", "0"), "nothing of ours on the pooler's server connections");
}
