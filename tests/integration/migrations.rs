//! The schema migrations against a real PostgreSQL: down and up again on a book with
//! data, the refusal to delete financial history, a full round trip on an empty database,
//! and the shape of the migration files.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::db::*;
use incident_console::store::db::{self, MIGRATOR};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// The nine functions of DESIGN.md's contract table, as `to_regprocedure` takes them.
const CONTRACT: [&str; 9] = incident_console::core::contract::CONTRACT_SIGNATURES;

const TABLES: [&str; 9] = [
    "instruments",
    "profiles",
    "orders",
    "positions",
    "daily_pnl_tracking",
    "system_settings",
    "maintenance_log",
    "ledger_transfers",
    "order_audit_log",
];

/// Every version, 1 to the latest: the migrations embedded in the binary.
fn all() -> Vec<i64> {
    let mut v: Vec<i64> = MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect();
    v.sort_unstable();
    v
}

/// Which contract functions exist (exact signature in schema public).
async fn existing_functions(t: &TestDb) -> Vec<&'static str> {
    let mut out = Vec::new();
    for f in CONTRACT {
        let exists: bool = sqlx::query_scalar("SELECT to_regprocedure($1) IS NOT NULL")
            .bind(format!("public.{f}"))
            .fetch_one(&t.pool)
            .await
            .expect("to_regprocedure");
        if exists {
            out.push(f);
        }
    }
    out
}

async fn existing_tables(t: &TestDb) -> Vec<&'static str> {
    let mut out = Vec::new();
    for table in TABLES {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("public.{table}"))
            .fetch_one(&t.pool)
            .await
            .expect("to_regclass");
        if exists {
            out.push(table);
        }
    }
    out
}

/// Whether the operator role may execute a function and PUBLIC may not.
/// Whether the role the function is for (the engine for trading, else the operator) may
/// execute it, and whether PUBLIC may.
async fn granted_as_designed(t: &TestDb, signature: &str) -> (bool, bool) {
    let trading = signature.starts_with("create_trading_account") || signature.starts_with("execute_order_atomic");
    let role = if trading { "incident_engine" } else { "incident_operator" };
    sqlx::query_as(
        "SELECT has_function_privilege($2::name, to_regprocedure($1), 'EXECUTE'), \
                has_function_privilege('public'::name, to_regprocedure($1), 'EXECUTE')",
    )
    .bind(format!("public.{signature}"))
    .bind(role)
    .fetch_one(&t.pool)
    .await
    .expect("privileges")
}

/// A book with two users, executed orders (one group) and one rollback done.
async fn book_with_data(t: &TestDb) -> (Uuid, Uuid) {
    let user = account(&t.pool, "10000").await;
    let other = account(&t.pool, "2500").await;
    let tx = Uuid::new_v4();
    let a = executed(&t.pool, user, "1000", Some(tx)).await;
    let _b = executed(&t.pool, user, "2000", Some(tx)).await;
    let keep = executed(&t.pool, other, "300", None).await;
    let r = db::rollback_group(&t.pool, a, user, "duplicate burst").await.expect("group rollback");
    assert!(r.success, "{r:?}");
    assert_consistent(&t.pool).await;
    (other, keep)
}

#[tokio::test]
async fn down_to_4_and_up_again_keeps_the_book_and_restores_the_functions() {
    let t = test_db().await;
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    let (other, keep) = book_with_data(&t).await;
    let print = fingerprint(&t.pool).await;
    assert_eq!(existing_functions(&t).await, CONTRACT);

    db::undo_to(&t.pool, 4).await.expect("undo to 4 keeps tables and data");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), [1, 2, 3, 4]);
    assert!(existing_functions(&t).await.is_empty(), "the functions are gone: {:?}", existing_functions(&t).await);
    assert_eq!(existing_tables(&t).await, TABLES, "the tables stay");
    assert_eq!(fingerprint(&t.pool).await, print, "the data is intact");
    // The grants of migration 6 are gone with it.
    let viewer_select: bool = sqlx::query_scalar("SELECT has_table_privilege('incident_viewer', 'orders', 'SELECT')")
        .fetch_one(&t.pool)
        .await
        .expect("privilege");
    assert!(!viewer_select);

    db::migrate(&t.pool).await.expect("migrate up again");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    assert_eq!(existing_functions(&t).await, CONTRACT);
    for f in CONTRACT {
        let (operator, public) = granted_as_designed(&t, f).await;
        assert!(operator, "{f}: the operator may execute it again");
        assert!(!public, "{f}: PUBLIC may not execute it after the round trip");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "migrating up changes no data");
    assert_consistent(&t.pool).await;

    // The recreated functions work on the old data.
    let before = money_of(&t.pool, other).await;
    let r = db::rollback_order(&t.pool, keep, other, "after the migration round trip").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(r.refunded, Some(dec("6.666")), "300 x 1.1 = 330: margin 6.6 + commission 0.066");
    assert_eq!(money_of(&t.pool, other).await, (before.0 + dec("6.666"), dec("0")));
    assert_eq!(db::rollback_audit_rows(&t.pool, keep).await.expect("rows"), 1);
    assert_consistent(&t.pool).await;
}

/// Everything in the book and the ledger (the audit log may be gone: it was empty).
async fn book_print(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(concat_ws('|', \
            (SELECT string_agg(x::text, ';' ORDER BY x.id) FROM profiles x), \
            (SELECT string_agg(x::text, ';' ORDER BY x.id) FROM orders x), \
            (SELECT string_agg(x::text, ';' ORDER BY x.id) FROM positions x), \
            (SELECT string_agg(x::text, ';' ORDER BY x.id) FROM ledger_transfers x), \
            (SELECT string_agg(x::text, ';' ORDER BY x.user_id, x.trading_date) FROM daily_pnl_tracking x)))",
    )
    .fetch_one(pool)
    .await
    .expect("book print")
}

/// A new pool on the test database, the old one closed.
async fn fresh_pool(t: TestDb) -> PgPool {
    t.pool.close().await;
    PgPoolOptions::new().max_connections(4).connect(&t.url).await.expect("new pool")
}

#[tokio::test]
async fn undoing_everything_on_a_book_with_data_is_refused_and_the_data_stays() {
    let t = test_db().await;
    book_with_data(&t).await;
    let print = fingerprint(&t.pool).await;

    let err = db::undo_to(&t.pool, 0).await.expect_err("dropping the book must be refused");
    let text = err.to_string();
    // Migration 4 refuses first: the audit trail holds the rollback's rows.
    assert!(text.contains("refusing to drop order_audit_log: it holds audit rows"), "{text}");

    assert_eq!(existing_tables(&t).await, TABLES, "the tables stay");
    assert_eq!(fingerprint(&t.pool).await, print, "the data is intact");
    let versions = db::applied_migrations(&t.pool).await.expect("applied");
    assert!(versions.starts_with(&[1, 2, 3, 4]), "the migrations holding data stay applied: {versions:?}");

    // Whatever was undone can be applied again, and the book is still consistent.
    let pool = fresh_pool(t).await;
    tokio::time::timeout(Duration::from_secs(20), db::migrate(&pool))
        .await
        .expect("migrating a fresh pool must not wait")
        .expect("migrate up again");
    assert_eq!(db::applied_migrations(&pool).await.expect("applied"), all());
    assert_eq!(fingerprint(&pool).await, print);
    assert_consistent(&pool).await;
}

#[tokio::test]
async fn undoing_everything_with_transfers_but_no_rollback_yet_is_refused_by_the_book_history() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    executed(&t.pool, user, "1000", None).await;
    let print = fingerprint(&t.pool).await;
    let money = book_print(&t.pool).await;

    let err = db::undo_to(&t.pool, 0).await.expect_err("dropping the ledger must be refused");
    let text = err.to_string();
    // The audit log is empty, so migration 4 refuses for the book's history (the ledger's
    // own refusal, migration 3, would come next).
    assert!(text.contains("refusing to drop book_changes"), "{text}");
    for table in ["instruments", "profiles", "orders", "positions", "ledger_transfers"] {
        assert!(existing_tables(&t).await.contains(&table), "{table} must stay");
    }
    assert_eq!(book_print(&t.pool).await, money, "the book and the ledger are intact");
    let versions = db::applied_migrations(&t.pool).await.expect("applied");
    assert!(versions.starts_with(&[1, 2, 3]), "{versions:?}");

    let pool = fresh_pool(t).await;
    tokio::time::timeout(Duration::from_secs(20), db::migrate(&pool))
        .await
        .expect("migrating a fresh pool must not wait")
        .expect("migrate up again");
    assert_eq!(fingerprint(&pool).await, print);
    assert_eq!(money_of(&pool, user).await, (dec("9977.78"), dec("22")));
    assert_consistent(&pool).await;
}

#[tokio::test]

async fn a_failed_undo_does_not_leave_the_migration_lock_held() {
    let t = test_db().await;
    book_with_data(&t).await;
    db::undo_to(&t.pool, 0).await.expect_err("dropping the book must be refused");
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&t.pool)
    .await
    .expect("locks");
    assert_eq!(held, 0, "no session may keep the migrator's advisory lock after the call returned");
    tokio::time::timeout(Duration::from_secs(5), db::migrate(&t.pool))
        .await
        .expect("migrate after a failed undo must not wait for a lock nobody will release")
        .expect("migrate up again");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
}

#[tokio::test]

async fn a_refused_undo_says_that_financial_history_is_never_deleted() {
    let t = test_db().await;
    book_with_data(&t).await;
    let err = db::undo_to(&t.pool, 0).await.expect_err("dropping the book must be refused");
    // The down migrations raise with a HINT saying what to do: that is what the person
    // running `migrate --undo-to` needs to read, with the SQLSTATE of RAISE EXCEPTION.
    assert_eq!(err.sqlstate(), Some("P0001"), "{err}");
    assert!(err.to_string().contains("never deleted"), "{err}");
}

#[tokio::test]

async fn a_refused_undo_changes_nothing_at_all() {
    let t = test_db().await;
    book_with_data(&t).await;
    let print = fingerprint(&t.pool).await;

    let err = db::undo_to(&t.pool, 0).await.expect_err("dropping the book must be refused");
    assert!(err.to_string().contains("refusing to drop"), "{err}");
    assert_eq!(fingerprint(&t.pool).await, print, "the data is intact");
    assert_eq!(
        db::applied_migrations(&t.pool).await.expect("applied"),
        all(),
        "a refused undo must leave every migration applied"
    );
    assert_eq!(existing_functions(&t).await, CONTRACT, "the contract functions must survive a refused undo");
}

#[tokio::test]
async fn an_empty_database_goes_all_the_way_down_and_up_again() {
    let t = test_db().await;
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());

    db::undo_to(&t.pool, 0).await.expect("an empty book may be dropped");
    assert!(db::applied_migrations(&t.pool).await.expect("applied").is_empty());
    assert!(existing_tables(&t).await.is_empty(), "tables left: {:?}", existing_tables(&t).await);
    assert!(existing_functions(&t).await.is_empty());
    let types: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_type WHERE typname IN ('ledger_account', 'transfer_kind') \
         AND typnamespace = 'public'::regnamespace",
    )
    .fetch_one(&t.pool)
    .await
    .expect("types");
    assert_eq!(types, 0);

    db::migrate(&t.pool).await.expect("migrate up from nothing");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    assert_eq!(existing_tables(&t).await, TABLES);
    assert_eq!(existing_functions(&t).await, CONTRACT);
    for f in CONTRACT {
        let (operator, public) = granted_as_designed(&t, f).await;
        assert!(operator && !public, "{f}: operator {operator}, PUBLIC {public}");
    }

    // And the rebuilt schema works end to end.
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let r = db::rollback_order(&t.pool, order, user, "fresh schema").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(money_of(&t.pool, user).await, (dec("10000"), dec("0")));
    assert_consistent(&t.pool).await;
}

#[test]
fn every_migration_has_an_up_and_a_down_file_and_runs_in_a_transaction() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/migrations");
    let mut files: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read assets/migrations") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        let kind = if name.ends_with(".up.sql") {
            "up"
        } else if name.ends_with(".down.sql") {
            "down"
        } else {
            panic!("unexpected file in assets/migrations: {name}");
        };
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} does not start with a version"));
        files.entry(version).or_default().push(kind.to_string());
    }
    let latest = files.keys().copied().max().unwrap_or(0);
    assert!(latest >= 7, "at least the seven migrations of the first release");
    assert_eq!(files.keys().copied().collect::<Vec<_>>(), (1..=latest).collect::<Vec<_>>(), "no gaps");
    assert_eq!(all(), (1..=latest).collect::<Vec<_>>(), "the binary embeds every file");
    for (version, kinds) in &mut files {
        kinds.sort();
        assert_eq!(kinds, &["down", "up"], "migration {version}: exactly one .up.sql and one .down.sql");
    }

    // The embedded migrator sees the same pairs, and none opts out of its transaction.
    for version in all() {
        let ups = MIGRATOR.iter().filter(|m| m.version == version && m.migration_type.is_up_migration()).count();
        let downs = MIGRATOR.iter().filter(|m| m.version == version && m.migration_type.is_down_migration()).count();
        assert_eq!((ups, downs), (1, 1), "migration {version} in MIGRATOR");
    }
    for m in MIGRATOR.iter() {
        assert!(!m.no_tx, "migration {} {} must run in a transaction", m.version, m.description);
        assert!(!m.sql.as_str().trim().is_empty(), "migration {} is empty", m.version);
    }
}

/// Migration 15 (journal waivers) goes down and up again on a book with data, and the
/// `journal_waived` action goes with it; once a waiver is recorded its undo is refused and
/// changes nothing.
#[tokio::test]
async fn migration_15_round_trips_and_its_undo_is_refused_once_a_journal_waiver_is_recorded() {
    let t = test_db().await;
    let (other, keep) = book_with_data(&t).await;
    let print = fingerprint(&t.pool).await;
    let waiver_exists = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT to_regprocedure('public.record_journal_waiver(uuid,uuid[],uuid[],text,text)') IS NOT NULL",
        )
        .fetch_one(&t.pool)
        .await
        .expect("to_regprocedure")
    };

    db::undo_to(&t.pool, 14).await.expect("undo 15: no waiver recorded yet");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), (1..=14).collect::<Vec<i64>>());
    assert!(!waiver_exists().await);
    let refused = sqlx::query("SELECT 'journal_waived'::audit_action").execute(&t.pool).await;
    assert!(refused.is_err(), "the domain is back to its three actions");
    assert_eq!(fingerprint(&t.pool).await, print);

    db::migrate(&t.pool).await.expect("up again");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    assert!(waiver_exists().await);
    let (operator, public) = granted_as_designed(&t, "record_journal_waiver(uuid,uuid[],uuid[],text,text)").await;
    assert!(operator && !public, "operator {operator}, PUBLIC {public}");
    assert_eq!(fingerprint(&t.pool).await, print);

    let rows = db::record_journal_waiver(&t.pool, Uuid::new_v4(), &[(keep, other)], "single", "disk full")
        .await
        .expect("a waiver");
    assert_eq!(rows, 1);
    let print = fingerprint(&t.pool).await;
    let err = db::undo_to(&t.pool, 14).await.expect_err("a recorded waiver keeps migration 15");
    assert_eq!(err.sqlstate(), Some("P0001"), "{err}");
    assert!(err.to_string().contains("journal waivers"), "{err}");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    assert_eq!(fingerprint(&t.pool).await, print, "the refused undo changed nothing");
}

#[tokio::test]
async fn migration_19_round_trips_and_its_undo_is_refused_once_an_unapproved_rollback_is_counted() {
    let t = test_db().await;
    let (other, keep) = book_with_data(&t).await;
    let print = fingerprint(&t.pool).await;
    let exists = |signature: &'static str| {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT to_regprocedure($1) IS NOT NULL")
                .bind(format!("public.{signature}"))
                .fetch_one(&pool)
                .await
                .expect("to_regprocedure")
        }
    };

    db::undo_to(&t.pool, 18).await.expect("undo 19: nothing requested or counted yet");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), (1..=18).collect::<Vec<i64>>());
    assert!(!exists("request_approval(text,uuid,uuid[],uuid[],text,text,numeric,integer,text,jsonb)").await);
    assert!(!exists("_release_rollback_unguarded(text,text,boolean,boolean,uuid)").await);
    let (operator, public) = granted_as_designed(&t, "release_rollback(text,text,boolean,boolean,uuid)").await;
    assert!(operator && !public, "migration 17's release_rollback is back: operator {operator}, PUBLIC {public}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace \
         AND relname IN ('approval_policy', 'approval_requests', 'approval_orders', 'approval_log', \
                         'unapproved_rollbacks', 'approval_budget_locks')",
    )
    .fetch_one(&t.pool)
    .await
    .expect("tables");
    assert_eq!(tables, 0);
    assert_eq!(fingerprint(&t.pool).await, print);

    db::migrate(&t.pool).await.expect("up again");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    for f in [
        "request_approval(text,uuid,uuid[],uuid[],text,text,numeric,integer,text,jsonb)",
        "decide_approval(uuid,boolean,text,text)",
        "cancel_approval(uuid,text)",
        "release_rollback(text,text,boolean,boolean,uuid)",
        "close_breaker(text)",
    ] {
        let (operator, public) = granted_as_designed(&t, f).await;
        assert!(operator && !public, "{f}: operator {operator}, PUBLIC {public}");
    }
    let enabled: bool =
        sqlx::query_scalar("SELECT enabled FROM approval_policy").fetch_one(&t.pool).await.expect("policy");
    assert!(enabled, "a migrated database has the policy on");
    assert_eq!(fingerprint(&t.pool).await, print);

    // One unapproved rollback (within the default budget) is counted: the undo is refused.
    let r = db::rollback_order(&t.pool, keep, other, "counted").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(count(&t, "SELECT count(*) FROM unapproved_rollbacks").await, 1);
    let print = fingerprint(&t.pool).await;
    let err = db::undo_to(&t.pool, 18).await.expect_err("a counted rollback keeps migration 19");
    assert_eq!(err.sqlstate(), Some("P0001"), "{err}");
    assert!(err.to_string().contains("refusing to undo migration 19"), "{err}");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), all());
    assert_eq!(fingerprint(&t.pool).await, print, "the refused undo changed nothing");
    assert_consistent(&t.pool).await;
}
