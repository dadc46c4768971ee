//! How rows become the domain's values: `FromRow` for the types of `core::contract`, so the
//! domain stays free of sqlx and every column is named in one place.

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::core::contract::{
    MaintenanceState, OrderRollbackState, OrderRow, RollbackRecord, Violation, name_with_login,
};

impl<'r> FromRow<'r, PgRow> for OrderRollbackState {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(OrderRollbackState {
            order_id: row.try_get("order_id")?,
            status: row.try_get("status")?,
            rollback_id: row.try_get("rollback_id")?,
            operation: row.try_get("operation")?,
            operator: row.try_get("operator")?,
            at: row.try_get("at")?,
            by_this_login: row.try_get("by_this_login")?,
            refunded: row.try_get("refunded")?,
            margin_released: row.try_get("margin_released")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for Violation {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Violation {
            user_id: row.try_get("user_id")?,
            check_name: row.try_get("check_name")?,
            expected: row.try_get("expected")?,
            actual: row.try_get("actual")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for OrderRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(OrderRow {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            symbol: row.try_get("symbol")?,
            side: row.try_get("side")?,
            order_type: row.try_get("order_type")?,
            quantity: row.try_get("quantity")?,
            price: row.try_get("price")?,
            status: row.try_get("status")?,
            transaction_id: row.try_get("transaction_id")?,
            total_cost: row.try_get("total_cost")?,
            commission: row.try_get("commission")?,
            failure_reason: row.try_get("failure_reason")?,
            rolled_back_reason: row.try_get("rolled_back_reason")?,
            created_at: row.try_get("created_at")?,
            executed_at: row.try_get("executed_at")?,
            rolled_back_at: row.try_get("rolled_back_at")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for RollbackRecord {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(RollbackRecord {
            at: row.try_get("at")?,
            duration_us: row.try_get("duration_us")?,
            success: row.try_get("success")?,
            operation: row.try_get("operation")?,
            orders: row.try_get("orders")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for MaintenanceState {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(MaintenanceState {
            maintenance_mode: row.try_get("maintenance_mode")?,
            maintenance_reason: row.try_get("maintenance_reason")?,
            maintenance_since: row.try_get("maintenance_since")?,
            // Who switched it, with the login that did (the column is optional to the reader).
            maintenance_by: row.try_get::<Option<String>, _>("maintenance_by")?.map(|by| {
                let login: Option<String> = row.try_get("maintenance_by_login").ok().flatten();
                name_with_login(&by, login.as_deref())
            }),
            symbols: row.try_get::<Option<Vec<String>>, _>("suspended_symbols").ok().flatten().unwrap_or_default(),
            breaker: match (
                row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("breaker_since").ok().flatten(),
                row.try_get::<Option<String>, _>("breaker_reason").ok().flatten(),
            ) {
                (Some(since), Some(reason)) => Some(crate::core::contract::BreakerOpen {
                    since,
                    reason,
                    source: row.try_get::<Option<String>, _>("breaker_source").ok().flatten().unwrap_or_default(),
                    opened_by: row.try_get::<Option<String>, _>("breaker_by").ok().flatten().map(|by| {
                        let login: Option<String> = row.try_get("breaker_by_login").ok().flatten();
                        name_with_login(&by, login.as_deref())
                    }),
                }),
                _ => None,
            },
        })
    }
}
