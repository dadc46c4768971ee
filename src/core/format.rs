//! How figures read for people, the same in the CLI, the console and the messages: money
//! with its cents and every significant digit, durations at a glance.

use rust_decimal::Decimal;

/// Money for people: at least two decimals, no trailing zeros beyond them.
pub fn money(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() < 2 { format!("{:.2}", n) } else { n.to_string() }
}

/// "12m", "1h05m": time boxes and deadlines read at a glance.
pub fn short_duration(d: chrono::Duration) -> String {
    let m = d.num_minutes().abs();
    if m >= 60 { format!("{}h{:02}m", m / 60, m % 60) } else { format!("{m}m") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_cents_and_drops_noise() {
        assert_eq!(money(Decimal::new(1000000000000, 8)), "10000.00");
        assert_eq!(money(Decimal::new(2222000000, 8)), "22.22");
        assert_eq!(money(Decimal::new(123456789, 8)), "1.23456789");
    }
}
