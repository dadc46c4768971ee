//! The orders filter language, for the console's filter line and the CLI's `--filter`:
//! whitespace-separated terms, `key:value` or bare. Several terms of one kind are
//! alternatives (`GBPUSD EURUSD`, `status:executed,rolled_back`); different kinds narrow
//! (`GBPUSD sell`). A term that means nothing is an error naming it, never a silent zero.
//!
//! | key (aliases)              | value                                                  |
//! | -------------------------- | ------------------------------------------------------ |
//! | `symbol` (`sym`, `s`)      | a symbol: `GBPUSD`                                     |
//! | `status` (`st`)            | pending, executing, executed, failed, cancelled, rolled_back |
//! | `side`                     | buy, sell                                              |
//! | `qty` (`quantity`, `q`)    | `100`, `>100`, `>=100`, `<5`, `<=5`, `10..100`         |
//! | `from` (`since`), `to` (`until`) | 13:02 (the book's last day), 2026-11-25 13:02, RFC 3339 |
//! | `id` (`order`), `user` (`u`), `tx` (`transaction`, `t`) | a whole id or its first hex digits (`512a83f1`) |
//!
//! Bare terms: a status or side name; a whole UUID, or 6 or more hex digits with a digit
//! among them, is an order id (or prefix); anything else that looks like a symbol is one.

use rust_decimal::Decimal;

use crate::core::orders::{IdRange, OrderQuery, QuantityBound, TimeBound, parse_symbol, parse_time_bound};
use crate::core::sanitize;

/// The statuses an order has.
pub const STATUSES: [&str; 6] = ["pending", "executing", "executed", "failed", "cancelled", "rolled_back"];
/// The sides of an order.
pub const SIDES: [&str; 2] = ["buy", "sell"];

/// Parses a filter line into a query, or says which term it could not read and why.
pub fn parse_filter(text: &str) -> Result<OrderQuery, String> {
    let mut q = OrderQuery::default();
    for term in text.split_whitespace() {
        let (key, value) = match term.split_once(':') {
            // "13:02" alone is not key:value, but "from:13:02" is.
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()) => (k.to_ascii_lowercase(), v),
            _ => (String::new(), term),
        };
        let bad = |what: &str| format!("{what}: {}", sanitize::line(term));
        if !key.is_empty() && value.is_empty() {
            return Err(bad("no value after the colon"));
        }
        let values = || value.split(',').filter(|v| !v.is_empty());
        match key.as_str() {
            "symbol" | "sym" | "s" => {
                for v in values() {
                    push_new(
                        &mut q.symbols,
                        parse_symbol(v).map_err(|_| bad("not a symbol (3 to 12 letters or digits)"))?,
                    );
                }
            }
            "status" | "st" => {
                for v in values() {
                    push_new(
                        &mut q.statuses,
                        parse_status(v).ok_or_else(|| bad(&format!("not a status ({})", STATUSES.join(", "))))?,
                    );
                }
            }
            "side" => {
                for v in values() {
                    push_new(&mut q.sides, parse_side(v).ok_or_else(|| bad("not a side (buy, sell)"))?);
                }
            }
            "qty" | "quantity" | "q" => {
                if q.min_quantity.is_some() || q.max_quantity.is_some() {
                    return Err(bad("a second quantity range (give one: qty:10..100)"));
                }
                let (lo, hi) = parse_quantity(value).ok_or_else(|| bad("not a quantity (100, >100, <=5, 10..100)"))?;
                (q.min_quantity, q.max_quantity) = (lo, hi);
            }
            "from" | "since" => {
                if q.from.is_some() {
                    return Err(bad("a second start (give one from:)"));
                }
                q.from = Some(parse_time_bound(value).map_err(|e| bad(&e.to_string()))?);
            }
            "to" | "until" => {
                if q.to.is_some() {
                    return Err(bad("a second end (give one to:)"));
                }
                q.to = Some(parse_time_bound(value).map_err(|e| bad(&e.to_string()))?);
            }
            "id" | "order" => {
                for v in values() {
                    push_new(
                        &mut q.ids,
                        IdRange::prefix(v).ok_or_else(|| bad("not an order id or its first hex digits"))?,
                    );
                }
            }
            "user" | "u" => {
                for v in values() {
                    push_new(
                        &mut q.user_ids,
                        IdRange::prefix(v).ok_or_else(|| bad("not a user id or its first hex digits"))?,
                    );
                }
            }
            "tx" | "transaction" | "t" => {
                for v in values() {
                    let id = IdRange::prefix(v).ok_or_else(|| bad("not a transaction id or its first hex digits"))?;
                    push_new(&mut q.transaction_ids, id);
                }
            }
            "" => bare(&mut q, value).map_err(&bad)?,
            _ => return Err(bad("unknown filter key (symbol, status, side, qty, from, to, id, user, tx)")),
        }
    }
    check_window(&q)?;
    Ok(q)
}

/// A bare term: a status, a side, an order id or prefix, or a symbol, in that order.
fn bare(q: &mut OrderQuery, value: &str) -> Result<(), &'static str> {
    if let Some(s) = parse_status(value) {
        push_new(&mut q.statuses, s);
    } else if let Some(s) = parse_side(value) {
        push_new(&mut q.sides, s);
    } else if let Some(id) = bare_id(value) {
        push_new(&mut q.ids, id);
    } else if let Ok(s) = parse_symbol(value) {
        push_new(&mut q.symbols, s);
    } else {
        return Err(
            "not a status, side, order id or symbol (key:value terms: symbol, status, side, qty, from, to, id, user, tx)",
        );
    }
    Ok(())
}

/// A whole UUID, or 6 to 32 hex digits with a digit among them (a symbol has letters
/// only or is shorter): what the console shows of an id.
fn bare_id(value: &str) -> Option<IdRange> {
    if let Ok(id) = uuid::Uuid::parse_str(value) {
        return Some(IdRange::exact(id));
    }
    let hex =
        value.len() >= 6 && value.chars().all(|c| c.is_ascii_hexdigit()) && value.chars().any(|c| c.is_ascii_digit());
    if hex { IdRange::prefix(value) } else { None }
}

fn push_new<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn parse_status(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase().replace('-', "_");
    STATUSES.contains(&s.as_str()).then_some(s)
}

fn parse_side(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase();
    SIDES.contains(&s.as_str()).then_some(s)
}

/// `100` (exactly), `>100`, `>=100`, `<5`, `<=5`, `10..100` (both included).
fn parse_quantity(v: &str) -> Option<(Option<QuantityBound>, Option<QuantityBound>)> {
    let num = |s: &str| s.trim().parse::<Decimal>().ok().filter(|d| !d.is_sign_negative());
    if let Some((a, b)) = v.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        return (a <= b).then_some((Some((a, true)), Some((b, true))));
    }
    for (op, lo, inclusive) in [(">=", true, true), ("<=", false, true), (">", true, false), ("<", false, false)] {
        if let Some(rest) = v.strip_prefix(op) {
            let n = num(rest)?;
            return Some(if lo { (Some((n, inclusive)), None) } else { (None, Some((n, inclusive))) });
        }
    }
    let n = num(v)?;
    Some((Some((n, true)), Some((n, true))))
}

/// A window that takes no order is an error. Two instants, or two times of day, are
/// compared here; an instant against a time of day once the book's day is known.
pub fn check_window(q: &OrderQuery) -> Result<(), String> {
    let empty = match (q.from, q.to) {
        (Some(TimeBound::At(a)), Some(TimeBound::At(b))) => a >= b,
        (Some(TimeBound::TimeOfDay(a)), Some(TimeBound::TimeOfDay(b))) => a >= b,
        _ => false,
    };
    match (empty, q.from, q.to) {
        (true, Some(a), Some(b)) => Err(format!("empty window: from {a} is not before to {b}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use uuid::Uuid;

    fn ok(text: &str) -> OrderQuery {
        parse_filter(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn filters_parse_keys_and_bare_terms() {
        let q = ok("GBPUSD executed from:13:02 to:13:06");
        assert_eq!(q.symbols, ["GBPUSD"]);
        assert_eq!(q.statuses, ["executed"]);
        assert_eq!(q.from, NaiveTime::from_hms_opt(13, 2, 0).map(TimeBound::TimeOfDay));
        let id = Uuid::new_v4();
        let q = ok(&format!("user:{id} status:rolled-back"));
        assert_eq!(q.user_ids, [IdRange::exact(id)]);
        assert_eq!(q.statuses, ["rolled_back"]);
        assert_eq!(ok(&id.to_string()).ids, [IdRange::exact(id)]);
        assert_eq!(ok("  "), OrderQuery::default());
    }

    #[test]
    fn several_terms_of_a_kind_are_alternatives() {
        assert_eq!(ok("GBPUSD EURUSD").symbols, ["GBPUSD", "EURUSD"]);
        assert_eq!(ok("symbol:gbpusd,eurusd").symbols, ["GBPUSD", "EURUSD"]);
        assert_eq!(ok("executed rolled_back").statuses, ["executed", "rolled_back"]);
        let q = ok("GBPUSD sell");
        assert_eq!(
            (q.symbols.as_slice(), q.sides.as_slice()),
            (&["GBPUSD".to_string()][..], &["sell".to_string()][..])
        );
    }

    #[test]
    fn quantities_and_id_prefixes() {
        let d = |s: &str| s.parse::<Decimal>().unwrap_or_default();
        let q = ok("qty:10..100");
        assert_eq!((q.min_quantity, q.max_quantity), (Some((d("10"), true)), Some((d("100"), true))));
        assert_eq!(ok("qty:>5").min_quantity, Some((d("5"), false)));
        assert_eq!(ok("q:<=5.5").max_quantity, Some((d("5.5"), true)));
        let q = ok("id:512a83f1");
        let r = q.ids[0];
        assert_eq!(r.lo.to_string(), "512a83f1-0000-0000-0000-000000000000");
        assert_eq!(r.hi.to_string(), "512a83f1-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(r.to_string(), "512a83f1…");
        assert_eq!(ok("512a83f1").ids, q.ids, "a bare 8-digit prefix is an order's");
        assert_eq!(ok("user:7e57").user_ids.len(), 1);
        assert_eq!(ok("tx:0b5e-0003").transaction_ids[0].lo.to_string(), "0b5e0003-0000-0000-0000-000000000000");
        assert_eq!(ok("BADCAFE").symbols, ["BADCAFE"], "letters only: a symbol");
    }

    #[test]
    fn bad_filters_say_which_term() {
        let err = |t: &str| parse_filter(t).err().unwrap_or_else(|| panic!("{t:?} was accepted"));
        assert!(err("colour:red").starts_with("unknown filter key"));
        assert!(err("user:bob").contains("user:bob"));
        assert!(err("from:yesterday").contains("from:yesterday"));
        assert!(err("GBP;USD").contains("GBP;USD"));
        assert!(err("from:2026-11-25T13:06 to:2026-11-25T13:02").starts_with("empty window"));
        assert!(err("from:13:06 to:13:02").starts_with("empty window"), "times of day too");
        assert!(err("qty:100..10").contains("qty:100..10"));
        assert!(err("qty:-1").contains("not a quantity"));
        assert!(err("side:up").contains("not a side"));
        assert!(err("status:").contains("no value"));
        assert!(err("from:13:00 from:13:01").contains("second start"));
        // control characters in a bad term are shown, not sent to the terminal
        assert!(err("x\x1b[2J").contains("\\x1b"));
    }

    #[test]
    fn a_filter_says_itself_in_words() {
        assert_eq!(ok("").describe(), "every order");
        assert_eq!(
            ok("GBPUSD EURUSD sell qty:>=10 from:13:02 to:13:06").describe(),
            "symbol GBPUSD or EURUSD · side sell · quantity ≥ 10 · created from 13:02:00 to 13:06:00"
        );
        assert_eq!(ok("id:512a83f1 executed").describe(), "order 512a83f1… · status executed");
    }
}
