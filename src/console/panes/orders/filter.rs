//! The Orders filter line: `key:value` terms or bare ones, parsed into a query.

use uuid::Uuid;

use crate::core::orders::{OrderQuery, TimeBound};

/// Parses the filter line. Terms are `key:value` (symbol, status, from, to, user, tx, id)
/// or bare: a UUID is an order id, a status name a status, anything else a symbol.
pub fn parse_filter(text: &str) -> Result<OrderQuery, String> {
    let mut q = OrderQuery::default();
    for term in text.split_whitespace() {
        let (key, value) = match term.split_once(':') {
            // "13:02" alone is not key:value, but "from:13:02" is.
            Some((k, v)) if k.chars().all(|c| c.is_ascii_alphabetic()) && !k.is_empty() => (k.to_ascii_lowercase(), v),
            _ => (String::new(), term),
        };
        let bad = |what: &str| format!("{what}: {}", crate::core::sanitize::line(term));
        match key.as_str() {
            "symbol" | "sym" | "s" => {
                q.symbol = Some(crate::core::orders::parse_symbol(value).map_err(|_| bad("not a symbol"))?)
            }
            "status" | "st" => q.status = Some(parse_status(value).ok_or_else(|| bad("not a status"))?),
            "from" | "since" => q.from = Some(parse_bound(value).ok_or_else(|| bad("not a time"))?),
            "to" | "until" => q.to = Some(parse_bound(value).ok_or_else(|| bad("not a time"))?),
            "user" | "u" => q.user_id = Some(Uuid::parse_str(value).map_err(|_| bad("not a user id"))?),
            "tx" | "transaction" | "t" => {
                q.transaction_id = Some(Uuid::parse_str(value).map_err(|_| bad("not a transaction id"))?)
            }
            "id" | "order" => q.id = Some(Uuid::parse_str(value).map_err(|_| bad("not an order id"))?),
            "" => {
                if let Ok(id) = Uuid::parse_str(value) {
                    q.id = Some(id);
                } else if let Some(s) = parse_status(value) {
                    q.status = Some(s);
                } else if let Ok(s) = crate::core::orders::parse_symbol(value) {
                    q.symbol = Some(s);
                } else {
                    return Err(bad("unknown filter term"));
                }
            }
            _ => return Err(bad("unknown filter key (symbol, status, from, to, user, tx, id)")),
        }
    }
    if let (Some(TimeBound::At(a)), Some(TimeBound::At(b))) = (q.from, q.to)
        && a >= b
    {
        return Err("from must be before to".into());
    }
    Ok(q)
}

fn parse_status(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase().replace('-', "_");
    ["pending", "executing", "executed", "failed", "cancelled", "rolled_back"].contains(&s.as_str()).then_some(s)
}

fn parse_bound(s: &str) -> Option<TimeBound> {
    crate::core::orders::parse_time_bound(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    #[test]
    fn filters_parse_keys_and_bare_terms() {
        let q = parse_filter("GBPUSD executed from:13:02 to:13:06").unwrap_or_default();
        assert_eq!(q.symbol.as_deref(), Some("GBPUSD"));
        assert_eq!(q.status.as_deref(), Some("executed"));
        assert_eq!(q.from, NaiveTime::from_hms_opt(13, 2, 0).map(TimeBound::TimeOfDay));
        let id = Uuid::new_v4();
        let q = parse_filter(&format!("user:{id} status:rolled-back")).unwrap_or_default();
        assert_eq!(q.user_id, Some(id));
        assert_eq!(q.status.as_deref(), Some("rolled_back"));
        assert_eq!(parse_filter(&id.to_string()).unwrap_or_default().id, Some(id));
        assert_eq!(parse_filter("  ").unwrap_or_default(), OrderQuery::default());
    }

    #[test]
    fn bad_filters_say_which_term() {
        assert_eq!(parse_filter("colour:red").err().map(|e| e.starts_with("unknown filter key")), Some(true));
        assert!(parse_filter("user:bob").err().unwrap_or_default().contains("user:bob"));
        assert!(parse_filter("from:yesterday").is_err());
        assert!(parse_filter("GBP;USD").is_err());
        assert!(parse_filter("from:2026-11-25T13:06 to:2026-11-25T13:02").is_err());
        // control characters in a bad term are shown, not sent to the terminal
        assert!(parse_filter("x\x1b[2J").err().unwrap_or_default().contains("\\x1b"));
    }
}
