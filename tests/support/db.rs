//! The database harness: one throwaway PostgreSQL cluster per test binary (the sandbox code, in a
//! temporary directory, killed when the binary exits) or the server of `DATABASE_URL`;
//! a migrated template database; and one fresh database per test copied from it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use incident_console::store::connect::ConnectSettings;
use incident_console::store::db;
use incident_console::store::sandbox::{Cluster, Durability};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

struct Server {
    /// URL of an administrative database on the server.
    admin_url: String,
    /// Builds the URL of a database on the server.
    cluster: Option<Cluster>,
    template: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` to its end on a runtime of its own, on a thread of its own: for work done once
/// behind a `OnceLock`, which may be first reached from inside any test's runtime.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime").block_on(f)
        })
        .join()
        .expect("template thread")
    })
}

/// Deletes the cluster directories under `base` of test processes that no longer run
/// (their names start with the process id).
pub fn clean_stale_clusters(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start_server() -> Result<Server, String> {
    let pid = std::process::id();
    let template = format!("ic_tpl_{pid}");
    let (admin_url, cluster) = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => (url, None),
        None => {
            let base = std::env::temp_dir().join("incident-console-tests");
            std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
            // The server may run as another user (postgres, when tests run as root).
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755));
            clean_stale_clusters(&base);
            let exe =
                std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            let root = base.join(format!("{pid}-{}", exe.unwrap_or_default().replace(['/', ' '], "_")));
            let cluster = Cluster::new(root).map_err(|e| e.to_string())?;
            cluster.init(Durability::Throwaway).map_err(|e| e.to_string())?;
            cluster.spawn_owned().map_err(|e| e.to_string())?;
            (cluster.url("postgres"), Some(cluster))
        }
    };
    let server = Server { admin_url, cluster, template };
    let template_url = server.url_of(&server.template);
    block_on(async {
        let mut admin = connect_retrying(&server.admin_url).await?;
        db::drop_database(&mut admin, &server.template).await.map_err(|e| e.to_string())?;
        db::create_database(&mut admin, &server.template, None).await.map_err(|e| e.to_string())?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&template_url)
            .await
            .map_err(|e| e.to_string())?;
        db::migrate(&pool).await.map_err(|e| e.to_string())?;
        // Four-eyes approval is off in the template: most tests roll back more than one
        // login may alone. The approval tests switch it on (`enable_approvals`).
        sqlx::query("SELECT set_approval_policy('{\"enabled\": false}')")
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close().await;
        Ok::<(), String>(())
    })?;
    Ok(server)
}

async fn connect_retrying(url: &str) -> Result<PgConnection, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match PgConnection::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("cannot reach the test server: {last}"))
}

impl Server {
    fn url_of(&self, database: &str) -> String {
        match &self.cluster {
            Some(c) => c.url(database),
            None => incident_console_test_url(&self.admin_url, database),
        }
    }
}

fn incident_console_test_url(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path = base[scheme_end..].find('/').map(|i| scheme_end + i);
    let head = match path {
        Some(p) => &base[..p],
        None => base,
    };
    match query {
        Some(q) => format!("{head}/{database}?{q}"),
        None => format!("{head}/{database}"),
    }
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    /// Its URL (sqlx and psql accept it).
    pub url: String,
    /// Its name.
    pub name: String,
    /// A small pool on it.
    pub pool: PgPool,
}

/// Creates a database for the calling test from the migrated template.
pub async fn test_db() -> TestDb {
    let server = match SERVER.get_or_init(start_server) {
        Ok(s) => s,
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    };
    let name = format!("ic_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = connect_retrying(&server.admin_url).await.expect("admin connection");
    db::create_database(&mut admin, &name, Some(&server.template)).await.expect("create test database");
    let _ = admin.close().await;
    let url = server.url_of(&name);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.expect("test pool");
    TestDb { url, name, pool }
}

/// A new, empty database for one test: not migrated, nothing of the console in it.
pub async fn blank_db() -> TestDb {
    let server = match SERVER.get_or_init(start_server) {
        Ok(s) => s,
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    };
    let name = format!("ic_b_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = connect_retrying(&server.admin_url).await.expect("admin connection");
    db::create_database(&mut admin, &name, None).await.expect("create blank database");
    let _ = admin.close().await;
    let url = server.url_of(&name);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await.expect("blank pool");
    TestDb { url, name, pool }
}

/// The URL of the server's administrative database.
pub fn admin_url() -> String {
    match SERVER.get_or_init(start_server) {
        Ok(s) => s.admin_url.clone(),
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    }
}

/// The URL of another database on the test server (one a test's command made).
pub fn database_url(database: &str) -> String {
    match SERVER.get_or_init(start_server) {
        Ok(s) => s.url_of(database),
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    }
}

impl TestDb {
    /// Connection settings as the console would use them.
    pub fn settings(&self) -> ConnectSettings {
        ConnectSettings {
            url: self.url.clone(),
            is_sandbox: false,
            operator: "test-operator".into(),
            application_name: "incident-console-test".into(),
            statement_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(10),
            pooling: Default::default(),
        }
    }

    /// The URL of this database for another login role.
    pub fn url_as(&self, role: &str, password: &str) -> String {
        let mut u = self.url.clone();
        if let Some(i) = u.find("user=") {
            let end = u[i..].find('&').map_or(u.len(), |j| i + j);
            u.replace_range(i..end, &format!("user={role}"));
            u
        } else {
            // postgres://user:pw@host/db
            let scheme_end = u.find("://").map_or(0, |i| i + 3);
            if let Some(at) = u[scheme_end..].find('@') {
                u.replace_range(scheme_end..scheme_end + at, &format!("{role}:{password}"));
            }
            u
        }
    }

    /// A dedicated connection.
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connection")
    }
}

/// The demo book's burst (seed 7, 2026-11-25): GBPUSD orders duplicated between 13:02 and
/// 13:06, as a `WHERE` condition on `orders`.
pub const BURST_SQL: &str =
    "symbol = 'GBPUSD' AND created_at >= '2026-11-25 13:02:00+00' AND created_at < '2026-11-25 13:06:00+00'";

/// A fresh database with the demo book of seed 7 on 2026-11-25 (see [`seed_book`]).
pub async fn seeded() -> TestDb {
    let t = test_db().await;
    seed_book(&t.url).await;
    t
}

/// Writes the demo book of seed 7 on 2026-11-25 into the empty database at `url` with the
/// binary (`incident-console seed`, as operator `e2e`), which migrates it first.
pub async fn seed_book(url: &str) {
    let out = tokio::process::Command::new(super::cli::BIN)
        .args(["seed", "--seed", "7", "--date", "2026-11-25", "--database-url", url])
        .env_remove("DATABASE_URL")
        .env("INCIDENT_OPERATOR", "e2e")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run seed");
    assert!(
        out.status.success(),
        "seed failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one `bigint` a query returns (`SELECT count(*) …`).
pub async fn count(t: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&t.pool).await.expect(sql)
}

/// Money literal: `dec("12.5")`.
pub fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

/// Creates an account with a deposit.
pub async fn account(pool: &PgPool, deposit: &str) -> Uuid {
    let id = Uuid::new_v4();
    let r = db::create_account(pool, id, dec(deposit)).await.expect("create account");
    assert_eq!(r["success"], true, "{r}");
    id
}

/// Executes a market order; returns the function's JSON.
pub async fn execute(
    pool: &PgPool,
    user: Uuid,
    symbol: &str,
    side: &str,
    qty: &str,
    price: &str,
    tx: Option<Uuid>,
) -> Value {
    let key = Uuid::new_v4().to_string();
    let o = db::NewOrder {
        user_id: user,
        symbol,
        order_type: "market",
        side,
        quantity: dec(qty),
        price: dec(price),
        idempotency_key: &key,
        transaction_id: tx,
    };
    db::execute_order(pool, &o).await.expect("execute order")
}

/// Executes an order that must succeed; returns its id.
pub async fn executed(pool: &PgPool, user: Uuid, qty: &str, tx: Option<Uuid>) -> Uuid {
    let r = execute(pool, user, "EURUSD", "buy", qty, "1.1", tx).await;
    assert_eq!(r["success"], true, "{r}");
    Uuid::parse_str(r["order_id"].as_str().expect("order id")).expect("uuid")
}

/// Balance and margin of a user.
pub async fn money_of(pool: &PgPool, user: Uuid) -> (Decimal, Decimal) {
    db::account(pool, user).await.expect("account query").expect("account exists")
}

/// A fingerprint of everything money-related in the database, to prove "nothing changed".
pub async fn fingerprint(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>(
        "SELECT md5(concat_ws('|', \
            (SELECT string_agg(concat_ws(',', id, balance, margin_used), ';' ORDER BY id) FROM profiles), \
            (SELECT string_agg(concat_ws(',', id, status, rolled_back_at, rolled_back_reason, failure_reason), ';' ORDER BY id) FROM orders), \
            (SELECT string_agg(concat_ws(',', id, status, closed_at), ';' ORDER BY id) FROM positions), \
            (SELECT count(*) FROM ledger_transfers), (SELECT count(*) FROM order_audit_log), \
            (SELECT string_agg(concat_ws(',', user_id, trading_date, orders_rolled_back, commission_refunded), ';' ORDER BY user_id, trading_date) FROM daily_pnl_tracking)))",
    )
    .fetch_one(pool)
    .await
    .expect("fingerprint")
}

/// `ledger_audit()` must find nothing.
pub async fn assert_consistent(pool: &PgPool) {
    let v = db::ledger_audit(pool).await.expect("audit");
    assert!(v.is_empty(), "ledger violations: {v:?}");
}
