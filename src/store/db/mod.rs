//! Every SQL statement of the console, in one place, split by concern. Statements are
//! static text with bound parameters; nothing from a user is ever formatted into SQL.

mod admin;
mod approvals;
mod audit;
mod bench;
mod blast;
mod breaker;
mod contract;
mod error;
mod evidence;
mod incident_events;
mod metrics;
mod migrate;
mod orders;
mod releases;
mod replica;
mod retry;
mod rows;
mod scope;
mod seed;
mod session;

pub use admin::*;
pub use approvals::*;
pub use audit::*;
pub use bench::*;
pub use blast::*;
pub use breaker::*;
pub use contract::*;
pub use evidence::*;
pub use incident_events::*;
pub use metrics::*;
pub use migrate::*;
pub use orders::*;
pub use releases::*;
pub use replica::*;
pub use retry::*;
pub use scope::*;
pub use seed::*;
pub use session::*;

use serde::Deserialize;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::{Executor, Postgres, Row};

use crate::core::error::{Error, Result};

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./assets/migrations");

fn decode<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::UnexpectedAnswer { what: what.to_string(), detail: e.to_string() })
}

async fn call_json<'e, E: Executor<'e, Database = Postgres>>(
    executor: E,
    query: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Value> {
    let row: PgRow = query.fetch_one(executor).await?;
    Ok(row.try_get::<Value, _>(0)?)
}
