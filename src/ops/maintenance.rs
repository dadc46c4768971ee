//! Maintenance mode switched and proved: the switch, then a probe order inside a
//! transaction that is always rolled back.

use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::core::contract::MaintenanceProbe;
use crate::core::error::{Error, Result};
use crate::store::db::{Db, NewOrder, execute_order, maintenance_state, set_maintenance};

/// Switches maintenance mode and proves it with a probe order. Returns the function's
/// answer and what the probe saw; a refusal by the function is `BadInput` with its message.
pub async fn switch_maintenance(pool: &Db, on: bool, reason: &str) -> Result<(Value, MaintenanceProbe)> {
    let r = set_maintenance(pool, on, reason).await?;
    if r.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::BadInput(format!(
            "refused: {}",
            crate::core::sanitize::line(r.get("message").and_then(Value::as_str).unwrap_or("unknown"))
        )));
    }
    let probe_code = probe_new_orders(pool).await?;
    let state = maintenance_state(pool).await?;
    let probe =
        MaintenanceProbe { new_orders_refused: probe_code.as_deref() == Some("maintenance_mode"), probe_code, state };
    Ok((r, probe))
}

/// Proves maintenance mode refuses new orders: tries an order inside a transaction that
/// is always rolled back, and returns the error code it got (`maintenance_mode` when on).
pub async fn probe_new_orders(pool: &Db) -> Result<Option<String>> {
    let mut tx = pool.begin().await?;
    let key = format!("maintenance-probe-{}", Uuid::new_v4());
    let o = NewOrder {
        user_id: Uuid::new_v4(),
        symbol: "EURUSD",
        order_type: "market",
        side: "buy",
        quantity: Decimal::ONE,
        price: Decimal::ONE,
        idempotency_key: &key,
        transaction_id: None,
    };
    let r = execute_order(&mut tx, &o).await;
    // Whatever happened, nothing of the probe stays.
    tx.rollback().await?;
    let v = r?;
    Ok(v.get("error_code").and_then(Value::as_str).map(str::to_string))
}
