//! The evidence bundle on disk: one tar archive, every file under `<incident>-evidence/`,
//! written to a temporary name and renamed into place; read back with limits (regular files
//! only, no absolute or `..` paths, at most 1 GiB in all).

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use crate::core::error::{Error, Result};

const MAX_TOTAL: u64 = 1 << 30;

/// Writes `files` (path inside the bundle, bytes) as a tar archive at `out`.
pub fn write(out: &Path, prefix: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::file("create", parent, e))?;
    }
    let tmp = out.with_extension("tar.partial");
    let file = fs::File::create(&tmp).map_err(|e| Error::file("create", &tmp, e))?;
    let mut tar = tar::Builder::new(file);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{prefix}/{path}"), bytes.as_slice())
            .map_err(|e| Error::file("write", &tmp, e))?;
    }
    let file = tar.into_inner().map_err(|e| Error::file("write", &tmp, e))?;
    file.sync_all().map_err(|e| Error::file("sync", &tmp, e))?;
    fs::rename(&tmp, out).map_err(|e| Error::file("rename into", out, e))?;
    Ok(())
}

/// Reads a bundle: its files (path inside the bundle, without the top directory, bytes).
pub fn read(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let file = fs::File::open(path).map_err(|e| Error::file("open", path, e))?;
    let mut tar = tar::Archive::new(file);
    let bad = |why: String| Error::BadInput(format!("{} is not an evidence bundle: {why}", path.display()));
    let mut out = Vec::new();
    let mut total = 0u64;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("{} is not a regular file", name.display())));
        }
        if name.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("{} is not a plain relative path", name.display())));
        }
        total += entry.size();
        if total > MAX_TOTAL {
            return Err(bad("more than 1 GiB of files".into()));
        }
        // tar keeps the last of two entries with one name when it extracts: a second copy
        // appended after the bundle was written would be what an auditor reads.
        let mut inner = name.components();
        inner.next();
        let inner = inner.as_path().to_string_lossy().into_owned();
        if inner.is_empty() {
            return Err(bad(format!("{} is outside the bundle's directory", name.display())));
        }
        if out.iter().any(|(p, _): &(String, Vec<u8>)| *p == inner) {
            return Err(bad(format!("{} is in it twice", name.display())));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        out.push((inner, bytes));
    }
    if out.is_empty() {
        return Err(bad("it holds no file".into()));
    }
    Ok(out)
}
