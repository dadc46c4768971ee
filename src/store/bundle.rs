//! The evidence bundle on disk: one tar archive, every file under `<incident>-evidence/`,
//! written to a temporary name and renamed into place; read back with limits (regular files
//! only, no absolute or `..` paths, at most 1 GiB in all).

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use crate::core::error::{Error, Result};

const MAX_TOTAL: u64 = 1 << 30;

/// The signing key in `path` (its 32-byte seed in hex, as `incident bundle keygen` writes).
pub fn signing_key_file(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let text = fs::read_to_string(path).map_err(|e| Error::file("read the signing key", path, e))?;
    crate::core::bundle::signing_key(&text).ok_or_else(|| {
        Error::BadInput(format!(
            "{}: not a signing key (32 bytes of hex, as `incident bundle keygen` writes)",
            path.display()
        ))
    })
}

/// Writes `files` (path inside the bundle, bytes) as a tar archive at `out`, which must not
/// exist yet: a bundle is evidence, and `--out` naming the journal, the config or an earlier
/// bundle must never replace it. Written to a temporary file beside it, synced, then linked
/// into place (atomically refusing a name taken meanwhile); the temporary file is removed
/// whatever happens, so a failure (a full disk) leaves nothing that looks like a bundle.
pub fn write(out: &Path, prefix: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::file("create", parent, e))?;
    if out.symlink_metadata().is_ok() {
        return Err(exists(out));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let tmp = parent.join(format!(".{name}.{}.partial", std::process::id()));
    let written = write_tmp(&tmp, prefix, files).and_then(|()| link_into_place(&tmp, out));
    // Linked or not, the temporary name goes.
    let _ = fs::remove_file(&tmp);
    written?;
    // The directory entry itself on disk before the caller journals `bundle_written`.
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn exists(out: &Path) -> Error {
    Error::BadInput(format!(
        "{} already exists: a bundle never replaces a file (give another --out)",
        crate::core::sanitize::line(&out.display().to_string())
    ))
}

fn write_tmp(tmp: &Path, prefix: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
    let file =
        fs::OpenOptions::new().write(true).create_new(true).open(tmp).map_err(|e| Error::file("create", tmp, e))?;
    let mut tar = tar::Builder::new(file);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{prefix}/{path}"), bytes.as_slice())
            .map_err(|e| Error::file("write", tmp, e))?;
    }
    let file = tar.into_inner().map_err(|e| Error::file("write", tmp, e))?;
    file.sync_all().map_err(|e| Error::file("sync", tmp, e))
}

/// `tmp` at `out`, never over an existing file: a hard link fails when the name is taken;
/// where hard links are not supported, a rename after one more look.
fn link_into_place(tmp: &Path, out: &Path) -> Result<()> {
    match fs::hard_link(tmp, out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(out)),
        Err(_) if out.symlink_metadata().is_err() => {
            fs::rename(tmp, out).map_err(|e| Error::file("rename into", out, e))
        }
        Err(_) => Err(exists(out)),
    }
}

/// Reads a bundle: its files (path inside the bundle, without the top directory, bytes).
/// Strict, because what `tar` extracts must be exactly what was checked: regular files
/// only, plain relative UTF-8 paths under one top directory, each once, no entry larger
/// than what is left of the file, and the archive's end marker with nothing but zeros
/// after it (a truncated archive or one with something appended is refused).
pub fn read(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |why: String| {
        Error::BadInput(format!(
            "{} is not an evidence bundle: {}",
            crate::core::sanitize::line(&path.display().to_string()),
            crate::core::sanitize::line(&why)
        ))
    };
    let file = fs::File::open(path).map_err(|e| Error::file("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::file("read", path, e))?.len();
    let mut tar = tar::Archive::new(file);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut top: Option<String> = None;
    let mut total = 0u64;
    let mut end = 0u64;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        // A name that is not UTF-8 would be checked under its lossy spelling but extracted
        // under its bytes.
        let Some(name) = raw.to_str().map(str::to_string) else {
            return Err(bad(format!("{} is not a UTF-8 name", raw.to_string_lossy())));
        };
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("{name} is not a regular file")));
        }
        if raw.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("{name} is not a plain relative path")));
        }
        let size = entry.size();
        let at = entry.raw_file_position();
        // A size header larger than the file is a truncated or forged archive: refused
        // before anything is allocated for it.
        if size > len.saturating_sub(at) {
            return Err(bad(format!("{name} claims {size} bytes, more than the archive holds: it is truncated")));
        }
        total += size;
        if total > MAX_TOTAL {
            return Err(bad("more than 1 GiB of files".into()));
        }
        let mut parts = raw.components();
        let first = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        let inner = parts.as_path().to_string_lossy().into_owned();
        if inner.is_empty() {
            return Err(bad(format!("{name} is outside the bundle's directory")));
        }
        // Every file under one directory, as written: an auditor extracting it finds one.
        match &top {
            Some(t) if *t != first => return Err(bad(format!("{name} is outside {t}/"))),
            Some(_) => {}
            None => top = Some(first),
        }
        // tar keeps the last of two entries with one name when it extracts: a second copy
        // appended after the bundle was written would be what an auditor reads.
        if !seen.insert(inner.clone()) {
            return Err(bad(format!("{name} is in it twice")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 != size {
            return Err(bad(format!("{name} is cut short: the archive is truncated")));
        }
        end = at + size.div_ceil(512) * 512;
        out.push((inner, bytes));
    }
    if out.is_empty() {
        return Err(bad("it holds no file".into()));
    }
    drop(tar);
    trailer(path, end).map_err(bad)?;
    Ok(out)
}

/// After the last entry's data: the end marker (two zero blocks), then zeros only. The tar
/// crate stops at a missing marker or the first zero block without saying which.
fn trailer(path: &Path, end: u64) -> std::result::Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let mut file = fs::File::open(path).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(end)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64 * 1024];
    let mut zeros = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(format!("something follows the archive's end (at byte {})", end + zeros + i as u64));
        }
        zeros += n as u64;
    }
    if zeros < 1024 {
        return Err("the archive's end marker is missing: it is truncated".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One raw tar entry, header written by hand so that nothing the tar crate would refuse
    /// to build (`..`, non-UTF-8, a size larger than the data) is out of an adversary's reach.
    fn raw(name: &[u8], kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn archive(entries: &[Vec<u8>], end: bool) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        if end {
            out.extend_from_slice(&[0; 1024]);
        }
        out
    }

    fn read_bytes(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
        let dir = tempfile::tempdir().map_err(|e| Error::file("create", "tempdir", e))?;
        let p = dir.path().join("b.tar");
        fs::write(&p, bytes).map_err(|e| Error::file("write", &p, e))?;
        read(&p)
    }

    fn refused(bytes: &[u8], why: &str) {
        match read_bytes(bytes) {
            Ok(files) => panic!("read, not refused ({why}): {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>()),
            Err(e) => assert!(e.to_string().contains(why), "{why}: {e}"),
        }
    }

    #[test]
    fn entries_tar_would_extract_elsewhere_or_as_something_else_are_refused() {
        let ok = raw(b"I-evidence/journal.jsonl", b'0', 3, b"abc");
        assert_eq!(read_bytes(&archive(std::slice::from_ref(&ok), true)).map(|f| f.len()).ok(), Some(1));
        let cases: [(&[u8], u8, &str); 9] = [
            (b"I-evidence/../journal.jsonl", b'0', "not a plain relative path"),
            (b"/etc/I-evidence/journal.jsonl", b'0', "not a plain relative path"),
            (b"I-evidence/link", b'2', "not a regular file"),
            (b"I-evidence/hard", b'1', "not a regular file"),
            (b"I-evidence/journal.jsonl/", b'5', "not a regular file"),
            (b"I-evidence/fifo", b'6', "not a regular file"),
            (b"I-evidence/\xffreport.md", b'0', "not a UTF-8 name"),
            (b"Other-evidence/x.md", b'0', "is outside I-evidence/"),
            (b"journal2.jsonl", b'0', "outside the bundle's directory"),
        ];
        for (name, kind, why) in cases {
            refused(&archive(&[ok.clone(), raw(name, kind, 1, b"x")], true), why);
        }
        // Spelled differently, one file when extracted: the second copy is refused.
        for twin in [&b"I-evidence/./journal.jsonl"[..], b"I-evidence//journal.jsonl", b"I-evidence/journal.jsonl"] {
            refused(&archive(&[ok.clone(), raw(twin, b'0', 1, b"x")], true), "in it twice");
        }
    }

    #[test]
    fn a_huge_size_header_a_truncated_archive_and_anything_after_its_end_are_refused() {
        let a = raw(b"I-evidence/a", b'0', 3, b"abc");
        let b = raw(b"I-evidence/b", b'0', 4, b"defg");
        let good = archive(&[a.clone(), b.clone()], true);
        assert_eq!(read_bytes(&good).map(|f| f.len()).ok(), Some(2));
        // 900 MiB (under the 1 GiB cap) claimed by a 2.5 KiB file: refused before anything
        // is allocated for it (it was allocated, read short, and accepted).
        refused(&archive(&[a.clone(), raw(b"I-evidence/big", b'0', 900 << 20, b"x")], true), "truncated");
        refused(&archive(&[a.clone(), raw(b"I-evidence/big", b'0', 0o77777777777, b"x")], true), "truncated");
        // Cut at an entry boundary (the last file, a signature, dropped), or inside a file.
        refused(&archive(&[a.clone(), b.clone()], false), "end marker is missing");
        refused(&archive(std::slice::from_ref(&a), false), "end marker is missing");
        refused(&good[..512 + 2], "truncated");
        refused(&good[..good.len() - 512], "end marker is missing");
        // Appended after the end: garbage, or a second archive `tar -i` would extract.
        let mut garbage = good.clone();
        garbage.extend_from_slice(b"trailing");
        refused(&garbage, "follows the archive's end");
        let mut second = good.clone();
        second.extend_from_slice(&archive(&[raw(b"I-evidence/planted", b'0', 1, b"p")], true));
        refused(&second, "follows the archive's end");
        // Zeros after the marker (a record's padding) are no change.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 8192]);
        assert_eq!(read_bytes(&padded).map(|f| f.len()).ok(), Some(2));
    }

    #[test]
    fn write_never_replaces_a_file_and_leaves_nothing_behind_when_it_fails() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = vec![("journal.jsonl".to_string(), b"{}\n".to_vec())];
        let out = dir.path().join("b.tar");
        assert!(write(&out, "I-evidence", &files).is_ok());
        assert_eq!(read(&out).ok(), Some(files.clone()));
        // Again at the same name (the journal, the config, an earlier bundle): refused, intact.
        let before = fs::read(&out).ok();
        let again = write(&out, "I-evidence", &[("x".into(), b"other".to_vec())]);
        assert!(again.is_err_and(|e| e.to_string().contains("already exists")));
        assert_eq!(fs::read(&out).ok(), before);
        // A parent that is a file (as unwritable as it gets for root): an error, no file.
        let blocker = dir.path().join("blocker");
        assert!(fs::write(&blocker, b"x").is_ok());
        assert!(write(&blocker.join("b.tar"), "I-evidence", &files).is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
