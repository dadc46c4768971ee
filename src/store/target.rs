//! Which database a command talks to: the URL it was given, or the sandbox, which is
//! created, started, migrated and seeded on first use.

use sqlx::Connection;

use crate::core::error::{Error, Result};
use crate::store::connect::{ConnectSettings, SessionOptions};
use crate::store::demo::{DemoBook, DemoSpec};
use crate::store::sandbox::{Cluster, Durability, SANDBOX_DATABASE, sandbox_cluster};
use crate::store::{db, demo};

/// Connection settings for a URL, with the invocation's session settings.
pub fn settings_for(url: String, is_sandbox: bool, session: &SessionOptions) -> ConnectSettings {
    ConnectSettings {
        url,
        is_sandbox,
        operator: session.operator.clone(),
        application_name: "incident-console".into(),
        statement_timeout: session.statement_timeout,
        lock_timeout: session.lock_timeout,
        pooling: session.pooling,
    }
}

/// The database of this invocation: the URL given, else the sandbox (started, migrated
/// and seeded when needed).
pub async fn resolve(
    url: Option<&str>,
    session: &SessionOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<ConnectSettings> {
    match url {
        Some(url) => Ok(settings_for(url.to_string(), false, session)),
        None => {
            let cluster =
                tokio::task::spawn_blocking(sandbox_cluster).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            let url = ensure_ready(&cluster, Durability::Durable, say).await?;
            let url = if session.second_login { as_second_login(&url) } else { url };
            Ok(settings_for(url, true, session))
        }
    }
}

/// The sandbox's second login, for the other person of four eyes (`--second-login`).
pub const SECOND_LOGIN: &str = "incident_second";

/// A sandbox URL (the superuser's) for its second login instead; `ensure_ready` creates it.
pub fn as_second_login(url: &str) -> String {
    url.replace(&format!("user={}", crate::store::sandbox::SUPERUSER), &format!("user={SECOND_LOGIN}"))
}

/// The database at hand without starting anything: the URL given, or the sandbox when it
/// already runs. None when there is neither.
pub async fn at_hand(url: Option<&str>, session: &SessionOptions) -> Option<ConnectSettings> {
    if let Some(u) = url {
        return Some(settings_for(u.to_string(), false, session));
    }
    let running = tokio::task::spawn_blocking(|| {
        let c = sandbox_cluster().ok()?;
        matches!(c.status(), Ok(crate::store::sandbox::Status::Running)).then(|| c.url(SANDBOX_DATABASE))
    })
    .await
    .ok()
    .flatten()?;
    Some(settings_for(running, true, session))
}

/// The sandbox database for `migrate`, which must neither migrate nor seed it first.
/// With `create`, a missing cluster or database is made (empty, unmigrated); without it
/// nothing is created and None says the sandbox does not exist yet. An existing cluster
/// is started: that changes no data.
pub async fn sandbox_unmigrated(create: bool, say: &(dyn Fn(&str) + Sync)) -> Result<Option<String>> {
    let cluster = tokio::task::spawn_blocking(sandbox_cluster).await.map_err(|e| Error::Sandbox(e.to_string()))??;
    if !cluster.is_initialized() {
        if !create {
            return Ok(None);
        }
        say(&format!("Creating the sandbox PostgreSQL in {} …", cluster.root().display()));
    }
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.init(Durability::Durable)?;
        c.start()
    })
    .await
    .map_err(|e| Error::Sandbox(e.to_string()))??;
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
    let exists = db::database_exists(&mut admin, SANDBOX_DATABASE).await?;
    if !exists && create {
        db::create_database(&mut admin, SANDBOX_DATABASE, None).await?;
    }
    let _ = admin.close().await;
    Ok((exists || create).then(|| cluster.url(SANDBOX_DATABASE)))
}

/// Starts the cluster (creating it if needed), creates the console's database, migrates
/// it, and seeds the demo book into it when it is empty. Returns its URL.
pub async fn ensure_ready(cluster: &Cluster, durability: Durability, say: &(dyn Fn(&str) + Sync)) -> Result<String> {
    // Every start but the first finds it running, migrated and seeded: one connection and
    // a few reads say so, without a process (`pg_ctl status`), a migration's lock or a
    // count of the book. Anything else (not running, no database, a migration pending or
    // not this build's, a read that fails) takes the whole way below, which says why.
    if cluster.is_initialized()
        && let Ok(mut conn) = sqlx::PgConnection::connect(&cluster.url(SANDBOX_DATABASE)).await
    {
        let ready = already_ready(&mut conn).await;
        let _ = conn.close().await;
        if matches!(ready, Ok(true)) {
            return Ok(cluster.url(SANDBOX_DATABASE));
        }
    }
    let c = cluster.clone();
    if !c.is_initialized() {
        say(&format!("Creating the sandbox PostgreSQL in {} …", c.root().display()));
    }
    tokio::task::spawn_blocking(move || {
        c.init(durability)?;
        c.start()
    })
    .await
    .map_err(|e| Error::Sandbox(e.to_string()))??;

    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
    if !db::database_exists(&mut admin, SANDBOX_DATABASE).await? {
        db::create_database(&mut admin, SANDBOX_DATABASE, None).await?;
    }
    let _ = admin.close().await;

    let url = cluster.url(SANDBOX_DATABASE);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    if let Err(e) = db::migrate(&pool).await {
        // A sandbox made by another build of the console: its data is a demo book, so
        // say how to start afresh rather than leave the person with a checksum error.
        let text = e.to_string();
        if text.contains("previously applied but") || text.contains("missing in the resolved migrations") {
            return Err(Error::Sandbox(format!(
                "the sandbox was made by another version of incident-console ({}); \
                 `incident-console sandbox reset` makes a fresh one",
                crate::core::sanitize::line(&text)
            )));
        }
        return Err(e);
    }
    // The sandbox's second person (four eyes).
    db::create_second_login(&pool).await?;
    if db::book_is_empty(&pool).await? {
        say("Seeding the demo order book (200 accounts, ~5,000 orders, a bad burst) …");
        let spec = DemoSpec::standard(1, demo::default_trading_date(chrono::Utc::now()));
        let mut conn = pool.acquire().await?;
        let book = seed_demo(&mut conn, &spec).await?;
        say(&format!(
            "Demo book ready. The bad burst: {} duplicate executions on {} between {} and {} UTC.",
            book.burst.orders,
            book.burst.symbol,
            book.burst.from.format("%Y-%m-%d %H:%M"),
            book.burst.to.format("%H:%M")
        ));
    }
    if db::release_count(&pool).await? == 0 {
        let mut conn = pool.acquire().await?;
        let (deployed, tagged) = seed_release_history(&mut conn).await?;
        if deployed > 0 {
            say(&format!(
                "Release history recorded: gateway-lookup, then fast-path shortly before the burst ({tagged} order(s) \
                 executed by the fast path)."
            ));
        }
    }
    pool.close().await;
    Ok(url)
}

/// Whether the sandbox database needs nothing of [`ensure_ready`]: every migration applied,
/// the second login made, a book and a release history seeded.
async fn already_ready(conn: &mut sqlx::PgConnection) -> Result<bool> {
    Ok(db::migrations_current(&mut *conn).await?
        && db::role_exists(&mut *conn, SECOND_LOGIN).await?
        && !db::book_is_empty(&mut *conn).await?
        && db::release_count(&mut *conn).await? > 0)
}

/// The sandbox's release history, deployed for real and dated as the demo book tells it:
/// the good release three hours before the burst, the fast path six minutes before it,
/// and the orders it executed tagged. Returns (releases deployed, orders tagged).
pub async fn seed_release_history(conn: &mut sqlx::PgConnection) -> Result<(usize, u64)> {
    let burst = db::demo_burst_start(&mut *conn).await?.unwrap_or_else(chrono::Utc::now);
    let plan = crate::store::releases::sandbox_plan()?;
    let mut tx = conn.begin().await?;
    let mut fast_path_at = None;
    for r in &plan {
        let at = if r.entry.name == "fast-path" {
            burst - chrono::Duration::minutes(6)
        } else {
            burst - chrono::Duration::hours(3)
        };
        let v = db::release_deploy(&mut *tx, r, Some(at)).await?;
        if v.get("success").and_then(serde_json::Value::as_bool) != Some(true) {
            return Err(Error::Sandbox(format!(
                "the sandbox's release {} was refused: {}",
                r.entry.name,
                crate::core::sanitize::line(&v.to_string())
            )));
        }
        if r.entry.name == "fast-path" {
            fast_path_at = Some(at);
        }
    }
    let tagged = match fast_path_at {
        Some(at) => db::tag_fast_path_orders(&mut *tx, at).await?,
        None => 0,
    };
    tx.commit().await?;
    Ok((plan.len(), tagged))
}

/// Writes the demo book of `spec` in one transaction. The book must be empty.
pub async fn seed_demo(conn: &mut sqlx::PgConnection, spec: &DemoSpec) -> Result<DemoBook> {
    let (accounts, orders) = db::book_size(&mut *conn).await?;
    if accounts > 0 || orders > 0 {
        return Err(Error::BadInput(format!(
            "the book already holds {accounts} accounts and {orders} orders; seed only an empty database \
             (for the sandbox: `incident-console sandbox reset`)"
        )));
    }
    let book = demo::generate(spec);
    let mut tx = conn.begin().await?;
    db::create_accounts(&mut *tx, &book.accounts).await?;
    for chunk in book.executed.chunks(10_000) {
        db::insert_executed_orders(&mut tx, chunk).await?;
    }
    db::insert_unexecuted_orders(&mut tx, &book.unexecuted).await?;
    tx.commit().await?;
    Ok(book)
}
