//! Migrations that cannot lose anything (issue 8, finding 6): a failed migrate leaves the
//! database exactly as it was found, an undo never drops rows of an append-only or shared
//! table, and `migrate --dry-run` on the sandbox changes nothing.

use std::path::Path;

use crate::support::cli::{BIN, run_cmd};
use crate::support::db::*;
use incident_console::store::db::{self, MIGRATOR};
use sqlx::PgPool;

/// Everything a migration could have touched in a database: its schema objects, the owner
/// and privileges of `public`, default privileges, the cluster's roles, and the rows of
/// the database's own `orders` table.
async fn catalog_print(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT concat_ws(E'\\n', \
            (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) \
               FROM pg_class WHERE relnamespace = 'public'::regnamespace), \
            (SELECT nspowner::regrole::text || ' ' || coalesce(nspacl::text, '-') \
               FROM pg_namespace WHERE nspname = 'public'), \
            (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace), \
            (SELECT string_agg(typname, ',' ORDER BY typname) FROM pg_type WHERE typnamespace = 'public'::regnamespace), \
            (SELECT count(*)::text FROM pg_default_acl), \
            (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles), \
            (SELECT string_agg(x::text, ';' ORDER BY x::text) FROM orders x))",
    )
    .fetch_one(pool)
    .await
    .expect("catalog print")
}

#[tokio::test]
async fn a_failed_migrate_leaves_the_database_exactly_as_it_found_it() {
    // A database that already has a table called orders: migration 2 cannot create its own.
    let t = blank_db().await;
    sqlx::raw_sql("CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders VALUES (1, 'theirs')")
        .execute(&t.pool)
        .await
        .expect("their orders table");
    let before = catalog_print(&t.pool).await;

    let err = db::migrate(&t.pool).await.expect_err("migration 2 must fail on their orders table");
    assert!(err.to_string().contains("migration 2"), "says which migration failed: {err}");

    assert_eq!(catalog_print(&t.pool).await, before, "no version, table, grant or role may stay behind");
    let bookkeeping: bool = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
        .fetch_one(&t.pool)
        .await
        .expect("to_regclass");
    assert!(!bookkeeping, "not even the bookkeeping table");
    assert!(db::applied_migrations(&t.pool).await.expect("applied").is_empty());
    let advisory: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&t.pool)
    .await
    .expect("locks");
    assert_eq!(advisory, 0, "the migration lock is released when the call returns");
}

#[tokio::test]
async fn migrating_a_blank_database_applies_every_version_at_once() {
    let t = blank_db().await;
    db::migrate(&t.pool).await.expect("migrate a blank database");
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), (1..=latest).collect::<Vec<_>>());
    // sqlx's own migrator reads what this one wrote: same table, same checksums.
    let mut conn = t.pool.acquire().await.expect("connection").detach();
    MIGRATOR.run_direct(None, &mut conn, false).await.expect("sqlx agrees that nothing is pending");
    // And a second run is a no-op.
    db::migrate(&t.pool).await.expect("migrate again");
}

#[tokio::test]
async fn a_migration_changed_after_it_was_applied_is_refused_before_anything_runs() {
    let t = test_db().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 3")
        .execute(&t.pool)
        .await
        .expect("tamper");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&t.pool)
        .await
        .expect("one pending");
    let applied = db::applied_migrations(&t.pool).await.expect("applied");
    let err = db::migrate(&t.pool).await.expect_err("a modified migration must be refused");
    assert!(err.to_string().contains("previously applied but has been modified"), "{err}");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), applied, "the pending one was not run");
}

/// Which of the named tables exist.
async fn tables(pool: &PgPool, names: &[&str]) -> Vec<String> {
    sqlx::query_scalar("SELECT n FROM unnest($1::text[]) n WHERE to_regclass('public.' || n) IS NOT NULL ORDER BY n")
        .bind(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .expect("tables")
}

#[tokio::test]
async fn undoing_the_journal_copy_is_refused_while_it_holds_entries() {
    let t = test_db().await;
    let hash = "a".repeat(64);
    sqlx::query(
        "INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash) \
         VALUES ('INC-1', 1, now(), 'dana', 'incident_opened', '{}', $1, $1)",
    )
    .bind(&hash)
    .execute(&t.pool)
    .await
    .expect("a journal entry");
    let applied = db::applied_migrations(&t.pool).await.expect("applied");

    let err = db::undo_to(&t.pool, 6).await.expect_err("dropping the journal copy must be refused");
    assert!(err.to_string().contains("refusing to drop incident_events"), "{err}");
    assert_eq!(db::applied_migrations(&t.pool).await.expect("applied"), applied, "nothing undone");
    assert_eq!(count(&t, "SELECT count(*) FROM incident_events").await, 1);
}

#[tokio::test]
async fn undoing_the_audit_log_is_refused_while_book_changes_hold_history() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    executed(&t.pool, user, "1000", None).await;
    assert!(count(&t, "SELECT count(*) FROM book_changes").await > 0, "an execution writes book history");

    let err = db::undo_to(&t.pool, 3).await.expect_err("dropping book_changes must be refused");
    assert!(err.to_string().contains("refusing to drop book_changes"), "{err}");
    assert_eq!(tables(&t.pool, &["book_changes", "ledger_audit_checkpoints"]).await.len(), 2);
}

#[tokio::test]
async fn undoing_the_book_is_refused_while_maintenance_log_holds_switches() {
    let t = test_db().await;
    for on in [true, false] {
        let r = db::set_maintenance(&t.pool, on, "migration test").await.expect("switch");
        assert_eq!(r["success"], true, "{r}");
    }
    // No account, no order, no transfer: only the maintenance record stops the undo.
    let err = db::undo_to(&t.pool, 1).await.expect_err("dropping maintenance_log must be refused");
    assert!(err.to_string().contains("refusing to drop maintenance_log"), "{err}");
    assert_eq!(count(&t, "SELECT count(*) FROM maintenance_log").await, 2);
}

fn sandbox_migrate(sandbox: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .env_remove("INCIDENT_PG_BINDIR")
        .env("INCIDENT_CONSOLE_SANDBOX_DIR", sandbox)
        .env("INCIDENT_OPERATOR", "migration-test")
        .arg("migrate")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn a_dry_run_on_a_sandbox_that_does_not_exist_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = dir.path().join("sandbox");
    let out = run_cmd(sandbox_migrate(&sandbox, &["--dry-run"]), None).await;
    out.code(0);
    assert!(out.stdout.contains("the sandbox does not exist yet"), "{}", out.stdout);
    assert!(out.stdout.contains("-- migration 1 roles"), "the whole plan is shown: {}", out.stdout);
    assert!(!sandbox.exists(), "a dry run must not create the sandbox");
}
