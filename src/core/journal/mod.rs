//! The journal's line format (the file itself is `store::journal`). The incident's timeline: an append-only file of JSON lines in which every line carries
//! the hash of the line before it, so that an edited, deleted, reordered or truncated line
//! is found and located by [`Journal::verify`]. It is a plain file so that it keeps
//! working when the database is the thing that is broken.
//!
//! # Format
//!
//! Every line is one [`Entry`], written as compact JSON with the members in this order and
//! ended by a single `\n`:
//!
//! ```text
//! {"seq":N,"at":"AT","operator":OP,"kind":"KIND","data":DATA,"prev":"PREV","hash":"HASH"}
//! ```
//!
//! - `seq`: 1 for the first line, then +1 per line, as a JSON integer.
//! - `at`: RFC 3339 in UTC with exactly six fractional digits and a `Z`
//!   (`2024-05-01T12:00:00.123456Z`); times are truncated to microseconds when appended.
//! - `operator`, `kind`: JSON strings as `serde_json` escapes them (`"`, `\`, and control
//!   characters escaped; everything else, non-ASCII included, written as is).
//! - `data`: a JSON object in canonical form: no whitespace, object keys sorted by their
//!   UTF-8 bytes at every depth, array order kept, strings as above, numbers as
//!   `serde_json` prints them.
//! - `prev`: the `hash` of the previous line; 64 `0`s on the first line.
//! - `hash`: lowercase hex SHA-256 of the *hashed text*: the same line without the
//!   `,"hash":"HASH"` member and without the newline, i.e.
//!   `{"seq":N,"at":"AT","operator":OP,"kind":"KIND","data":DATA,"prev":"PREV"}`.
//!
//! [`Journal::verify`] recomputes each hash over the bytes actually on disk (the line minus
//! its trailing `,"hash":"…"` member, plus `}`), so any changed byte is caught whatever the
//! JSON parser would make of it (`1e5` vs `1E5`, `\u001f` vs `\u001F`), and old journals
//! stay verifiable even if a later `serde_json` prints numbers differently.
//!
//! # Kinds
//!
//! An entry's `kind` and `data` are read as an [`Event`] (see [`event`]): one variant per
//! kind with its data typed, and [`Event::Unknown`] keeping, as read, a kind this version
//! does not know or data it does not read exactly. Every event writes back to the very
//! `data` it was read from, so typing changes no byte and no hash.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::error::{Error, Result};
use crate::core::sanitize;

pub mod event;

pub use event::Event;

/// The `prev` of the first entry: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest `kind`, in characters.
pub const KIND_MAX_CHARS: usize = 64;

/// The longest `operator`, in characters.
pub const OPERATOR_MAX_CHARS: usize = 200;

/// How deeply `data` may nest; serde_json refuses to read back JSON nested deeper than 128.
pub const DATA_MAX_DEPTH: usize = 100;

/// The member that ends every line, before the hash's hex digits and `"}`.
const HASH_MEMBER: &[u8] = b",\"hash\":\"";

/// Length of a hex SHA-256.
pub(crate) const HEX_LEN: usize = 64;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "Line")]
pub struct Entry {
    /// Position in the journal: 1, 2, ...; equal to the line number.
    pub seq: u64,
    /// When the action happened (UTC, microsecond precision).
    pub at: DateTime<Utc>,
    /// Who did it.
    pub operator: String,
    /// What happened: the line's `kind` and `data`.
    pub event: Event,
    /// The previous entry's `hash`; [`GENESIS_PREV`] for the first entry.
    pub prev: String,
    /// Lowercase hex SHA-256 of [`Entry::hashed_text`].
    pub hash: String,
}

/// A line's members as JSON has them; `kind` and `data` become the entry's [`Event`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    at: DateTime<Utc>,
    operator: String,
    kind: String,
    data: Value,
    prev: String,
    hash: String,
}

impl From<Line> for Entry {
    fn from(l: Line) -> Entry {
        Entry {
            seq: l.seq,
            at: l.at,
            operator: l.operator,
            event: Event::from_parts(&l.kind, l.data),
            prev: l.prev,
            hash: l.hash,
        }
    }
}

/// An entry written as its line's members, in the line's order (for `--json` and the
/// database's copy).
#[derive(Serialize)]
struct LineRef<'a> {
    seq: u64,
    at: &'a DateTime<Utc>,
    operator: &'a str,
    kind: &'a str,
    data: Value,
    prev: &'a str,
    hash: &'a str,
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        LineRef {
            seq: self.seq,
            at: &self.at,
            operator: &self.operator,
            kind: self.kind(),
            data: self.data(),
            prev: &self.prev,
            hash: &self.hash,
        }
        .serialize(serializer)
    }
}

impl Entry {
    /// The line's `kind`: 1 to 64 characters of `a-z`, `0-9`, `_`.
    pub fn kind(&self) -> &str {
        self.event.kind()
    }

    /// The line's `data`: always a JSON object.
    pub fn data(&self) -> Value {
        self.event.data()
    }

    /// The canonical text the hash covers: the line without its `hash` member (see the
    /// module documentation).
    pub fn hashed_text(&self) -> Result<String> {
        hashed_text(self.seq, &self.at, &self.operator, self.kind(), &self.data(), &self.prev)
    }

    /// The hash recomputed from the fields; equal to `hash` for an entry read from an
    /// intact journal (unless a float in an unknown kind's data did not survive
    /// serde_json's parsing).
    pub fn compute_hash(&self) -> Result<String> {
        Ok(sha256_hex(self.hashed_text()?.as_bytes()))
    }
}

/// The outcome of [`Journal::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every line is well-formed and chained; `last_hash` is the last entry's hash
    /// ([`GENESIS_PREV`] when the journal is empty).
    Intact {
        /// Number of entries.
        entries: u64,
        /// Hash of the last entry, the value to quote in a report.
        last_hash: String,
    },
    /// The first line that is not what it should be.
    Broken {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it, printable.
        reason: String,
    },
}

/// Checks one line (without its newline) on its own: it parses as an entry, it ends with
/// its hash member, the hash matches the bytes before it, and the fields are valid.
/// Chain checks (seq, prev) are the caller's. The error is the reason, for the user.
pub(crate) fn check_line(line: &[u8]) -> std::result::Result<Entry, String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    let entry: Entry = serde_json::from_slice(line).map_err(|e| format!("not a valid entry: {e}"))?;
    let Some((hashed, recorded)) = split_hash(line) else {
        return Err("the line does not end with its \"hash\" member".into());
    };
    let computed = sha256_hex(&hashed);
    if computed.as_bytes() != recorded {
        return Err(format!(
            "hash mismatch: the line was altered (recorded {}…, computed {}…)",
            String::from_utf8_lossy(recorded.get(..12).unwrap_or(recorded)),
            computed.get(..12).unwrap_or(&computed)
        ));
    }
    if !is_hex_hash(&entry.prev) {
        return Err("prev is not 64 lowercase hex digits".into());
    }
    validate_operator(&entry.operator).map_err(|e| e.to_string())?;
    // A typed event's kind and data are valid by construction; only what was kept as read
    // needs checking.
    if let Event::Unknown(u) = &entry.event {
        validate_kind(u.kind()).map_err(|e| e.to_string())?;
        validate_data(u.data()).map_err(|e| e.to_string())?;
    }
    Ok(entry)
}

/// Splits `…,"hash":"HEX"}` into the hashed text (`…}`) and `HEX`.
fn split_hash(line: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let body = line.strip_suffix(b"\"}")?;
    let (head, hex) = body.split_at_checked(body.len().checked_sub(HEX_LEN)?)?;
    let fields = head.strip_suffix(HASH_MEMBER)?;
    let mut hashed = Vec::with_capacity(fields.len() + 1);
    hashed.extend_from_slice(fields);
    hashed.push(b'}');
    Some((hashed, hex))
}

/// The hashed text of an entry (see the module documentation).
pub(crate) fn hashed_text(
    seq: u64,
    at: &DateTime<Utc>,
    operator: &str,
    kind: &str,
    data: &Value,
    prev: &str,
) -> Result<String> {
    let mut out = String::with_capacity(256);
    out.push_str("{\"seq\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"at\":");
    push_json(&mut out, &Value::from(format_at(at)))?;
    out.push_str(",\"operator\":");
    push_json(&mut out, &Value::from(operator))?;
    out.push_str(",\"kind\":");
    push_json(&mut out, &Value::from(kind))?;
    out.push_str(",\"data\":");
    push_canonical(&mut out, data)?;
    out.push_str(",\"prev\":");
    push_json(&mut out, &Value::from(prev))?;
    out.push('}');
    Ok(out)
}

/// The full line (without newline): the hashed text with the hash member added last.
pub(crate) fn line_from_hashed(hashed: &str) -> String {
    let hash = sha256_hex(hashed.as_bytes());
    let fields = hashed.strip_suffix('}').unwrap_or(hashed);
    format!("{fields},\"hash\":\"{hash}\"}}")
}

/// Canonical JSON: compact, object keys sorted by bytes at every depth. Sorting here
/// rather than relying on serde_json's map keeps the format fixed even if a dependency
/// turns on serde_json's `preserve_order`.
fn push_canonical(out: &mut String, value: &Value) -> Result<()> {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(out, &Value::from(key.as_str()))?;
                out.push(':');
                push_canonical(out, value)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_canonical(out, item)?;
            }
            out.push(']');
        }
        scalar => push_json(out, scalar)?,
    }
    Ok(())
}

/// A scalar (or string) as serde_json writes it.
fn push_json(out: &mut String, value: &Value) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|source| Error::Encode { what: "a journal entry", source })?;
    out.push_str(&text);
    Ok(())
}

fn format_at(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Truncates to microseconds (what the line keeps, and what PostgreSQL keeps) and refuses
/// years RFC 3339 cannot write.
pub(crate) fn normalize_at(at: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if !(0..=9999).contains(&at.year()) {
        return Err(Error::BadInput(format!("time {at} is outside the years 0000 to 9999")));
    }
    Ok(at.with_nanosecond(at.nanosecond() / 1_000 * 1_000).unwrap_or(at))
}

pub(crate) fn validate_operator(operator: &str) -> Result<()> {
    let n = operator.chars().count();
    if n == 0 || n > OPERATOR_MAX_CHARS {
        return Err(Error::BadInput(format!("operator must be 1 to {OPERATOR_MAX_CHARS} characters, got {n}")));
    }
    Ok(())
}

pub(crate) fn validate_kind(kind: &str) -> Result<()> {
    let n = kind.chars().count();
    if n == 0 || n > KIND_MAX_CHARS {
        return Err(Error::BadInput(format!("kind must be 1 to {KIND_MAX_CHARS} characters, got {n}")));
    }
    if let Some(c) = kind.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_')) {
        return Err(Error::BadInput(format!(
            "kind {:?} may only contain a-z, 0-9 and _, not {:?}",
            sanitize::line(kind),
            sanitize::line(c.encode_utf8(&mut [0; 4]))
        )));
    }
    Ok(())
}

pub(crate) fn validate_data(data: &Value) -> Result<()> {
    let what = match data {
        Value::Object(_) => {
            if nested_deeper_than(data, DATA_MAX_DEPTH) {
                return Err(Error::BadInput(format!("data is nested deeper than {DATA_MAX_DEPTH} levels")));
            }
            return Ok(());
        }
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    };
    Err(Error::BadInput(format!("data must be a JSON object, got {what}")))
}

/// Without recursion, so absurdly deep input cannot overflow the stack here.
fn nested_deeper_than(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

fn is_hex_hash(s: &str) -> bool {
    s.len() == HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(HEX_LEN);
    for b in digest.iter() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
