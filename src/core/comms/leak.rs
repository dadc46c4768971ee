//! What must never reach a customer: internal identifiers (order ids, user ids, any UUID or
//! long hex id), internal values the caller names, hostnames and IP addresses. The check runs
//! on the final text, so it also catches what a person typed into a field.

use std::collections::BTreeSet;
use std::fmt;

/// Internal values shorter than this are not searched for: they occur in ordinary prose
/// (counts, minutes), and the ids of this platform are UUIDs anyway.
pub const MIN_INTERNAL_LEN: usize = 4;

/// What kind of internal detail was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeakKind {
    /// One of the caller's internal values (an order id, a user id, a database host).
    InternalValue,
    /// A UUID (8-4-4-4-12 hex digits).
    Uuid,
    /// A run of 32 or more hex digits (a UUID without hyphens, a hash).
    HexId,
    /// 8 hex digits, letters and digits mixed: the short id the console lists orders,
    /// users and transactions by.
    ShortId,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A host name that is not one of the allowed public domains.
    Hostname,
}

impl LeakKind {
    /// A few words for the error message.
    pub fn describe(self) -> &'static str {
        match self {
            LeakKind::InternalValue => "internal value",
            LeakKind::Uuid => "UUID",
            LeakKind::HexId => "hex identifier",
            LeakKind::ShortId => "short id",
            LeakKind::IpAddress => "IP address",
            LeakKind::Hostname => "host name",
        }
    }
}

/// One internal detail found in a text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leak {
    /// What it is.
    pub kind: LeakKind,
    /// The text found, as it appears (not secret: the person must see what to remove).
    pub found: String,
    /// 1-based line of the first occurrence.
    pub line: usize,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` (line {})", self.kind.describe(), self.found, self.line)
    }
}

/// Every internal detail in `text`, first occurrence of each, in order of lines.
/// `internal` are values to find anywhere (case-insensitive, on word boundaries);
/// `public_domains` are host names allowed in customer text (and their subdomains).
pub fn scan_leaks(text: &str, internal: &[String], public_domains: &[String]) -> Vec<Leak> {
    // An id is also searched for in the other forms the console shows it: without hyphens,
    // and its first 8 digits (what the orders list shows).
    let forms = |v: &String| -> Vec<String> {
        let v = v.trim().to_ascii_lowercase();
        match uuid::Uuid::parse_str(&v) {
            Ok(id) => {
                let simple = id.simple().to_string();
                vec![v, simple.clone(), simple[..8].to_string()]
            }
            Err(_) => vec![v],
        }
    };
    let internal: Vec<String> = internal
        .iter()
        .flat_map(forms)
        .filter(|v| v.chars().count() >= MIN_INTERNAL_LEN)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let public: Vec<String> = public_domains
        .iter()
        .map(|d| d.trim().trim_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        // Everything found is a slice of `line`; its offset orders the findings.
        let offset = |found: &str| found.as_ptr() as usize - line.as_ptr() as usize;
        let mut found: Vec<(usize, LeakKind, &str)> = Vec::new();
        for v in &internal {
            found.extend(find_bounded(line, v).into_iter().map(|f| (offset(f), LeakKind::InternalValue, f)));
        }
        found.extend(hex_ids(line).into_iter().map(|(k, f)| (offset(f), k, f)));
        found.extend(tokens(line).filter_map(|t| classify_token(t, &public).map(|k| (offset(t), k, t))));
        // Longest first where two start together: an id is named whole, not by the prefix
        // of it that is also searched for.
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.len().cmp(&a.2.len())).then(a.1.cmp(&b.1)));
        let mut covered = 0;
        for (at, kind, text) in found {
            // Inside what was already named (a prefix of a whole id): not named again.
            if at < covered {
                continue;
            }
            covered = at + text.len();
            // One report per text: an internal value that is also a UUID is named once,
            // as the internal value.
            if seen.insert(text.to_ascii_lowercase()) {
                out.push(Leak { kind, found: text.to_string(), line: i + 1 });
            }
        }
    }
    out
}

/// Occurrences of `needle` (ASCII-lowercased) in `line`, not inside a longer word or number.
fn find_bounded<'a>(line: &'a str, needle: &str) -> Vec<&'a str> {
    // ASCII lowercasing keeps byte offsets identical between `hay` and `line`.
    let hay = line.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = hay[from..].find(needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before = line[..start].chars().next_back();
        let after = line[end..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            found.push(&line[start..end]);
        }
        from = start + needle.len().max(1);
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    found
}

/// UUIDs and long hex runs, bounded by non-alphanumerics.
fn hex_ids(line: &str) -> Vec<(LeakKind, &str)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary_before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary_before && bytes[i].is_ascii_hexdigit() {
            // A run of hex digits and hyphens starting here.
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_hexdigit() || bytes[j] == b'-') {
                j += 1;
            }
            let boundary_after = j == bytes.len() || !bytes[j].is_ascii_alphanumeric();
            if boundary_after {
                let run = line[i..j].trim_end_matches('-');
                if is_uuid(run) {
                    out.push((LeakKind::Uuid, run));
                } else if run.len() >= 32 && run.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push((LeakKind::HexId, run));
                } else if is_short_id(run) {
                    out.push((LeakKind::ShortId, run));
                } else {
                    // UUIDs glued to other text with hyphens: look inside the run.
                    for part in run.split('-').collect::<Vec<_>>().windows(5) {
                        let lens: Vec<usize> = part.iter().map(|p| p.len()).collect();
                        if lens == [8, 4, 4, 4, 12] {
                            let start = part[0].as_ptr() as usize - line.as_ptr() as usize;
                            out.push((LeakKind::Uuid, &line[start..start + 36]));
                        }
                    }
                    for part in run.split('-') {
                        if part.len() >= 32 {
                            out.push((LeakKind::HexId, part));
                        }
                    }
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// 8 hex digits with both digits and letters among them: "0b5e001a", not "20261125" (a
/// date) nor "deadbeef" (a word).
fn is_short_id(s: &str) -> bool {
    s.len() == 8
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(k, b)| if matches!(k, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// Words that could be addresses or host names: runs of letters, digits, `.`, `:`, `-`,
/// `_`, with sentence punctuation trimmed.
fn tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_')))
        .map(|t| t.trim_matches(|c| matches!(c, '.' | ':' | '-' | '_')))
        .filter(|t| !t.is_empty())
}

fn classify_token(token: &str, public: &[String]) -> Option<LeakKind> {
    if is_ipv6(token) {
        return Some(LeakKind::IpAddress);
    }
    // host:port
    let host = match token.split_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => token,
    };
    if is_ipv4(host) {
        return Some(LeakKind::IpAddress);
    }
    let host = host.to_ascii_lowercase();
    if host == "localhost" {
        return Some(LeakKind::Hostname);
    }
    if is_hostname(&host) && !public.iter().any(|d| host == *d || host.ends_with(&format!(".{d}"))) {
        return Some(LeakKind::Hostname);
    }
    None
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.iter().all(|p| p.parse::<u16>().is_ok_and(|n| n <= 255))
}

fn is_ipv6(s: &str) -> bool {
    if s.matches(':').count() < 2 || !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
        return false;
    }
    let groups: Vec<&str> = s.split(':').collect();
    let last = groups.len() - 1;
    let groups_ok = groups
        .iter()
        .enumerate()
        .all(|(k, g)| (g.len() <= 4 && g.bytes().all(|b| b.is_ascii_hexdigit())) || (k == last && is_ipv4(g)));
    // Times (07:48:00) have three decimal groups and no "::"; addresses have "::" or 5+ groups.
    groups_ok && s.bytes().any(|b| b.is_ascii_hexdigit()) && (s.contains("::") || groups.len() >= 5)
}

fn is_hostname(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    let Some(tld) = labels.last() else { return false };
    labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        // "e.g.", "1.5", "U.S." are not hosts: the top-level label is 2+ letters.
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(LeakKind, String)> {
        scan_leaks(text, &[], &["tradexpro.example".to_string()]).into_iter().map(|l| (l.kind, l.found)).collect()
    }

    #[test]
    fn finds_uuids_anywhere() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(kinds(&format!("order {id}.")), vec![(LeakKind::Uuid, id.to_string())]);
        assert_eq!(kinds(&format!("order-{id}")), vec![(LeakKind::Uuid, id.to_string())]);
        assert_eq!(kinds(&id.to_uppercase()), vec![(LeakKind::Uuid, id.to_uppercase())]);
        let simple = id.replace('-', "");
        assert_eq!(kinds(&format!("id={simple}")), vec![(LeakKind::HexId, simple.clone())]);
    }

    #[test]
    fn finds_ids_in_the_forms_the_console_shows_them() {
        // The orders list shows 8 digits: a short id mixing digits and letters is one.
        assert_eq!(kinds("order 512a83f1 was reversed"), vec![(LeakKind::ShortId, "512a83f1".into())]);
        assert_eq!(kinds("dates 20261125 and words like deadbeef are not"), vec![]);
        // A known id is found in each of its forms, even a prefix of digits only.
        let id = "51238301-e29b-41d4-a716-446655440000".to_string();
        let found = |text: &str| scan_leaks(text, std::slice::from_ref(&id), &[]);
        assert_eq!(found("order 51238301 was reversed").len(), 1, "its first 8 digits");
        assert_eq!(found("ref 51238301e29b41d4a716446655440000").len(), 1, "without hyphens");
        assert_eq!(found("order 512383019 is another").len(), 0, "not inside a longer number");
    }

    #[test]
    fn finds_addresses_and_hosts() {
        assert_eq!(kinds("db at 10.0.3.7:5432 down"), vec![(LeakKind::IpAddress, "10.0.3.7:5432".into())]);
        assert_eq!(
            kinds("via fe80::1 and 2001:db8:0:0:0:0:0:1"),
            vec![(LeakKind::IpAddress, "fe80::1".into()), (LeakKind::IpAddress, "2001:db8:0:0:0:0:0:1".into())]
        );
        assert_eq!(kinds("primary pg-1.db.internal failed"), vec![(LeakKind::Hostname, "pg-1.db.internal".into())]);
        assert_eq!(kinds("mail ops@db1.prod.corp"), vec![(LeakKind::Hostname, "db1.prod.corp".into())]);
        assert_eq!(kinds("connect to localhost"), vec![(LeakKind::Hostname, "localhost".into())]);
    }

    #[test]
    fn ordinary_prose_is_clean() {
        let text = "Posted 2026-11-26 07:48 UTC (07:48:05). We expect to resolve this within 2 hours, e.g. by 10:00.\n\
                    Balances of 1,234.56 and 0.5 are safe; see https://status.tradexpro.example/incident, a.m. or p.m.\n\
                    Trade-X-Pro-Global Support Team - U.S. customers - v1.2";
        assert_eq!(kinds(text), vec![]);
    }

    #[test]
    fn internal_values_on_word_boundaries_case_insensitive() {
        let internal = vec!["ORD-77123".to_string(), "db-primary".to_string(), "42".to_string()];
        let found = scan_leaks("Order ord-77123 on DB-PRIMARY; ORD-771234 is other; 42 minutes", &internal, &[]);
        let got: Vec<(LeakKind, &str, usize)> = found.iter().map(|l| (l.kind, l.found.as_str(), l.line)).collect();
        assert_eq!(got, vec![(LeakKind::InternalValue, "ord-77123", 1), (LeakKind::InternalValue, "DB-PRIMARY", 1)]);
    }

    #[test]
    fn reports_line_numbers_and_each_value_once() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        let found = scan_leaks(&format!("ok\n{id}\n{id}"), &[], &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
        assert_eq!(found[0].to_string(), format!("UUID `{id}` (line 2)"));
    }

    #[test]
    fn non_ascii_text_does_not_break_the_search() {
        assert!(scan_leaks("Grüße ÄÖÜ ünïcode ☃", &["ünïc".to_string()], &[]).is_empty());
        assert_eq!(scan_leaks("user abcd-ünïcode", &["abcd".to_string()], &[]).len(), 1);
    }
}
