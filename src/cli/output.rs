//! Human output of the headless commands. Everything from the database passes through
//! `sanitize` before it reaches the terminal.

use std::fmt::Write;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::core::contract::{Check, OrderRow, Violation};
use crate::core::error::{Error, Result};
use crate::core::format::money;
use crate::core::sanitize;

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Encode { what: "the answer", source })?;
    println!("{text}");
    Ok(())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => match s.parse::<Decimal>() {
            Ok(d) => money(d),
            Err(_) => sanitize::line(s).into_owned(),
        },
        Value::Null => "none".into(),
        other => sanitize::line(&other.to_string()).into_owned(),
    }
}

/// The checks of a pre- or post-check, one per line, with expected and actual when given.
pub fn checks(list: &[Check]) -> String {
    let width = list.iter().map(|c| sanitize::line(&c.check).chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for c in list {
        let mark = if c.passed { "PASS" } else { "FAIL" };
        let _ = write!(out, "  {mark}  {:<width$}", sanitize::line(&c.check), width = width);
        if let Some(detail) = &c.detail {
            let _ = write!(out, "  {}", sanitize::line(detail));
        }
        if let (Some(e), Some(a)) = (&c.expected, &c.actual) {
            let (e, a) = (value_text(e), value_text(a));
            if c.passed {
                let _ = write!(out, "  [{a}]");
            } else {
                let _ = write!(out, "  [expected {e}, actual {a}]");
            }
        }
        out.push('\n');
        for v in c.violations.iter().flatten() {
            let _ = writeln!(out, "          violation: {}", sanitize::line(&v.to_string()));
        }
    }
    out
}

/// A fixed-width table; cells are sanitized.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| sanitize::line(c).into_owned()).collect()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(|s| s.as_str()).collect(), &mut out);
    for r in &rows {
        line(r.iter().map(|s| s.as_str()).collect(), &mut out);
    }
    out
}

/// The `orders` listing.
pub fn orders(list: &[OrderRow]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            vec![
                o.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                o.id.to_string(),
                o.user_id.to_string(),
                o.symbol.clone(),
                o.side.clone(),
                money(o.quantity),
                o.price.map(money).unwrap_or_default(),
                o.status.clone(),
                o.total_cost.map(money).unwrap_or_default(),
                o.transaction_id.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["created (UTC)", "order", "user", "symbol", "side", "quantity", "price", "status", "cost", "transaction"],
        &rows,
    )
}

/// The audit report, of the whole book or of some users.
pub fn violations(list: &[Violation], whole_book: bool) -> String {
    let title = if whole_book { "Ledger audit" } else { "Audit of the touched users" };
    if list.is_empty() {
        let tail = if whole_book { ", and the book nets to zero" } else { "" };
        return format!("{title}: no violations. Every balance and margin agrees with the ledger{tail}.\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.user_id.map(|u| u.to_string()).unwrap_or_else(|| "(book)".into()),
                v.check_name.clone(),
                v.expected.map(money).unwrap_or_else(|| "none".into()),
                v.actual.map(money).unwrap_or_else(|| "none".into()),
            ]
        })
        .collect();
    format!("{title}: {} violation(s)\n{}", list.len(), table(&["user", "check", "expected", "actual"], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sanitizes_cells() {
        let t = table(&["a"], &[vec!["x\x1b[31my".into()]]);
        assert!(t.contains("x\\x1b[31my"));
        assert!(!t.contains('\x1b'));
    }
}
