//! Holes found by the second adversarial review (migrations 11–13: attribution, table
//! locks, the first review's fixes), each reproduced on a real server. Every test here
//! failed on the schema up to migration 13; 1–5 and 7 hold since migration 14, 8 since the
//! console pins its search path per transaction, and 6 is an accepted risk (ignored; see
//! docs/SECURITY.md):
//!
//! 1. availability: a login in no group queues an ACCESS EXCLUSIVE lock on
//!    `system_settings` (`CREATE RULE` locks the table before it checks ownership); every
//!    execution and the maintenance switch wait behind it for as long as any reader's
//!    transaction lasts.
//! 2. record: `record_incident_events` copies an entry that chains onto nothing (a gap),
//!    for an incident another login is copying; that console's next copy is refused for
//!    ever, and blames its own journal ("lines deleted").
//! 3. record: any operator login appends the next entry of a live incident (its id and
//!    last hash are readable by every viewer): the commander's real entry is then refused
//!    as "the journal was changed after it was copied".
//! 4. attribution: the journal copy's `operator` is free text: a login records entries
//!    under a name the owner registered for someone else, bare.
//! 5. terminal: the journal copy, maintenance reasons and rollback reasons keep ESC, BEL
//!    and bidi controls (record_rollback_failure cleans its detail; these do not).
//! 6. availability: `SET incident.defer_notify = on` (any session) hides a rollback from
//!    every dashboard that LISTENs on `order_audit`.
//! 7. attribution (low): a claim may contain " (via other)" and U+061C; the recorded name
//!    then names two logins.
//! 8. record (behind a transaction pooler): the console's unqualified queries read a
//!    `pg_temp` table another client of the same login left on the server connection.
use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use incident_console::core::workflow::Level;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::Step;
use incident_console::store::db::{self, Db};
use incident_console::store::incidents::IncidentStore;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use uuid::Uuid;

async fn run(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut *c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Whether some backend waits for a lock on `table` in `mode` (checked for up to 3 s).
async fn someone_waits_for(t: &TestDb, table: &str, mode: &str) -> bool {
    for _ in 0..60 {
        let n = count(
            t,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass AND mode = '{mode}'"
            ),
        )
        .await;
        if n > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Hole 1 (availability): `CREATE RULE r AS ON INSERT TO system_settings …` opens the
/// table with ACCESS EXCLUSIVE before PostgreSQL checks that the caller owns it (PG 15;
/// `CREATE TEMP TABLE … PARTITION OF system_settings` does the same). Any login may send
/// it: `public` is USAGE for PUBLIC, and no privilege on the table is needed. Queued
/// behind any transaction that touched the table (a dashboard's read, an execution in
/// flight), it holds every new execution (ROW SHARE) and the maintenance switch
/// (EXCLUSIVE) until that transaction ends; migration 12's "only the owner may take a
/// conflicting lock" does not hold for a lock that is queued rather than granted.
/// The same works on `profiles`, `orders`, `ledger_transfers` behind the console's own
/// background audit. Measured with pgbench (4 engine clients): 262 tps, then 0 tps for
/// as long as a viewer's transaction stayed open.
#[tokio::test]
async fn a_login_in_no_group_cannot_queue_a_lock_that_stalls_executions() {
    let t = test_db().await;
    let u = account(&t.pool, "100000").await;
    let viewer = login_role(&t, "adv2_viewer", Some("incident_viewer")).await;
    let nobody = login_role(&t, "adv2_nobody", None).await;

    // A dashboard's transaction that read maintenance mode and is still open.
    let mut v = connect_as(&t, &viewer).await;
    run(&mut v, "BEGIN; SELECT maintenance_mode FROM system_settings").await;

    // A login in no group at all.
    let mut n = connect_as(&t, &nobody).await;
    let attack = tokio::spawn(async move {
        let r = sqlx::raw_sql("CREATE RULE adv2_r AS ON INSERT TO system_settings DO INSTEAD NOTHING")
            .execute(&mut n)
            .await;
        let _ = n.close().await;
        r.map(|_| ()).map_err(|e| e.to_string())
    });
    let queued = someone_waits_for(&t, "system_settings", "AccessExclusiveLock").await;

    // The engine's next execution, with the lock_timeout SECURITY.md recommends for it.
    let mut engine = t.conn().await;
    run(&mut engine, "SET lock_timeout = '2s'").await;
    let o = db::NewOrder {
        user_id: u,
        symbol: "EURUSD",
        order_type: "market",
        side: "buy",
        quantity: dec("1"),
        price: dec("1.1"),
        idempotency_key: "adv2-stall",
        transaction_id: None,
    };
    let executed = db::execute_order(&mut engine, &o).await;

    run(&mut v, "ROLLBACK").await;
    let attacked = attack.await.expect("attack task");
    let _ = v.close().await;
    let _ = engine.close().await;
    drop_role(&t, &viewer).await;
    drop_role(&t, &nobody).await;

    assert!(attacked.is_err(), "the rule itself is refused: {attacked:?}");
    let r = executed.unwrap_or_else(|e| {
        panic!("the execution waited behind a lock a login in no group queued (queued: {queued}): {e}")
    });
    assert_eq!(r["success"], true, "{r}");
    assert!(!queued, "a login in no group queued an ACCESS EXCLUSIVE lock on system_settings");
}

/// An incident journal in a temporary directory, with the given notes after its opening.
fn journal(notes: &[&str]) -> (tempfile::TempDir, IncidentStore, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = IncidentStore::new(dir.path().join("incidents"));
    let now = chrono::Utc::now();
    let mut inc = store.create("Squatted", Level::Moderate, "test", "alice", now, Checklist::shipped()).expect("open");
    for text in notes {
        inc.act(Step::Note { text: (*text).into() }, "alice", now).expect("note");
    }
    let id = inc.incident.id.clone();
    (dir, store, id)
}

fn entries_of(store: &IncidentStore, id: &str) -> Vec<incident_console::store::journal::Entry> {
    store.open(id, Checklist::shipped()).expect("reopen").entries().expect("entries")
}

fn add_note(store: &IncidentStore, id: &str, text: &str) {
    let mut inc = store.open(id, Checklist::shipped()).expect("reopen");
    inc.act(Step::Note { text: text.into() }, "alice", chrono::Utc::now()).expect("note");
}

/// `record_incident_events` for one entry built in SQL: its line (the journal's form,
/// hashed by the server), any seq, prev, operator and data.
async fn forge(c: &mut PgConnection, incident: &str, seq: i64, prev: &str, operator: &str, data: Value) -> Value {
    sqlx::query_scalar(
        "WITH l AS (SELECT '{\"seq\":' || $2 || ',\"at\":\"2020-01-01T00:00:00.000000Z\",\"operator\":' \
                 || to_json($4::text)::text || ',\"kind\":\"note\",\"data\":' || $5::jsonb::text \
                 || ',\"prev\":\"' || $3 || '\"}' AS line) \
         SELECT record_incident_events($1, jsonb_build_array(jsonb_build_object( \
             'line', line, 'hash', encode(sha256(convert_to(line, 'UTF8')), 'hex')))) FROM l",
    )
    .bind(incident)
    .bind(seq)
    .bind(prev)
    .bind(operator)
    .bind(data)
    .fetch_one(&mut *c)
    .await
    .expect("record_incident_events")
}

/// Hole 2 (record, availability): the chain check only compares an entry's `prev` with
/// the stored entry before it *when there is one*: an entry far past the copy's end (or
/// seq 5 of an incident nobody copied yet) chains onto nothing and is stored. Any
/// operator login does it for an incident whose id it can read (`incident_events` is
/// SELECT for every viewer). From then on `incident_events_max_seq` is the forged seq, and
/// every copy of the real journal fails with "the copy holds entry 1000000 that the
/// journal no longer has (lines deleted)": the commander's journal is blamed, and nothing
/// more of it reaches the database.
#[tokio::test]
async fn an_entry_that_chains_onto_nothing_is_not_copied_and_the_real_copy_goes_on() {
    let t = test_db().await;
    let pool = Db::sessions(t.pool.clone());
    let (_dir, store, id) = journal(&["first note"]);
    let copied = incident_console::ops::incident::copy_new_entries(&pool, &id, entries_of(&store, &id)).await;
    assert_eq!(copied.expect("the commander's copy"), 2);

    let mallory = login_role(&t, "adv2_mallory", Some("incident_operator")).await;
    let mut m = connect_as(&t, &mallory).await;
    let r = forge(&mut m, &id, 1_000_000, &"a".repeat(64), "alice", json!({ "text": "closing, all clear" })).await;
    let _ = m.close().await;
    drop_role(&t, &mallory).await;

    add_note(&store, &id, "second note");
    let next = incident_console::ops::incident::copy_new_entries(&pool, &id, entries_of(&store, &id)).await;
    assert_eq!(r["success"], false, "an entry that chains onto no stored entry was copied: {r}");
    assert_eq!(next.expect("the commander's next copy"), 1);
}

/// Hole 3 (record, availability): nothing binds an incident's copy to the login(s) that
/// copy its journal. Any operator login reads the last stored entry's seq and hash and
/// appends a well-chained entry of its own (any operator name, any time); the
/// commander's real next entry then conflicts, and the console says the commander's
/// journal "was changed after it was copied".
#[tokio::test]
async fn another_login_cannot_append_to_an_incident_it_does_not_copy() {
    let t = test_db().await;
    let pool = Db::sessions(t.pool.clone());
    let (_dir, store, id) = journal(&["first note"]);
    let copied = incident_console::ops::incident::copy_new_entries(&pool, &id, entries_of(&store, &id)).await;
    assert_eq!(copied.expect("the commander's copy"), 2);

    let mallory = login_role(&t, "adv2_mallory", Some("incident_operator")).await;
    let mut m = connect_as(&t, &mallory).await;
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM incident_events WHERE incident_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(&id)
            .fetch_one(&mut m)
            .await
            .expect("what every viewer may read");
    let r = forge(&mut m, &id, seq + 1, &hash, "alice", json!({ "text": "rolled back by mistake, reverting" })).await;
    let _ = m.close().await;
    drop_role(&t, &mallory).await;

    add_note(&store, &id, "second note");
    let next = incident_console::ops::incident::copy_new_entries(&pool, &id, entries_of(&store, &id)).await;
    assert_eq!(r["success"], false, "another login appended to the incident: {r}");
    assert_eq!(next.expect("the commander's next copy"), 1);
}

/// Hole 4 (attribution): `incident_events.operator` is whatever the line says. A login
/// with no registered name copies entries as "Dana Whitfield" (registered for another
/// login), bare: the one table where a name is recorded without passing `_operator()`.
/// (`copied_by` keeps the login, but nothing says the name was never vouched for.)
#[tokio::test]
async fn a_journal_copy_does_not_record_a_name_registered_for_another_login_bare() {
    let t = test_db().await;
    let dana = login_role(&t, "adv2_dana", Some("incident_operator")).await;
    let eve = login_role(&t, "adv2_eve", Some("incident_operator")).await;
    sqlx::query("INSERT INTO operator_names (login, operator) VALUES ($1, 'Dana Whitfield')")
        .bind(&dana)
        .execute(&t.pool)
        .await
        .expect("register");
    let mut e = connect_as(&t, &eve).await;
    let incident = format!("INC-20261125-1308-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let r = forge(&mut e, &incident, 1, &"0".repeat(64), "Dana Whitfield", json!({ "text": "I approve" })).await;
    let _ = e.close().await;
    drop_role(&t, &dana).await;
    drop_role(&t, &eve).await;
    let bare = count(
        &t,
        &format!("SELECT count(*) FROM incident_events WHERE operator = 'Dana Whitfield' AND copied_by = '{eve}'"),
    )
    .await;
    assert_eq!(bare, 0, "a row says Dana Whitfield, written by {eve}: {r}");
}

/// Hole 5 (terminal): record_rollback_failure keeps no control characters (migration 11),
/// but the other texts a session writes are stored as sent: the journal copy (operator,
/// data, line), `system_settings.maintenance_reason` and `maintenance_log.reason`,
/// `orders.rolled_back_reason` and the audit row's `details.reason`. The console
/// sanitizes what it shows; psql, reports and BI tools reading the record do not.
#[tokio::test]
async fn texts_any_session_writes_keep_no_terminal_escapes() {
    let t = test_db().await;
    let u = account(&t.pool, "10000").await;
    let o = executed(&t.pool, u, "100", None).await;
    let op = login_role(&t, "adv2_op", Some("incident_operator")).await;
    let mut c = connect_as(&t, &op).await;
    let evil = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}\u{61c}";
    let on: Value =
        sqlx::query_scalar("SELECT set_maintenance_mode(true, $1)").bind(evil).fetch_one(&mut c).await.expect("switch");
    assert_eq!(on["success"], true, "{on}");
    let rb: Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, $3)")
        .bind(o)
        .bind(u)
        .bind(evil)
        .fetch_one(&mut c)
        .await
        .expect("rollback");
    assert_eq!(rb["success"], true, "{rb}");
    let incident = format!("INC-20261125-1308-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let copied = forge(&mut c, &incident, 1, &"0".repeat(64), evil, json!({ "text": evil })).await;
    let _ = c.close().await;
    drop_role(&t, &op).await;

    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'maintenance_reason', maintenance_reason FROM system_settings \
         UNION ALL SELECT 'maintenance_log', reason FROM maintenance_log \
         UNION ALL SELECT 'rolled_back_reason', rolled_back_reason FROM orders WHERE rolled_back_reason IS NOT NULL \
         UNION ALL SELECT 'audit details', details ->> 'reason' FROM order_audit_log \
         UNION ALL SELECT 'journal copy operator', operator FROM incident_events \
         UNION ALL SELECT 'journal copy data', data ->> 'text' FROM incident_events",
    )
    .fetch_all(&t.pool)
    .await
    .expect("stored texts");
    assert!(stored.len() >= 5, "{stored:?} (copy: {copied})");
    let kept: Vec<&(String, String)> = stored
        .iter()
        .filter(|(_, text)| text.chars().any(|ch| ch.is_control() || matches!(ch, '\u{202e}' | '\u{61c}')))
        .collect();
    assert!(kept.is_empty(), "stored with escapes: {kept:?}");
}

/// Hole 6 (availability): `incident.defer_notify` is the batch's way to send one NOTIFY
/// per interval; any session may set it, and its rollbacks then send none. A dashboard
/// that LISTENs on `order_audit` ("updates within a second of a rollback committed by
/// anyone") hears nothing; the console sees it at its next 10 s refresh.
#[tokio::test]
#[ignore = "accepted (docs/SECURITY.md): incident.defer_notify delays dashboards by one refresh; the batch needs it"]
async fn a_session_setting_does_not_hide_a_rollback_from_listening_dashboards() {
    let t = test_db().await;
    let u = account(&t.pool, "10000").await;
    let o = executed(&t.pool, u, "100", None).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&t.pool).await.expect("listener");
    listener.listen("order_audit").await.expect("listen");

    let op = login_role(&t, "adv2_op", Some("incident_operator")).await;
    let mut c = connect_as(&t, &op).await;
    // Control: a rollback of this login is heard.
    let first = executed(&t.pool, u, "10", None).await;
    let r: Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, 'heard')")
        .bind(first)
        .bind(u)
        .fetch_one(&mut c)
        .await
        .expect("rollback");
    assert_eq!(r["success"], true, "{r}");
    let heard = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await;
    assert!(matches!(heard, Ok(Ok(_))), "the control rollback is heard: {heard:?}");

    run(&mut c, "SET incident.defer_notify = on").await;
    let r: Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, 'quiet')")
        .bind(o)
        .bind(u)
        .fetch_one(&mut c)
        .await
        .expect("rollback");
    assert_eq!(r["success"], true, "{r}");
    let _ = c.close().await;
    drop_role(&t, &op).await;
    let heard = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await;
    assert!(matches!(heard, Ok(Ok(_))), "no notification for a committed rollback: {heard:?}");
}

/// Not a hole, kept as a guard: the first review's lock fix holds against every other
/// statement tried (LOCK TABLE in any mode, VACUUM [FULL], ANALYZE, CLUSTER, REINDEX,
/// TRUNCATE, ALTER/COMMENT/DROP/CREATE TRIGGER, POLICY, INDEX, STATISTICS, INHERITS,
/// REFERENCES, SELECT … FOR KEY SHARE): none of them queues a lock on system_settings
/// for a login in no group.
#[tokio::test]
async fn other_statements_from_a_login_in_no_group_queue_no_lock_on_system_settings() {
    let t = test_db().await;
    let nobody = login_role(&t, "adv2_nobody", None).await;
    let mut holder = t.conn().await;
    run(&mut holder, "BEGIN; LOCK TABLE system_settings IN ROW SHARE MODE").await;
    let mut n = connect_as(&t, &nobody).await;
    run(&mut n, "SET lock_timeout = '300ms'").await;
    for sql in [
        "LOCK TABLE system_settings IN EXCLUSIVE MODE",
        "LOCK TABLE system_settings IN ACCESS SHARE MODE",
        "VACUUM FULL system_settings",
        "ANALYZE system_settings",
        "CLUSTER system_settings",
        "REINDEX TABLE system_settings",
        "TRUNCATE system_settings",
        "ALTER TABLE system_settings ADD COLUMN z int",
        "CREATE TRIGGER t BEFORE INSERT ON system_settings FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
        "DROP TRIGGER IF EXISTS t ON system_settings",
        "CREATE POLICY p ON system_settings USING (true)",
        "CREATE INDEX ON system_settings (id)",
        "CREATE STATISTICS pg_temp.s ON id, maintenance_mode FROM system_settings",
        "CREATE TEMP TABLE x1 () INHERITS (system_settings)",
        "CREATE TEMP TABLE x2 (id boolean REFERENCES system_settings (id))",
        "SELECT * FROM system_settings FOR KEY SHARE",
        "COMMENT ON TABLE system_settings IS 'x'",
    ] {
        // Refused, or (VACUUM, ANALYZE) skipped with a warning: never after waiting.
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut n).await {
            assert_ne!(sqlstate(&e).as_deref(), Some("55P03"), "{sql} waited for a lock: {e}");
        }
    }
    run(&mut holder, "ROLLBACK").await;
    let _ = n.close().await;
    let _ = holder.close().await;
    drop_role(&t, &nobody).await;
}

/// Hole 7 (attribution, low): a claim may itself contain " (via ", and `_printable`
/// misses U+061C (the Arabic letter mark, a bidi control the console's own sanitizer
/// hides). A login with no registered name claims "Dana Whitfield (via dana_rw)": the
/// row says "Dana Whitfield (via dana_rw) (via mallory)", two logins in one name, and a
/// reader that takes the first " (via " names the wrong one. operator_names refuses
/// " (via " in a registered name; a claim should be cut at it (or refused) the same way.
#[tokio::test]
async fn a_claimed_name_names_exactly_one_login() {
    let t = test_db().await;
    let mallory = login_role(&t, "adv2_mallory", Some("incident_operator")).await;
    let mut c = connect_as(&t, &mallory).await;
    let mut recorded = Vec::new();
    for claim in ["Dana Whitfield (via dana_rw)", "Dana Whitfield\u{61c}"] {
        sqlx::query("SELECT set_config('incident.operator', $1, false)")
            .bind(claim)
            .execute(&mut c)
            .await
            .expect("set");
        let who: Value = sqlx::query_scalar("SELECT session_operator()").fetch_one(&mut c).await.expect("who");
        recorded.push(who["operator"].as_str().expect("operator").to_string());
    }
    let _ = c.close().await;
    drop_role(&t, &mallory).await;
    for name in &recorded {
        assert_eq!(name.matches(" (via ").count(), 1, "{name:?} names more than one login");
        assert!(name.ends_with(&format!(" (via {mallory})")), "{name:?}");
        assert!(!name.contains('\u{61c}'), "{name:?} keeps a bidi control");
    }
}

/// Hole 8 (record, deception; behind a transaction pooler): PgBouncer in transaction
/// pooling resets nothing between clients, so a temporary table one client of a login
/// creates stays on that server connection, and `pg_temp` comes first in every search
/// path. The console's own queries (`find_orders`, the dashboard's `order_audit_log`
/// reads, `audit_log_mark`) name tables unqualified: the next client of that server
/// connection, the console in `--pooling transaction`, reads the shadow table. An empty
/// `order_audit_log` hides every rollback from its dashboard; a fake `orders` lists the
/// orders the commander is to roll back. (Reproduced through a real PgBouncer,
/// `default_pool_size = 1`: the second client counted 50 fake rows, the real table 60.)
/// The contract functions pin `search_path = pg_catalog, public, pg_temp`; the console's
/// transactions should too (or name `public.` tables).
#[tokio::test]
async fn behind_a_transaction_pooler_the_console_reads_the_book_not_a_temp_table_left_on_the_server_connection() {
    let t = test_db().await;
    let u = account(&t.pool, "10000").await;
    let o = executed(&t.pool, u, "100", None).await;
    let r = db::rollback_order(&t.pool, o, u, "real rollback").await;
    assert!(r.is_ok(), "{r:?}");
    let real: i64 = count(&t, "SELECT coalesce(max(id), 0) FROM order_audit_log").await;
    assert!(real > 0);

    let op = login_role(&t, "adv2_op", Some("incident_operator")).await;
    // The server connection as another client of the same login left it.
    let mut c = connect_as(&t, &op).await;
    run(&mut c, "CREATE TEMP TABLE order_audit_log (LIKE public.order_audit_log)").await;
    // The console behind a transaction pooler gets that server connection next.
    let settings = db::SessionSettings { operator: op.clone(), ..Default::default() };
    let mut console = db::DbConn::own(c, Some(settings));
    let seen = db::audit_log_mark(&mut console).await.expect("mark");
    console.close().await;
    drop_role(&t, &op).await;
    assert_eq!(seen, real, "the console read a temporary table, not the audit log");
}
