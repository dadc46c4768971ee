//! Creating and dropping databases (tests, benchmarks, the sandbox).

use sqlx::{Executor, Postgres};

use crate::core::error::{Error, Result};

/// `CREATE DATABASE name TEMPLATE template` for tests and benchmarks. The names are
/// checked to be plain identifiers: they are the one thing SQL cannot take as parameters.
pub async fn create_database<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    name: &str,
    template: Option<&str>,
) -> Result<()> {
    check_identifier(name)?;
    let sql = match template {
        Some(t) => {
            check_identifier(t)?;
            format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\"")
        }
        None => format!("CREATE DATABASE \"{name}\""),
    };
    e.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)`.
pub async fn drop_database<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<()> {
    check_identifier(name)?;
    e.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await?;
    Ok(())
}

/// The sandbox's second login (`incident_second`, a login with the operator's role), made
/// once per cluster: the other person of four eyes.
pub async fn create_second_login<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<()> {
    sqlx::query(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'incident_second') THEN \
         CREATE ROLE incident_second LOGIN IN ROLE incident_operator; END IF; END $$",
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Whether a role (a login or a group) of this name exists.
pub async fn role_exists<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name.to_string())
        .fetch_one(e)
        .await?)
}

/// Whether a database of this name exists on the server.
pub async fn database_exists<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name.to_string())
        .fetch_one(e)
        .await?)
}

fn check_identifier(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!("not a plain database name: {}", crate::core::sanitize::line(name))))
    }
}
