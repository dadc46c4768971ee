//! Schema migrations: apply, undo in one transaction, and what is applied.

use sqlx::PgPool;

use super::MIGRATOR;
use crate::core::error::{Error, Result};

/// Applies every pending migration, all in one transaction: a migration that fails
/// leaves the database exactly as it was found (no version half applied, no grant, no
/// bookkeeping table). Checks the applied ones against the migrations this build holds.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    // A dedicated connection, closed afterwards, so no session state of the migration
    // (a role, a setting) goes back into the pool.
    let mut conn = pool.acquire().await?.detach();
    let result = apply_pending(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    result
}

/// The body of [`migrate`]: lock, bookkeeping table, checks, every pending up migration.
async fn apply_pending(conn: &mut sqlx::PgConnection) -> Result<()> {
    use sqlx::migrate::MigrateError as M;
    let mut tx = sqlx::Connection::begin(conn).await?;
    // The key sqlx's migrator locks, so two migrates (or a migrate and an undo) queue up.
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(migration_lock_id(&database)).execute(&mut *tx).await?;
    // sqlx's table, so a database migrated by an earlier build (sqlx's own migrator) is
    // read as it was written.
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
            success BOOLEAN NOT NULL,
            checksum BYTEA NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let ups: Vec<&sqlx::migrate::Migration> = MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).collect();
    for (version, success, checksum) in &applied {
        if !success {
            return Err(migrate_error(M::Dirty(*version)));
        }
        match ups.iter().find(|m| m.version == *version) {
            None => return Err(migrate_error(M::VersionMissing(*version))),
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(migrate_error(M::VersionMismatch(*version)));
            }
            Some(_) => {}
        }
    }
    for m in ups.iter().filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version)) {
        let started = std::time::Instant::now();
        if let Err(e) = sqlx::raw_sql(m.sql.clone()).execute(&mut *tx).await {
            // Dropping the transaction would roll back too, but only when the connection
            // next speaks: roll back now, so the lock is free when this returns.
            tx.rollback().await?;
            return Err(migrate_error(M::ExecuteMigration(e, m.version)));
        }
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, $4)",
        )
        .bind(m.version)
        .bind(m.description.as_ref())
        .bind(m.checksum.as_ref())
        .bind(nanos)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether every migration this build holds is applied, as this build holds it (same
/// checksums, none failed, none unknown), read without a lock or a write: when it is,
/// [`migrate`] would change nothing. False also for a database never migrated.
pub async fn migrations_current(conn: &mut sqlx::PgConnection) -> Result<bool> {
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(&mut *conn).await?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    let ups: Vec<&sqlx::migrate::Migration> = MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).collect();
    Ok(applied.len() == ups.len()
        && applied.iter().all(|(version, success, checksum)| {
            *success && ups.iter().any(|m| m.version == *version && m.checksum.as_ref() == checksum.as_slice())
        }))
}

/// Undoes the migrations above `target`, newest first, all in one transaction: a down
/// migration that refuses (it would delete financial history) leaves every migration in
/// place. Returns the versions undone.
pub async fn undo_to(pool: &PgPool, target: i64) -> Result<Vec<i64>> {
    let applied = applied_migrations(pool).await?;
    let mut downs: Vec<&sqlx::migrate::Migration> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_down_migration() && m.version > target && applied.contains(&m.version))
        .collect();
    downs.sort_by_key(|m| std::cmp::Reverse(m.version));
    let mut conn = pool.acquire().await?.detach();
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    // The key sqlx's migrator locks, so an undo and a migrate never interleave.
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(migration_lock_id(&database)).execute(&mut *tx).await?;
    let mut failure = None;
    for m in &downs {
        if let Err(e) = sqlx::raw_sql(m.sql.clone()).execute(&mut *tx).await {
            failure = Some(migrate_error(sqlx::migrate::MigrateError::ExecuteMigration(e, m.version)));
            break;
        }
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(m.version).execute(&mut *tx).await?;
    }
    if let Some(e) = failure {
        // Roll back now, not when the connection goes: the lock must be free on return.
        tx.rollback().await?;
        let _ = sqlx::Connection::close(conn).await;
        return Err(e);
    }
    tx.commit().await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(downs.iter().map(|m| m.version).collect())
}

/// The advisory lock id sqlx's migrator takes for a database (CRC-32 of its name).
fn migration_lock_id(database: &str) -> i64 {
    let mut crc: u32 = !0;
    for b in database.bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    0x3d32_ad9e_i64 * i64::from(!crc)
}

fn migrate_error(e: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(inner) => Error::from(inner),
        M::ExecuteMigration(inner, version) => match Error::from(inner) {
            Error::Database(mut text) => {
                text.message = format!("migration {version}: {}", text.message);
                Error::Database(text)
            }
            other => other,
        },
        other => Error::Database(crate::core::error::DbErrorText {
            code: None,
            message: crate::core::sanitize::line(&other.to_string()).into_owned(),
        }),
    }
}

/// Versions already applied (empty on a fresh database).
pub async fn applied_migrations(pool: &PgPool) -> Result<Vec<i64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_id_matches_sqlx() {
        // sqlx: 0x3d32ad9e * crc32_ieee(name); crc32("incident") = 0x5f8c1bf7 (zlib)
        assert_eq!(super::migration_lock_id(""), 0);
        assert_eq!(super::migration_lock_id("123456789"), 0x3d32_ad9e_i64 * 0xCBF4_3926_i64);
    }
}
