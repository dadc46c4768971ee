//! How figures read for people, the same in the CLI, the console and the messages: money
//! with its cents and every significant digit, durations at a glance.

use rust_decimal::Decimal;

/// Money for people: at least two decimals, no trailing zeros beyond them.
pub fn money(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() < 2 { format!("{:.2}", n) } else { n.to_string() }
}

/// An amount in a column of amounts: `scale` decimals (more if the amount has them: no
/// digit is ever dropped) and thousands grouped, "126,500.00", so that right-aligned
/// amounts line up and read at a glance.
pub fn grouped(d: Decimal, scale: u32) -> String {
    let scale = scale.max(d.normalize().scale());
    let text = format!("{:.*}", scale as usize, d.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(text.len() + int.len() / 3 + 1);
    if d.is_sign_negative() && !d.is_zero() {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
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
    fn grouped_amounts_line_up_and_lose_no_digit() {
        let d = |s: &str| s.parse::<Decimal>().unwrap_or_default();
        assert_eq!(grouped(d("126500"), 2), "126,500.00");
        assert_eq!(grouped(d("1.265"), 5), "1.26500");
        assert_eq!(grouped(d("1.26573"), 2), "1.26573", "a digit is never dropped");
        assert_eq!(grouped(d("-1234567.5"), 2), "-1,234,567.50");
        assert_eq!(grouped(d("999"), 2), "999.00");
        assert_eq!(grouped(d("0"), 2), "0.00");
        assert_eq!(grouped(d("123456789012.12345678"), 8), "123,456,789,012.12345678");
    }

    #[test]
    fn money_keeps_cents_and_drops_noise() {
        assert_eq!(money(Decimal::new(1000000000000, 8)), "10000.00");
        assert_eq!(money(Decimal::new(2222000000, 8)), "22.22");
        assert_eq!(money(Decimal::new(123456789, 8)), "1.23456789");
    }
}
