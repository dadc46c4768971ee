//! Maintenance mode switched and proved: the switch, then a probe of the execution path
//! under every isolation level, always undone.

use serde_json::Value;

use crate::core::contract::MaintenanceProbe;
use crate::core::error::{Error, Result};
use crate::store::db::{self, Db, Isolation, maintenance_state, set_maintenance};

/// Switches maintenance mode and proves it with a probe order. Returns the function's
/// answer and what the probe saw; a refusal by the function is `BadInput` with its message.
pub async fn switch_maintenance(pool: &Db, on: bool, reason: &str) -> Result<(Value, MaintenanceProbe)> {
    proved(pool, set_maintenance(pool, on, reason).await?, None).await
}

/// Switches one symbol's maintenance mode and proves it with a probe order of that symbol
/// in each isolation level. As `switch_maintenance`.
pub async fn switch_symbol_maintenance(
    pool: &Db,
    symbol: &str,
    on: bool,
    reason: &str,
) -> Result<(Value, MaintenanceProbe)> {
    proved(pool, db::set_symbol_maintenance(pool, symbol, on, reason).await?, Some(symbol)).await
}

/// A switch's answer, then the probe of the book (or of `symbol`) and the state after it.
async fn proved(pool: &Db, r: Value, symbol: Option<&str>) -> Result<(Value, MaintenanceProbe)> {
    if r.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::BadInput(format!(
            "refused: {}",
            crate::core::sanitize::line(r.get("message").and_then(Value::as_str).unwrap_or("unknown"))
        )));
    }
    let probe_code = probe(pool, symbol).await?;
    let state = maintenance_state(pool).await?;
    let probe =
        MaintenanceProbe { new_orders_refused: probe_code.as_deref() == Some("maintenance_mode"), probe_code, state };
    Ok((r, probe))
}

/// Proves maintenance mode refuses new orders: `probe_new_orders()` runs the execution
/// path for an order that is always undone, once in each isolation level a client may use
/// (a snapshot taken before the switch must not let an order through either). Returns
/// `maintenance_mode` when every level refused for maintenance, else the first other
/// answer, with the level it came from.
pub async fn probe_new_orders(pool: &Db) -> Result<Option<String>> {
    probe(pool, None).await
}

/// [`probe_new_orders`], of the book or of one symbol's new orders.
async fn probe(pool: &Db, symbol: Option<&str>) -> Result<Option<String>> {
    for level in Isolation::ALL {
        let code = match symbol {
            Some(s) => db::probe_symbol_orders_in(pool, level, s).await?,
            None => db::probe_new_orders_in(pool, level).await?,
        };
        if code.as_deref() != Some("maintenance_mode") {
            let code = code.unwrap_or_else(|| "executed".into());
            return Ok(Some(if level == Isolation::ReadCommitted { code } else { format!("{code} ({level})") }));
        }
    }
    Ok(Some("maintenance_mode".into()))
}
