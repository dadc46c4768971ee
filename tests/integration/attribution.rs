//! Finding 5 of issue 8, attribution: a name a session sets is never recorded bare, the
//! login is kept beside every name, the records a caller can write are checked (failures
//! of orders that exist, journal entries whose hash matches their text), incident ids
//! cannot be guessed; and, in `pooler`, the console and the CLI through a real PgBouncer.

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::support::db::*;
use incident_console::core::workflow::Level;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::Step;
use incident_console::store::db;
use incident_console::store::incidents::IncidentStore;

mod pgbouncer;
mod pooler;
mod worker;

/// A login role with a unique name, a member of `member_of`.
pub(crate) async fn login_role(t: &TestDb, prefix: &str, member_of: &str) -> String {
    let name = format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..10]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {name} LOGIN; GRANT {member_of} TO {name}")))
        .execute(&t.pool)
        .await
        .expect("create role");
    name
}

/// Roles are cluster-wide: a test drops the ones it made (retrying while a backend that
/// used it is still leaving).
pub(crate) async fn drop_role(t: &TestDb, name: &str) {
    for _ in 0..40 {
        let sql = format!("DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}");
        if sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&t.pool).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn connect_as(t: &TestDb, role: &str) -> PgConnection {
    let mut c = PgConnection::connect(&t.url_as(role, "irrelevant")).await.expect("login as the test role");
    let who: String = sqlx::query_scalar("SELECT session_user::text").fetch_one(&mut c).await.expect("who");
    assert_eq!(who, role, "really the test role, not the superuser");
    c
}

async fn call(c: &mut PgConnection, sql: &'static str) -> Value {
    sqlx::query_scalar(sql).fetch_one(&mut *c).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `(operator, db_user)` of the newest audit row of an order.
async fn audit_names(t: &TestDb, order: Uuid) -> (String, String) {
    sqlx::query_as("SELECT operator, db_user FROM order_audit_log WHERE order_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(order)
        .fetch_one(&t.pool)
        .await
        .expect("audit row")
}

/// Who the settings say switched maintenance on, and the login beside it (read as JSON,
/// so that the question can be asked of a schema without the column).
async fn maintenance_names(t: &TestDb) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT maintenance_by, to_jsonb(s) ->> 'maintenance_by_login' FROM system_settings s")
        .fetch_one(&t.pool)
        .await
        .expect("settings")
}

#[tokio::test]
async fn a_name_a_session_sets_is_recorded_with_its_login_never_bare() {
    let t = test_db().await;
    let role = login_role(&t, "ic_mallory", "incident_operator").await;
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "100", None).await;

    let mut c = connect_as(&t, &role).await;
    sqlx::raw_sql("SET incident.operator = 'ceo@example.com'").execute(&mut c).await.expect("set");
    let on = call(&mut c, "SELECT set_maintenance_mode(true, 'switched by someone else')").await;
    assert_eq!(on["success"], true, "{on}");
    let claimed = format!("ceo@example.com (via {role})");
    let (by, login) = maintenance_names(&t).await;
    assert_eq!(by.as_deref(), Some(claimed.as_str()), "maintenance_by names the login that claimed the name");
    assert_eq!(login.as_deref(), Some(role.as_str()), "and keeps the login beside it");
    let logged: (String, String) =
        sqlx::query_as("SELECT operator, db_user FROM maintenance_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&t.pool)
            .await
            .expect("maintenance_log");
    assert_eq!(logged, (claimed.clone(), role.clone()));
    let state = db::maintenance_state(&t.pool).await.expect("state");
    assert_eq!(state.maintenance_by.as_deref(), Some(claimed.as_str()), "what the console shows");
    let off = call(&mut c, "SELECT set_maintenance_mode(false, 'done')").await;
    assert_eq!(off["success"], true, "{off}");

    let r = sqlx::query_scalar::<_, Value>("SELECT rollback_execute_order_atomic($1, $2, 'forged name')")
        .bind(order)
        .bind(user)
        .fetch_one(&mut c)
        .await
        .expect("rollback");
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(audit_names(&t, order).await, (claimed, role.clone()));

    // A name with terminal escapes in it is recorded without them.
    sqlx::raw_sql("SET incident.operator = E'evil\\x1b[2J\\u202e'").execute(&mut c).await.expect("set");
    let who = call(&mut c, "SELECT session_operator()").await;
    let recorded = who["operator"].as_str().expect("operator");
    assert!(!recorded.chars().any(|ch| ch.is_control() || ch == '\u{202e}'), "{who}");
    assert!(recorded.ends_with(&format!(" (via {role})")), "{who}");
    c.close().await.expect("close");
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn a_name_the_owner_registered_for_a_login_is_recorded_as_is_and_only_for_that_login() {
    let t = test_db().await;
    let dana = login_role(&t, "ic_dana", "incident_operator").await;
    let eve = login_role(&t, "ic_eve", "incident_operator").await;
    let user = account(&t.pool, "10000").await;
    let (first, second) = (executed(&t.pool, user, "100", None).await, executed(&t.pool, user, "50", None).await);
    // The owner (the migrating superuser here) vouches for Dana's name.
    sqlx::query("INSERT INTO operator_names (login, operator) VALUES ($1, 'Dana Whitfield')")
        .bind(&dana)
        .execute(&t.pool)
        .await
        .expect("register a name");

    let mut c = connect_as(&t, &dana).await;
    let own = call(&mut c, "SELECT session_operator()").await;
    assert_eq!(own["operator"], dana.as_str(), "no claim: the login itself: {own}");
    sqlx::raw_sql("SET incident.operator = 'Dana Whitfield'").execute(&mut c).await.expect("set");
    let who = call(&mut c, "SELECT session_operator()").await;
    assert_eq!(
        who,
        json!({ "claimed": "Dana Whitfield", "operator": "Dana Whitfield", "login": dana,
                "registered_names": ["Dana Whitfield"] })
    );
    let r = sqlx::query_scalar::<_, Value>("SELECT rollback_execute_order_atomic($1, $2, 'registered')")
        .bind(first)
        .bind(user)
        .fetch_one(&mut c)
        .await
        .expect("rollback");
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(audit_names(&t, first).await, ("Dana Whitfield".to_string(), dana.clone()));

    // Eve claims Dana's name: recorded as Eve's claim.
    let mut e = connect_as(&t, &eve).await;
    sqlx::raw_sql("SET incident.operator = 'Dana Whitfield'").execute(&mut e).await.expect("set");
    let r = sqlx::query_scalar::<_, Value>("SELECT rollback_execute_order_atomic($1, $2, 'impersonation')")
        .bind(second)
        .bind(user)
        .fetch_one(&mut e)
        .await
        .expect("rollback");
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(audit_names(&t, second).await, (format!("Dana Whitfield (via {eve})"), eve.clone()));

    // Operators cannot register names themselves.
    let denied = sqlx::query("INSERT INTO operator_names (login, operator) VALUES ($1, 'CEO')")
        .bind(&eve)
        .execute(&mut e)
        .await
        .expect_err("an operator cannot vouch for itself");
    assert_eq!(denied.as_database_error().and_then(|d| d.code()).as_deref(), Some("42501"), "{denied}");
    c.close().await.expect("close");
    e.close().await.expect("close");
    drop_role(&t, &dana).await;
    drop_role(&t, &eve).await;
}

#[tokio::test]
async fn a_failure_is_recorded_only_for_an_order_of_that_user_and_without_terminal_escapes() {
    let t = test_db().await;
    let (user, other) = (account(&t.pool, "10000").await, account(&t.pool, "10000").await);
    let order = executed(&t.pool, user, "100", None).await;
    let print = fingerprint(&t.pool).await;
    let record = |order: Uuid, user: Uuid, action: &'static str, detail: Value| {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, Value>("SELECT record_rollback_failure($1, $2, $3, $4)")
                .bind(order)
                .bind(user)
                .bind(action)
                .bind(detail)
                .fetch_one(&pool)
                .await
                .expect("record_rollback_failure")
        }
    };
    for (what, o, u, action) in [
        ("an order that does not exist", Uuid::new_v4(), user, "rollback_failed"),
        ("a user that does not exist", order, Uuid::new_v4(), "rollback_failed"),
        ("an order of another user", order, other, "rollback_failed"),
        ("a failed post-check of an order never rolled back", order, user, "postcheck_failed"),
    ] {
        let r = record(o, u, action, json!({ "error": "alert!" })).await;
        assert_eq!(r["success"], false, "{what}: {r}");
        assert!(r["error_code"].is_string(), "{what}: {r}");
    }
    let r = record(order, user, "rollback_failed", json!(["not", "an", "object"])).await;
    assert_eq!(r["error_code"], "invalid_argument", "{r}");
    assert_eq!(fingerprint(&t.pool).await, print, "nothing was recorded");

    let detail = json!({ "error": "\u{1b}]0;pwned\u{7}\u{1b}[2J", "nested": [{ "\u{9b}31m": "x\u{202e}y" }] });
    let r = record(order, user, "rollback_failed", detail).await;
    assert_eq!(r["success"], true, "{r}");
    let stored: String = sqlx::query_scalar(
        "SELECT details::text FROM order_audit_log WHERE order_id = $1 AND action = 'rollback_failed'",
    )
    .bind(order)
    .fetch_one(&t.pool)
    .await
    .expect("details");
    let decoded: Value = serde_json::from_str(&stored).expect("json");
    let text = decoded.to_string();
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(!format!("{decoded:?}").contains(bad), "{bad:?} kept in {text}");
    }
    assert!(text.contains("pwned"), "the text itself stays readable: {text}");
}

/// A journal with an incident opened and a note, in a temporary directory.
fn journal_with_a_note() -> (tempfile::TempDir, String, Vec<incident_console::store::journal::Entry>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = IncidentStore::new(dir.path().join("incidents"));
    let now = chrono::Utc::now();
    let mut inc =
        store.create("Hash check", Level::Moderate, "test", "alice", now, Checklist::shipped()).expect("open");
    inc.act(Step::Note { text: "first note".into() }, "alice", now).expect("note");
    let id = inc.incident.id.clone();
    let entries = inc.entries().expect("entries");
    (dir, id, entries)
}

#[tokio::test]
async fn journal_entries_are_copied_only_when_their_text_hashes_to_their_hash() {
    let t = test_db().await;
    let (_dir, id, entries) = journal_with_a_note();
    let record = |payload: Value| {
        let pool = t.pool.clone();
        let id = id.clone();
        async move {
            sqlx::query_scalar::<_, Value>("SELECT record_incident_events($1, $2)")
                .bind(id)
                .bind(payload)
                .fetch_one(&pool)
                .await
                .expect("record_incident_events")
        }
    };
    // The note rewritten by someone who keeps its hash (and so its chain), in the form the
    // entries always had, and with a line that says what the members say.
    let mut forged = serde_json::to_value(&entries).expect("entries");
    forged[1]["operator"] = json!("ceo@example.com");
    forged[1]["data"] = json!({ "text": "all fine, nothing to see" });
    let as_members = record(forged.clone()).await;
    assert_eq!(as_members["success"], false, "entries copied without checking their hash: {as_members}");
    let line = entries[1].hashed_text().expect("line").replace("alice", "ceo@example.com");
    forged[1]["line"] = json!(line);
    forged[0]["line"] = json!(entries[0].hashed_text().expect("line"));
    let with_line = record(forged).await;
    assert_eq!(with_line["success"], false, "{with_line}");
    assert_eq!(with_line["invalid"], json!([2]), "the second entry is named: {with_line}");
    let stored: i64 = count(&t, "SELECT count(*) FROM incident_events").await;
    assert_eq!(stored, 0, "nothing of a refused call is stored");

    // The journal's own copy goes through, and the database keeps each line.
    assert_eq!(db::copy_incident_events(&t.pool, &id, &entries).await.expect("copy"), 2);
    let lines: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT seq, operator, line, hash FROM incident_events WHERE incident_id = $1 ORDER BY seq")
            .bind(&id)
            .fetch_all(&t.pool)
            .await
            .expect("copy");
    // The name is vouched for as every other row's (migration 14): the login has no
    // registered names, so "alice (via login)"; the line keeps what the journal says.
    let login: String = sqlx::query_scalar("SELECT session_user::text").fetch_one(&t.pool).await.expect("login");
    for ((seq, operator, line, hash), e) in lines.iter().zip(&entries) {
        let vouched = format!("{} (via {login})", e.operator);
        assert_eq!((*seq, operator.as_str(), hash.as_str()), (e.seq as i64, vouched.as_str(), e.hash.as_str()));
        assert_eq!(line, &e.hashed_text().expect("line"));
    }
}

#[test]
fn new_incident_ids_cannot_be_guessed_and_old_ids_still_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = IncidentStore::new(dir.path().join("incidents"));
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T13:08:00Z").expect("time").to_utc();
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let inc =
                store.create(&format!("same minute {n}"), Level::Moderate, "test", "op", now, Checklist::shipped());
            inc.expect("create").incident.id
        })
        .collect();
    for id in &ids {
        let random = id.strip_prefix("INC-20261125-1308-").unwrap_or_else(|| panic!("{id}: date, minute, random part"));
        assert_eq!(random.len(), 8, "{id}");
        assert!(random.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{id}");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");

    // An incident of the older form, INC-<date>-<minute>, still opens.
    let old = IncidentStore::new(dir.path().join("old"));
    let opened = old.create("older", Level::Minor, "test", "op", now, Checklist::shipped()).expect("create");
    let old_id = "INC-20251101-0915";
    std::fs::rename(&opened.dir, dir.path().join("old").join(old_id)).expect("rename to the older form");
    let reopened = old.open(old_id, Checklist::shipped()).expect("an id of the older form opens");
    assert_eq!(reopened.incident.title, "older");
}
