//! The incident's journal file: an append-only file of JSON lines in the format of
//! [`crate::core::journal`], each line chained to the one before by its hash.
//!
//! # Concurrency
//!
//! Appends from several processes (two consoles, the CLI while the console runs) are
//! serialized by an exclusive `flock` held around "read the last line, compute, write,
//! fsync"; readers take a shared lock so they never see half a line. Every operation opens
//! its own file description, so threads of one process exclude each other the same way.
//! A lock is waited for at most [`LOCK_WAIT`]: an append holds it for milliseconds, so a
//! lock held longer is stuck, and a rollback waiting to write its intent must be refused
//! with that reason rather than hang.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::core::error::{Error, Result};
pub use crate::core::journal::{Entry, Event, GENESIS_PREV, Verification};
use crate::core::journal::{
    check_line, hashed_text, line_from_hashed, normalize_at, validate_data, validate_kind, validate_operator,
};
use crate::core::sanitize;

/// How much of the file's end is read at a time when looking for the last line.
const TAIL_CHUNK: u64 = 8192;

/// How long a read or an append waits for another process's lock before it gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// An incident's journal file.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    lock_wait: Duration,
}

impl Journal {
    /// Opens the journal at `path`, creating its parent directories and an empty file
    /// when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|e| Error::file("create the directory", parent, e))?;
        }
        let existed = path.exists();
        // 0600: the timeline names people and describes a live incident.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::file("open", &path, e))?;
        let meta = file.metadata().map_err(|e| Error::file("stat", &path, e))?;
        if !meta.is_file() {
            return Err(Error::BadInput(format!("journal {} is not a regular file", show(&path))));
        }
        if !existed {
            // Make the new file's name durable too, not only its later contents.
            file.sync_all().map_err(|e| Error::file("sync", &path, e))?;
            if let Some(dir) = parent.and_then(|p| File::open(p).ok()) {
                let _ = dir.sync_all();
            }
        }
        Ok(Journal { path, lock_wait: LOCK_WAIT })
    }

    /// The same journal, waiting at most `wait` for another process's lock (tests of a
    /// stuck lock need not wait [`LOCK_WAIT`]).
    pub fn with_lock_wait(mut self, wait: Duration) -> Journal {
        self.lock_wait = wait;
        self
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length and modification time: a cheap way to see that another process
    /// appended, without reading it. `None` when it cannot be read.
    pub fn stamp(&self) -> Option<(u64, std::time::SystemTime)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }

    /// Appends one entry, chained to the current last line, and returns it as it will be
    /// read back. Refuses (nothing written) when the input is malformed or the last line
    /// is broken.
    pub fn append(&self, operator: &str, event: &Event, at: DateTime<Utc>) -> Result<Entry> {
        let (kind, data) = (event.kind(), event.data());
        validate_operator(operator)?;
        validate_kind(kind)?;
        validate_data(&data)?;
        let at = normalize_at(at)?;

        // No create: a journal that vanished since `open` must not silently restart at 1.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::file("open", &self.path, e))?;
        lock(&file, libc::LOCK_EX, &self.path, self.lock_wait)?;

        let len = file.metadata().map_err(|e| Error::file("stat", &self.path, e))?.len();
        let (seq, prev) = match read_tail(&file, len).map_err(|e| Error::file("read", &self.path, e))? {
            None => (1, GENESIS_PREV.to_string()),
            Some(tail) => {
                let last = self.tail_entry(&tail)?;
                let seq = last.seq.checked_add(1).ok_or_else(|| {
                    Error::CheckFailed(format!("journal {}: the last entry's seq cannot be followed", show(&self.path)))
                })?;
                (seq, last.hash)
            }
        };

        let hashed = hashed_text(seq, &at, operator, kind, &data, &prev)?;
        let line = line_from_hashed(&hashed);
        // Read our own line back the way verify will, so nothing is ever written that the
        // journal itself would call broken (e.g. data that does not parse back).
        let entry = check_line(line.as_bytes())
            .map_err(|reason| Error::BadInput(format!("entry cannot be stored: {reason}")))?;
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');

        if let Err(e) = (&file).write_all(&bytes) {
            // Under the exclusive lock `len` is still the end of the last complete line:
            // cut off whatever part of ours made it, so the journal stays appendable.
            let _ = file.set_len(len);
            return Err(Error::file("write", &self.path, e));
        }
        file.sync_data().map_err(|e| Error::file("sync", &self.path, e))?;
        Ok(entry)
    }

    /// Every entry, in order. Fails on the first line that does not parse (naming it) but
    /// does not check the chain; that is [`Journal::verify`]'s job.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let file = self.open_shared()?;
        let mut reader = BufReader::new(file);
        let mut entries = Vec::new();
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::file("read", &self.path, e))?;
            if n == 0 {
                return Ok(entries);
            }
            line_no += 1;
            if buf.pop() != Some(b'\n') {
                return Err(self.corrupt(line_no, "the line is incomplete (no newline at the end)"));
            }
            let entry: Entry =
                serde_json::from_slice(&buf).map_err(|e| self.corrupt(line_no, &format!("does not parse: {e}")))?;
            entries.push(entry);
        }
    }

    /// Recomputes the chain and reports the first line that is broken: altered (hash
    /// mismatch or not JSON), missing (seq gap, prev mismatch), out of order, duplicated or
    /// truncated.
    pub fn verify(&self) -> Result<Verification> {
        self.walk(None)
    }

    /// Every entry, in order, each checked as [`Journal::verify`] does, in the same one
    /// read: an error naming the first broken line rather than entries that do not chain
    /// (what another process appended is folded in only through this).
    pub fn checked_entries(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        match self.walk(Some(&mut entries))? {
            Verification::Intact { .. } => Ok(entries),
            Verification::Broken { line, reason } => Err(self.corrupt(line, &reason)),
        }
    }

    /// Reads and checks every line, keeping the entries in `keep` when asked.
    fn walk(&self, mut keep: Option<&mut Vec<Entry>>) -> Result<Verification> {
        let file = self.open_shared()?;
        let mut reader = BufReader::new(file);
        let mut prev = GENESIS_PREV.to_string();
        let mut buf = Vec::new();
        let mut line = 0usize;
        let mut count = 0u64;
        let broken =
            |line: usize, reason: &str| Ok(Verification::Broken { line, reason: sanitize::line(reason).into_owned() });
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| Error::file("read", &self.path, e))?;
            if n == 0 {
                return Ok(Verification::Intact { entries: count, last_hash: prev });
            }
            line += 1;
            if buf.pop() != Some(b'\n') {
                return broken(line, "truncated: the last line has no newline at the end");
            }
            let entry = match check_line(&buf) {
                Ok(entry) => entry,
                Err(reason) => return broken(line, &reason),
            };
            let expected = count + 1;
            if entry.seq != expected {
                let why = if entry.seq > expected {
                    "a line is missing or out of order"
                } else {
                    "a line is duplicated or out of order"
                };
                return broken(line, &format!("seq {} where {expected} was expected: {why}", entry.seq));
            }
            if entry.prev != prev {
                let reason = if line == 1 {
                    "prev of the first line is not 64 zeros: lines before it are missing".to_string()
                } else {
                    format!("prev does not match the hash of line {}: a line is missing or out of order", line - 1)
                };
                return broken(line, &reason);
            }
            prev.clone_from(&entry.hash);
            count = expected;
            if let Some(keep) = keep.as_deref_mut() {
                keep.push(entry);
            }
        }
    }

    /// The last entry, read from the end of the file only; an error when the last line is
    /// incomplete or its own hash does not match.
    pub fn last(&self) -> Result<Option<Entry>> {
        let file = self.open_shared()?;
        let len = file.metadata().map_err(|e| Error::file("stat", &self.path, e))?.len();
        match read_tail(&file, len).map_err(|e| Error::file("read", &self.path, e))? {
            None => Ok(None),
            Some(tail) => self.tail_entry(&tail).map(Some),
        }
    }

    fn open_shared(&self) -> Result<File> {
        let file = File::open(&self.path).map_err(|e| Error::file("open", &self.path, e))?;
        lock(&file, libc::LOCK_SH, &self.path, self.lock_wait)?;
        Ok(file)
    }

    /// The checked entry of the last line, or why it cannot be chained to.
    fn tail_entry(&self, tail: &Tail) -> Result<Entry> {
        let refuse = |reason: &str| {
            Error::CheckFailed(format!(
                "journal {}: the last line is broken ({}); run `incident verify`; nothing was appended",
                show(&self.path),
                sanitize::line(reason)
            ))
        };
        if !tail.terminated {
            return Err(refuse("truncated: no newline at the end"));
        }
        check_line(&tail.bytes).map_err(|reason| refuse(&reason))
    }

    fn corrupt(&self, line: usize, what: &str) -> Error {
        Error::CheckFailed(format!("journal {} line {line}: {}", show(&self.path), sanitize::line(what)))
    }
}

/// The last line of a file, without its newline.
struct Tail {
    bytes: Vec<u8>,
    /// Whether the file ends with `\n`; a journal line always does once fully written.
    terminated: bool,
}

/// Reads the last line of the first `len` bytes of `file` by reading backwards from the
/// end in chunks, so an append costs the same whatever the journal's length.
fn read_tail(file: &File, len: u64) -> std::io::Result<Option<Tail>> {
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    let terminated = last[0] == b'\n';
    let end = if terminated { len - 1 } else { len };
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut start = end;
    while start > 0 {
        let from = start.saturating_sub(TAIL_CHUNK);
        let size = usize::try_from(start - from).map_err(std::io::Error::other)?;
        let mut chunk = vec![0u8; size];
        file.read_exact_at(&mut chunk, from)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            chunks.push(chunk.split_off(i + 1));
            break;
        }
        chunks.push(chunk);
        start = from;
    }
    let bytes = chunks.into_iter().rev().flatten().collect();
    Ok(Some(Tail { bytes, terminated }))
}

/// `flock(2)` without blocking, tried again until `wait` has passed: a lock nobody
/// releases is an error that names it, not a hang. The lock goes with the file description
/// and is released when `file` is closed.
fn lock(file: &File, op: libc::c_int, path: &Path, wait: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        // SAFETY: flock takes a descriptor number and no memory; `file` keeps it open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            ErrorKind::Interrupted => {}
            ErrorKind::WouldBlock if started.elapsed() < wait => std::thread::sleep(Duration::from_millis(5)),
            ErrorKind::WouldBlock => {
                let held = format!("another process has held it locked for {:.1}s", wait.as_secs_f64());
                return Err(Error::file("lock", path, std::io::Error::new(ErrorKind::WouldBlock, held)));
            }
            _ => return Err(Error::file("lock", path, err)),
        }
    }
}

fn show(path: &Path) -> String {
    sanitize::line(&path.display().to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::journal::{DATA_MAX_DEPTH, HEX_LEN, sha256_hex};
    use chrono::{TimeZone, Timelike};
    use serde_json::{Value, json};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_714_564_800 + secs, 123_456_789).single().unwrap_or_default()
    }

    fn journal_with(n: u64) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path().join("incident/journal.jsonl")).unwrap();
        for i in 1..=n {
            j.append("alice", &Event::from_parts("note", json!({"i": i, "text": format!("entry {i}")})), t(i as i64))
                .unwrap();
        }
        (dir, j)
    }

    fn lines(j: &Journal) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(j.path()).unwrap();
        bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
    }

    fn write_lines(j: &Journal, lines: &[Vec<u8>]) {
        std::fs::write(j.path(), lines.concat()).unwrap();
    }

    fn broken_at(j: &Journal) -> usize {
        match j.verify().unwrap() {
            Verification::Broken { line, .. } => line,
            v => panic!("expected broken, got {v:?}"),
        }
    }

    #[test]
    fn exact_line_format_and_hash() {
        let (_d, j) = journal_with(0);
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let e = j
            .append(
                "bob \"b\"",
                &Event::from_parts("level_change", json!({"z": [1, {"b": 2, "a": 1}], "a": "x\ny"})),
                at,
            )
            .unwrap();
        let hashed = "{\"seq\":1,\"at\":\"2024-05-01T12:00:00.000000Z\",\"operator\":\"bob \\\"b\\\"\",\
                      \"kind\":\"level_change\",\"data\":{\"a\":\"x\\ny\",\"z\":[1,{\"a\":1,\"b\":2}]},\
                      \"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"}";
        let hash = sha256_hex(hashed.as_bytes());
        assert_eq!(e.hash, hash);
        assert_eq!(e.hashed_text().unwrap(), hashed);
        assert_eq!(e.compute_hash().unwrap(), hash);
        let file = std::fs::read_to_string(j.path()).unwrap();
        assert_eq!(file, format!("{},\"hash\":\"{hash}\"}}\n", &hashed[..hashed.len() - 1]));
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn append_reopen_and_chain() {
        let (_d, j) = journal_with(5);
        let j2 = Journal::open(j.path()).unwrap();
        let entries = j2.entries().unwrap();
        assert_eq!(entries.len(), 5);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.data()["i"], json!(i + 1));
            assert_eq!(e.compute_hash().unwrap(), e.hash);
            let prev = if i == 0 { GENESIS_PREV } else { entries[i - 1].hash.as_str() };
            assert_eq!(e.prev, prev);
            // Truncated to microseconds.
            assert_eq!(e.at.nanosecond(), 123_456_000);
        }
        assert_eq!(j2.last().unwrap().as_ref(), entries.last());
        assert_eq!(j2.verify().unwrap(), Verification::Intact { entries: 5, last_hash: entries[4].hash.clone() });
    }

    #[test]
    fn empty_journal() {
        let (_d, j) = journal_with(0);
        assert_eq!(j.verify().unwrap(), Verification::Intact { entries: 0, last_hash: GENESIS_PREV.into() });
        assert_eq!(j.entries().unwrap(), vec![]);
        assert_eq!(j.last().unwrap(), None);
    }

    #[test]
    fn rejects_bad_input() {
        let (_d, j) = journal_with(0);
        let bad = |r: Result<Entry>| match r {
            Err(Error::BadInput(m)) => m,
            other => panic!("expected BadInput, got {other:?}"),
        };
        assert!(bad(j.append("", &Event::from_parts("note", json!({})), t(0))).contains("operator"));
        assert!(bad(j.append(&"x".repeat(201), &Event::from_parts("note", json!({})), t(0))).contains("operator"));
        j.append(&"é".repeat(200), &Event::from_parts("note", json!({})), t(0)).unwrap();
        assert!(bad(j.append("a", &Event::from_parts("", json!({})), t(0))).contains("kind"));
        assert!(bad(j.append("a", &Event::from_parts(&"k".repeat(65), json!({})), t(0))).contains("kind"));
        j.append("a", &Event::from_parts(&"k".repeat(64), json!({})), t(0)).unwrap();
        assert!(bad(j.append("a", &Event::from_parts("Note", json!({})), t(0))).contains("\"N\""));
        assert!(bad(j.append("a", &Event::from_parts("no-te", json!({})), t(0))).contains("kind"));
        assert!(bad(j.append("a", &Event::from_parts("note", json!([1])), t(0))).contains("an array"));
        assert!(bad(j.append("a", &Event::from_parts("note", json!("x")), t(0))).contains("a string"));
        assert!(bad(j.append("a", &Event::from_parts("note", Value::Null), t(0))).contains("null"));
        let mut deep = json!({});
        for _ in 0..DATA_MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(bad(j.append("a", &Event::from_parts("note", deep), t(0))).contains("nested"));
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        assert!(bad(j.append("a", &Event::from_parts("note", json!({})), far)).contains("years"));
        // Nothing was written by the refused calls.
        assert_eq!(
            j.verify().unwrap(),
            Verification::Intact { entries: 2, last_hash: j.last().unwrap().unwrap().hash }
        );
    }

    #[test]
    fn deepest_allowed_data_round_trips() {
        let (_d, j) = journal_with(0);
        let mut deep = json!({});
        for _ in 1..DATA_MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        let e = j.append("a", &Event::from_parts("note", deep), t(0)).unwrap();
        assert_eq!(j.entries().unwrap(), vec![e]);
        assert!(matches!(j.verify().unwrap(), Verification::Intact { entries: 1, .. }));
    }

    #[test]
    fn flipped_byte_is_located() {
        for k in [1usize, 3, 5] {
            for pos in [0usize, 10, 40, 100] {
                let (_d, j) = journal_with(5);
                let mut ls = lines(&j);
                let p = pos.min(ls[k - 1].len() - 1);
                ls[k - 1][p] ^= 0x01;
                write_lines(&j, &ls);
                assert_eq!(broken_at(&j), k, "line {k} byte {p}");
            }
        }
    }

    #[test]
    fn case_flip_in_hash_or_number_is_detected() {
        // Changes a JSON parser would not see: hex case in the hash, exponent case in a number.
        let (_d, j) = journal_with(2);
        j.append("alice", &Event::from_parts("note", json!({"x": 1.5e300})), t(3)).unwrap();
        let orig = lines(&j);

        let mut ls = orig.clone();
        let line = &mut ls[1];
        let hash_start = line.len() - 3 - HEX_LEN;
        let at = (hash_start..line.len() - 3).find(|&i| line[i].is_ascii_lowercase()).unwrap();
        line[at] = line[at].to_ascii_uppercase();
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 2);

        let mut ls = orig.clone();
        let text = String::from_utf8(ls[2].clone()).unwrap();
        assert!(text.contains("1.5e+300"), "{text}");
        ls[2] = text.replace("1.5e+300", "1.5E+300").into_bytes();
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 3);
    }

    #[test]
    fn deleted_swapped_duplicated_truncated() {
        let (_d, j) = journal_with(5);
        let orig = lines(&j);

        let mut ls = orig.clone();
        ls.remove(2);
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 3);

        let mut ls = orig.clone();
        ls.remove(0);
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 1);

        let mut ls = orig.clone();
        ls.swap(1, 2);
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 2);

        let mut ls = orig.clone();
        ls.insert(3, orig[2].clone());
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 4);

        let mut all = orig.concat();
        all.truncate(all.len() - 1);
        std::fs::write(j.path(), &all).unwrap();
        assert_eq!(broken_at(&j), 5);
        all.truncate(all.len() - 20);
        std::fs::write(j.path(), &all).unwrap();
        assert_eq!(broken_at(&j), 5);

        let mut ls = orig.clone();
        ls.push(b"\n".to_vec());
        write_lines(&j, &ls);
        assert_eq!(broken_at(&j), 6);
    }

    #[test]
    fn append_after_broken_tail_is_refused() {
        let (_d, j) = journal_with(3);
        let orig = std::fs::read(j.path()).unwrap();

        // Altered last line.
        let mut bytes = orig.clone();
        let n = bytes.len();
        bytes[n - 30] ^= 0x04;
        std::fs::write(j.path(), &bytes).unwrap();
        let err = j.append("a", &Event::from_parts("note", json!({})), t(9)).unwrap_err();
        assert!(matches!(err, Error::CheckFailed(ref m) if m.contains("last line is broken")), "{err}");
        assert!(j.last().is_err());
        assert_eq!(std::fs::read(j.path()).unwrap(), bytes, "nothing appended");

        // Truncated last line.
        let bytes = &orig[..orig.len() - 5];
        std::fs::write(j.path(), bytes).unwrap();
        assert!(matches!(j.append("a", &Event::from_parts("note", json!({})), t(9)), Err(Error::CheckFailed(_))));
        assert_eq!(std::fs::read(j.path()).unwrap(), bytes);

        // Not a journal line at all.
        std::fs::write(j.path(), b"hello\n").unwrap();
        assert!(matches!(j.append("a", &Event::from_parts("note", json!({})), t(9)), Err(Error::CheckFailed(_))));

        // Restored: appending works again and chains on.
        std::fs::write(j.path(), &orig).unwrap();
        let e = j.append("a", &Event::from_parts("note", json!({})), t(9)).unwrap();
        assert_eq!(e.seq, 4);
        assert!(matches!(j.verify().unwrap(), Verification::Intact { entries: 4, .. }));
    }

    #[test]
    fn entries_names_the_bad_line() {
        let (_d, j) = journal_with(3);
        let mut ls = lines(&j);
        ls[1] = b"{not json\n".to_vec();
        write_lines(&j, &ls);
        let err = j.entries().unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        // Non-UTF-8 bytes are reported, not a panic.
        ls[1] = vec![0xff, 0xfe, b'\n'];
        write_lines(&j, &ls);
        assert!(j.entries().unwrap_err().to_string().contains("line 2"));
        assert_eq!(broken_at(&j), 2);
    }

    #[test]
    fn checked_entries_are_the_entries_of_an_intact_chain_only() {
        let (_d, j) = journal_with(3);
        assert_eq!(j.checked_entries().unwrap(), j.entries().unwrap());
        // A line valid on its own (its hash holds) whose prev is another chain's: entries
        // reads it, checked_entries names it.
        let (_d2, other) = journal_with(0);
        for i in 1..=4 {
            other.append("mallory", &Event::from_parts("note", json!({ "i": i })), t(i)).unwrap();
        }
        let mut ls = lines(&j);
        ls.push(lines(&other).pop().unwrap());
        write_lines(&j, &ls);
        assert_eq!(j.entries().unwrap().len(), 4);
        let err = j.checked_entries().unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("prev does not match"), "{err}");
    }

    #[test]
    fn last_reads_long_lines_across_chunks() {
        let (_d, j) = journal_with(2);
        let big = "x".repeat(3 * TAIL_CHUNK as usize + 17);
        let e = j.append("a", &Event::from_parts("note", json!({ "big": big })), t(5)).unwrap();
        assert_eq!(j.last().unwrap(), Some(e.clone()));
        let e2 = j.append("a", &Event::from_parts("note", json!({ "after": true })), t(6)).unwrap();
        assert_eq!(e2.prev, e.hash);
        assert_eq!(e2.seq, 4);
        assert!(matches!(j.verify().unwrap(), Verification::Intact { entries: 4, .. }));
    }

    #[test]
    fn control_characters_and_unicode_in_fields() {
        let (_d, j) = journal_with(0);
        let e = j
            .append(
                "o\u{1b}[2J\u{202e}",
                &Event::from_parts("note", json!({"k\n": "\u{0}\u{7f}\u{2028}é\"\\/", "\u{10ffff}": 1.5e300})),
                t(0),
            )
            .unwrap();
        let raw = std::fs::read(j.path()).unwrap();
        assert_eq!(raw.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        assert_eq!(j.entries().unwrap(), vec![e]);
        assert!(matches!(j.verify().unwrap(), Verification::Intact { entries: 1, .. }));
    }

    #[test]
    fn reason_is_printable() {
        let (_d, j) = journal_with(1);
        std::fs::write(j.path(), b"{\"seq\":\"\x1b[31m\"}\n").unwrap();
        match j.verify().unwrap() {
            Verification::Broken { line: 1, reason } => assert!(!reason.contains('\u{1b}'), "{reason}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn open_creates_parents_and_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c/j.jsonl");
        Journal::open(&p).unwrap();
        assert!(p.is_file());
        assert!(Journal::open(dir.path()).is_err());
    }

    #[test]
    fn a_lock_held_elsewhere_is_an_error_that_says_so_not_a_hang() {
        let (_d, j) = journal_with(1);
        let before = std::fs::read(j.path()).unwrap();
        let holder = File::open(j.path()).unwrap();
        lock(&holder, libc::LOCK_EX, j.path(), Duration::ZERO).unwrap();
        let j = j.with_lock_wait(Duration::from_millis(50));
        let started = Instant::now();
        let err = j.append("a", &Event::from_parts("note", json!({})), t(2)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "gave up in time");
        let text = err.to_string();
        assert!(text.starts_with("cannot lock ") && text.contains("another process has held it locked"), "{text}");
        assert!(j.entries().is_err(), "a reader gives up too");
        drop(holder);
        assert_eq!(std::fs::read(j.path()).unwrap(), before, "nothing appended");
        assert_eq!(j.append("a", &Event::from_parts("note", json!({})), t(3)).unwrap().seq, 2);
    }

    #[test]
    fn append_to_deleted_file_fails() {
        let (_d, j) = journal_with(1);
        std::fs::remove_file(j.path()).unwrap();
        assert!(j.append("a", &Event::from_parts("note", json!({})), t(0)).is_err());
    }
}
