//! The orders list's order: a column, chosen from a fixed set (never from text), and a
//! direction. The list pages by the sort column's value and the order's id, so every order
//! has one place and a page deep in the list costs what the first does.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::core::contract::OrderRow;

/// A column the orders list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortColumn {
    /// When the order was created.
    #[default]
    Time,
    /// Symbol, A to Z.
    Symbol,
    /// buy before sell.
    Side,
    /// Quantity.
    Quantity,
    /// Limit price (none for a market order: always at the end).
    Price,
    /// Status, as text.
    Status,
    /// What the execution cost (none before execution: always at the end).
    Cost,
    /// The user's id.
    User,
}

impl SortColumn {
    /// Every column, in the order the list shows them (the chooser's digits).
    pub const ALL: [SortColumn; 8] = [
        SortColumn::Time,
        SortColumn::Symbol,
        SortColumn::Side,
        SortColumn::Quantity,
        SortColumn::Price,
        SortColumn::Status,
        SortColumn::Cost,
        SortColumn::User,
    ];

    /// Its name in the list's title and the chooser.
    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Time => "time",
            SortColumn::Symbol => "symbol",
            SortColumn::Side => "side",
            SortColumn::Quantity => "qty",
            SortColumn::Price => "price",
            SortColumn::Status => "status",
            SortColumn::Cost => "cost",
            SortColumn::User => "user",
        }
    }

    /// The direction a column is first sorted in: times and amounts largest first (the
    /// newest, the biggest: what an incident looks for), names from A.
    pub fn first_descending(self) -> bool {
        matches!(self, SortColumn::Time | SortColumn::Quantity | SortColumn::Price | SortColumn::Cost)
    }
}

/// The list's order: a column and a direction; ties (and the direction's) by the order id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSort {
    /// The column.
    pub column: SortColumn,
    /// Largest (newest, Z) first.
    pub descending: bool,
}

impl Default for OrderSort {
    /// Newest first.
    fn default() -> Self {
        OrderSort { column: SortColumn::Time, descending: true }
    }
}

impl OrderSort {
    /// Sorted by `column`: in its first direction, or the other way when it already is.
    pub fn choose(self, column: SortColumn) -> OrderSort {
        if column == self.column {
            OrderSort { column, descending: !self.descending }
        } else {
            OrderSort { column, descending: column.first_descending() }
        }
    }

    /// For the list's title: "newest first", "by qty ↓", "by symbol ↑".
    pub fn label(self) -> String {
        match (self.column, self.descending) {
            (SortColumn::Time, true) => "newest first".into(),
            (SortColumn::Time, false) => "oldest first".into(),
            (c, d) => format!("by {} {}", c.name(), if d { "↓" } else { "↑" }),
        }
    }

    /// A row's place in this order (with its id).
    pub fn key(self, row: &OrderRow) -> SortKey {
        let value = match self.column {
            SortColumn::Time => SortValue::Time(row.created_at),
            SortColumn::Symbol => SortValue::Text(row.symbol.clone()),
            SortColumn::Side => SortValue::Text(row.side.clone()),
            SortColumn::Status => SortValue::Text(row.status.clone()),
            SortColumn::Quantity => SortValue::Amount(Some(row.quantity)),
            SortColumn::Price => SortValue::Amount(row.price),
            SortColumn::Cost => SortValue::Amount(row.total_cost),
            SortColumn::User => SortValue::Id(row.user_id),
        };
        SortKey { value, id: row.id }
    }
}

/// The value of a row's sort column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    /// The time column.
    Time(DateTime<Utc>),
    /// Symbol, side or status.
    Text(String),
    /// An amount; none sorts after every amount, whichever the direction.
    Amount(Option<Decimal>),
    /// The user column.
    Id(Uuid),
}

/// A row's place in a sorted list: its sort column's value, then its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The sort column's value.
    pub value: SortValue,
    /// The tie breaker.
    pub id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choosing_a_column_again_reverses_it() {
        let s = OrderSort::default();
        assert_eq!(s.label(), "newest first");
        let s = s.choose(SortColumn::Quantity);
        assert_eq!(s.label(), "by qty ↓");
        assert_eq!(s.choose(SortColumn::Quantity).label(), "by qty ↑");
        assert_eq!(s.choose(SortColumn::Symbol).label(), "by symbol ↑");
        assert_eq!(OrderSort::default().choose(SortColumn::Time).label(), "oldest first");
    }
}
