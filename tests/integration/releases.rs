//! Releases of the execution system (issue 11, migration 17): a revert keeps every value it
//! drops (archived, counted, checksummed, restorable), refuses what would lose data
//! unarchived, refuses without maintenance mode, says what was changed by hand since the
//! deploy before it reverts, and is proved afterwards. The sandbox's fast path executes a
//! repeated idempotency key again; its rollback is proved by a probe that does not.

use std::collections::BTreeMap;

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::*;
use incident_console::core::release::{PlanEntry, ReleaseScripts};
use incident_console::ops::release::{self, Answer};
use incident_console::store::db::{self, Db};
use serde_json::Value;

fn scripts(name: &str, deploy: &str, revert: &str, verify: &str) -> ReleaseScripts {
    ReleaseScripts {
        entry: PlanEntry { name: name.into(), description: format!("test release {name}"), service_version: None },
        deploy: deploy.into(),
        revert: revert.into(),
        verify: verify.into(),
    }
}

async fn deploy(pool: &Db, r: &ReleaseScripts) {
    let v = db::release_deploy(pool, r, None).await.expect("deploy call");
    assert_eq!(v["success"], true, "deploy {}: {v}", r.entry.name);
}

fn base() -> ReleaseScripts {
    scripts(
        "base",
        "CREATE FUNCTION base_marker() RETURNS int LANGUAGE sql SECURITY DEFINER \
         SET search_path = pg_catalog, public, pg_temp AS 'SELECT 1';",
        "DROP FUNCTION base_marker();",
        "SELECT base_marker();",
    )
}

async fn maintenance_on(pool: &Db) {
    let (r, probe) =
        incident_console::ops::maintenance::switch_maintenance(pool, true, "release rollback").await.expect("switch");
    assert_eq!(r["success"], true);
    assert!(probe.new_orders_refused, "maintenance verified");
}

async fn notes(t: &TestDb) -> BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>("SELECT id::text, desk_note FROM orders WHERE desk_note IS NOT NULL")
        .fetch_all(&t.pool)
        .await
        .expect("notes")
        .into_iter()
        .collect()
}

async fn has_column(t: &TestDb, column: &str) -> bool {
    count(t, &format!("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = '{column}' AND NOT attisdropped")).await == 1
}

#[tokio::test]
async fn a_revert_archives_a_column_full_of_data_and_a_restore_puts_every_value_back() {
    let t = seeded().await;
    let pool = Db::sessions(t.pool.clone());
    deploy(&pool, &base()).await;
    let with_notes = scripts(
        "desk-notes",
        "ALTER TABLE orders ADD COLUMN desk_note text;",
        "ALTER TABLE orders DROP COLUMN desk_note;",
        "SELECT desk_note FROM orders WHERE false;",
    );
    deploy(&pool, &with_notes).await;
    // What production wrote into the new column while the release was in effect, quotes,
    // backslashes and newlines included.
    sqlx::query(
        "UPDATE orders SET desk_note = 'desk ''' || left(id::text, 8) || E'\\\\\\n' || side WHERE side = 'buy'",
    )
    .execute(&t.pool)
    .await
    .expect("fill the column");
    let before = notes(&t).await;
    assert!(before.len() > 1000, "a column full of data: {}", before.len());

    maintenance_on(&pool).await;
    let pre = match release::precheck(&pool, "base").await.expect("precheck") {
        Answer::Done(p) => p,
        Answer::Refused(r) => panic!("precheck refused: {r:?}"),
    };
    assert_eq!(pre.archive.len(), 1);
    assert_eq!(pre.archive[0].object, "orders.desk_note");
    assert_eq!(pre.archive[0].values as usize, before.len(), "the pre-check counts every value it would drop");

    let done = match release::rollback(&pool, "base", "issue 11 test", false, false, None).await.expect("rollback") {
        Answer::Done(d) => d,
        Answer::Refused(r) => panic!("refused: {r:?}"),
    };
    let proof = done.proof.expect("a proof");
    assert!(proof.passed, "{proof:?}");
    assert!(!has_column(&t, "desk_note").await, "the column is dropped");
    assert_eq!(done.answer.archived.len(), 1);
    let set = &done.answer.archived[0];
    assert_eq!(set.rows as usize, before.len());
    assert_eq!(set.checksum, set.archived_checksum);

    // Every value is in the archive, under its row's key.
    let archived: BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT row_key ->> 'id', value FROM release_archive.archived_values WHERE set_id = $1",
    )
    .bind(set.set_id)
    .fetch_all(&t.pool)
    .await
    .expect("archive")
    .into_iter()
    .collect();
    assert_eq!(archived, before, "the archive holds exactly the values the column held");

    // Deployed again (empty column), then restored: every value back, and only once.
    deploy(&pool, &with_notes).await;
    assert!(notes(&t).await.is_empty());
    let restored = match release::restore(&pool, "desk-notes").await.expect("restore") {
        Answer::Done(d) => d,
        Answer::Refused(r) => panic!("restore refused: {r:?}"),
    };
    assert_eq!(restored.restored.len(), 1);
    assert_eq!(restored.restored[0].rows as usize, before.len());
    assert_eq!(restored.restored[0].checksum, set.checksum, "restored values checksum as archived");
    assert_eq!(notes(&t).await, before, "every value is back in its row");
    let again = release::restore(&pool, "desk-notes").await.expect("restore again");
    assert!(matches!(again, Answer::Done(ref d) if d.restored.is_empty()), "{again:?}");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_revert_that_would_lose_data_unarchived_is_refused_and_changes_nothing() {
    let t = seeded().await;
    let pool = Db::sessions(t.pool.clone());
    deploy(&pool, &base()).await;
    maintenance_on(&pool).await;
    let cases = [
        ("drops-old-column", "ALTER TABLE orders DROP COLUMN failure_reason;", "drops"),
        ("deletes-rows", "DELETE FROM daily_pnl_tracking;", "deleted, updated, truncated or rewrote"),
        ("truncates", "TRUNCATE daily_pnl_tracking;", "deleted, updated, truncated or rewrote"),
        ("rewrites", "ALTER TABLE daily_pnl_tracking ALTER COLUMN orders_executed TYPE numeric;", "rewrote"),
        (
            "updates",
            "UPDATE daily_pnl_tracking SET orders_executed = orders_executed;",
            "deleted, updated, truncated or rewrote",
        ),
        ("drops-table", "DROP TABLE daily_pnl_tracking;", "drops"),
    ];
    let pnl = count(&t, "SELECT count(*) FROM daily_pnl_tracking").await;
    assert!(pnl > 0);
    for (name, revert, says) in cases {
        let r = scripts(
            name,
            &format!("CREATE FUNCTION {}_f() RETURNS int LANGUAGE sql AS 'SELECT 2';", name.replace('-', "_")),
            &format!("DROP FUNCTION {}_f(); {revert}", name.replace('-', "_")),
            "SELECT 1;",
        );
        deploy(&pool, &r).await;
        let answer = release::rollback(&pool, "base", "issue 11 test", false, false, None).await.expect("call");
        match answer {
            Answer::Refused(r) => {
                assert_eq!(r.error_code, "data_loss", "{name}: {r:?}");
                assert!(r.message.contains(says), "{name}: {}", r.message);
            }
            Answer::Done(d) => panic!("{name}: a revert that loses data went through: {d:?}"),
        }
        // Nothing changed: the release is in effect, its function there, the data whole.
        let active = db::releases(&pool).await.expect("releases");
        assert!(active.iter().any(|x| x.name == name && x.active()), "{name} still in effect");
        assert_eq!(
            count(&t, &format!("SELECT count(*) FROM pg_proc WHERE proname = '{}_f'", name.replace('-', "_"))).await,
            1
        );
        assert!(has_column(&t, "failure_reason").await);
        assert_eq!(count(&t, "SELECT count(*) FROM daily_pnl_tracking").await, pnl, "{name}");
        assert_eq!(count(&t, "SELECT count(*) FROM release_archive.archive_sets").await, 0);
        // Take it back properly before the next case (its revert drops only its function).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO release_reverts (release_id, target_id, reverted_by, reason) \
             SELECT id, (SELECT id FROM releases WHERE name = 'base'), 'test', 'cleanup' FROM releases WHERE name = '{name}'; \
             DROP FUNCTION {}_f();",
            name.replace('-', "_")
        )))
        .execute(&t.pool)
        .await
        .expect("cleanup");
    }
}

#[tokio::test]
async fn without_maintenance_mode_a_release_rollback_is_refused() {
    let t = seeded().await;
    let pool = Db::sessions(t.pool.clone());
    deploy(&pool, &base()).await;
    deploy(&pool, &scripts("later", "CREATE INDEX later_idx ON orders (price);", "DROP INDEX later_idx;", "SELECT 1;"))
        .await;
    for dry_run in [false, true] {
        match release::rollback(&pool, "base", "issue 11 test", false, dry_run, None).await.expect("call") {
            Answer::Refused(r) => assert_eq!(r.error_code, "maintenance_off", "{r:?}"),
            Answer::Done(d) => panic!("went through without maintenance mode: {d:?}"),
        }
    }
    assert_eq!(count(&t, "SELECT count(*) FROM pg_class WHERE relname = 'later_idx'").await, 1);
    assert_eq!(count(&t, "SELECT count(*) FROM release_reverts").await, 0);

    // A dry run with maintenance on rehearses all of it and leaves nothing behind.
    maintenance_on(&pool).await;
    let catalog = |t: &TestDb| {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT string_agg(kind || identity || checksum, ',' ORDER BY kind, identity) FROM release_catalog()",
            )
            .fetch_one(&pool)
            .await
            .expect("catalog")
        }
    };
    let before = catalog(&t).await;
    match release::rollback(&pool, "base", "issue 11 test", false, true, None).await.expect("call") {
        Answer::Done(d) => {
            assert!(d.answer.dry_run && d.proof.is_none());
            assert!(d.answer.checks.iter().all(|c| c.ok), "{:?}", d.answer.checks);
        }
        Answer::Refused(r) => panic!("dry run refused: {r:?}"),
    }
    assert_eq!(catalog(&t).await, before, "a dry run changes no object");
    assert_eq!(count(&t, "SELECT count(*) FROM release_reverts").await, 0);
}

#[tokio::test]
async fn a_function_changed_by_hand_after_its_deploy_is_drift_said_before_reverting() {
    let t = seeded().await;
    let pool = Db::sessions(t.pool.clone());
    deploy(&pool, &base()).await;
    deploy(
        &pool,
        &scripts(
            "lookup",
            "CREATE FUNCTION lookup_x() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS 'SELECT 1';",
            "DROP FUNCTION lookup_x();",
            "SELECT lookup_x();",
        ),
    )
    .await;
    assert!(release::verify(&pool).await.expect("verify").passed());
    // A hotfix by hand, outside any release.
    sqlx::raw_sql("CREATE OR REPLACE FUNCTION lookup_x() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS 'SELECT 2';")
        .execute(&t.pool)
        .await
        .expect("hand change");

    let v = release::verify(&pool).await.expect("verify");
    assert!(!v.passed());
    assert_eq!(v.drift.len(), 1);
    assert_eq!(v.drift[0].identity, "lookup_x()");
    let pre = match release::precheck(&pool, "base").await.expect("precheck") {
        Answer::Done(p) => p,
        Answer::Refused(r) => panic!("{r:?}"),
    };
    assert_eq!(pre.drift.iter().map(|d| d.identity.as_str()).collect::<Vec<_>>(), ["lookup_x()"]);

    // The CLI says so before anything runs, and exits 1.
    let home = tempfile::tempdir().expect("home");
    let mut c = console_in(home.path(), "drift-test");
    c.args(["release", "verify", "--database-url", &t.url]);
    run_cmd(c, None).await.code(1).says("DRIFT").says("lookup_x()");

    maintenance_on(&pool).await;
    match release::rollback(&pool, "base", "issue 11 test", false, false, None).await.expect("call") {
        Answer::Refused(r) => {
            assert_eq!(r.error_code, "drift");
            assert!(r.message.contains("lookup_x()"), "{}", r.message);
            assert_eq!(r.drift.len(), 1);
        }
        Answer::Done(d) => panic!("reverted over drift: {d:?}"),
    }
    assert_eq!(count(&t, "SELECT lookup_x()::bigint").await, 2, "the hand change is still there");
    match release::rollback(&pool, "base", "issue 11 test", true, false, None).await.expect("call") {
        Answer::Done(d) => {
            assert!(d.proof.as_ref().is_some_and(|p| p.passed), "{:?}", d.proof);
            assert_eq!(d.answer.drift.len(), 1);
        }
        Answer::Refused(r) => panic!("{r:?}"),
    }
    assert_eq!(count(&t, "SELECT count(*) FROM pg_proc WHERE proname = 'lookup_x'").await, 0);
    let recorded: Value =
        sqlx::query_scalar("SELECT accepted_drift FROM release_reverts").fetch_one(&t.pool).await.expect("revert row");
    assert_eq!(recorded[0]["identity"], "lookup_x()", "the accepted drift is recorded with the revert");
}

#[tokio::test]
async fn the_sandbox_fast_path_repeats_a_key_and_its_rollback_is_proved_by_one_that_does_not() {
    let t = seeded().await;
    let pool = Db::sessions(t.pool.clone());
    let home = tempfile::tempdir().expect("home");
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sandbox/releases");
    let cli = |args: &[&str]| {
        let mut c = console_in(home.path(), "level3-test");
        c.args(args).args(["--database-url", &t.url]);
        c
    };
    run_cmd(cli(&["release", "deploy", "--plan", plan]), None).await.code(0).says("Deployed fast-path");
    let fast = release::probe_idempotency(&pool).await.expect("probe");
    assert_eq!(fast.executions, 2, "under the fast path a repeated key executes again: {fast:?}");

    let out =
        run_cmd(cli(&["release", "rollback", "--to", "gateway-lookup", "--reason", "fast path", "--yes"]), None).await;
    out.code(1).complains("maintenance_off");
    run_cmd(cli(&["maintenance", "on", "--reason", "level 3"]), None).await.code(0);

    // Typed confirmation: a wrong answer changes nothing.
    run_cmd(cli(&["release", "rollback", "--to", "gateway-lookup", "--reason", "fast path"]), Some("yes\n"))
        .await
        .code(1)
        .complains("Not confirmed");
    let out = run_cmd(
        cli(&["release", "rollback", "--to", "gateway-lookup", "--reason", "fast path", "--json"]),
        Some("gateway-lookup\n"),
    )
    .await;
    let json = out.code(0).json();
    assert_eq!(json["proved"], true, "{json}");
    assert_eq!(json["rollback"]["reverted"][0]["name"], "fast-path");
    let checks: Vec<&str> =
        json["proof"]["checks"].as_array().expect("checks").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        checks,
        [
            "archive_matches",
            "checksums_match_target",
            "contract_intact",
            "idempotency_probe",
            "target_verifies",
            "ledger_clean"
        ]
    );
    let good = release::probe_idempotency(&pool).await.expect("probe");
    assert!(good.holds(), "after the rollback a repeated key executes once: {good:?}");
    let list = run_cmd(cli(&["release", "list", "--json"]), None).await;
    let rows = list.code(0).json();
    assert!(rows[1]["reverted_at"].is_string() && rows[0]["reverted_at"].is_null(), "{rows}");
    run_cmd(cli(&["release", "diff", "gateway-lookup", "fast-path"]), None)
        .await
        .code(0)
        .says("execute_order_checked")
        .says("+    v_answer := execute_order_checked");
}
