//! Files an incident leaves behind besides its journal: every message copied out and every
//! report, each in its own file that is never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::core::error::{Error, Result};

/// Writes the message to `<dir>/<UTC timestamp>-<name>.md` and returns the path. Never
/// overwrites: a second copy in the same second gets `-2`, `-3`, ... The file is readable
/// by its owner only, as internal messages name people and orders.
pub fn export(dir: &Path, name: &str, text: &str, at: DateTime<Utc>) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| Error::file("create", dir, e))?;
    let stem = format!("{}-{}", at.format("%Y%m%dT%H%M%SZ"), safe_stem(name));
    for n in 1..=1000u32 {
        let file = if n == 1 { format!("{stem}.md") } else { format!("{stem}-{n}.md") };
        let path = dir.join(file);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).map_err(|e| Error::file("write", &path, e))?;
                // The file is the proof of what was sent; make it survive a crash.
                f.sync_all().map_err(|e| Error::file("sync", &path, e))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::file("create", &path, e)),
        }
    }
    let taken = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "1000 copies in one second; giving up");
    Err(Error::file("create", dir.join(format!("{stem}.md")), taken))
}

/// A template name made safe as part of a file name: its extensions dropped, anything but
/// letters, digits, `-` and `_` replaced, so a name can never walk out of the directory.
fn safe_stem(name: &str) -> String {
    let base = name.trim_end_matches(".j2").trim_end_matches(".md");
    let s: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() { "message".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn export_never_overwrites_and_sanitizes_the_name() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::file("create", "a temporary directory", e))?;
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 7, 48, 5).single().unwrap_or_default();
        let a = export(dir.path(), "customer_notice.md.j2", "one", at)?;
        let b = export(dir.path(), "customer_notice", "two", at)?;
        let c = export(dir.path(), "../../etc/passwd", "three", at)?;
        assert_eq!(a.file_name().and_then(|n| n.to_str()), Some("20261126T074805Z-customer_notice.md"));
        assert_eq!(b.file_name().and_then(|n| n.to_str()), Some("20261126T074805Z-customer_notice-2.md"));
        assert_eq!(c.parent(), Some(dir.path()));
        assert_eq!(fs::read_to_string(&a).unwrap_or_default(), "one");
        assert_eq!(fs::read_to_string(&b).unwrap_or_default(), "two");
        Ok(())
    }
}

/// A private directory (mode 0700) under the system's temporary directory, removed with
/// everything in it when dropped: the bench's scripts, order files and child homes.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Makes `<tmp>/<prefix>-<pid>-<n>`, refusing one that exists (never reuses another's).
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for n in 0..100u32 {
            let path = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::file("create", path, e)),
            }
        }
        Err(Error::file(
            "create a scratch directory in",
            base,
            last.unwrap_or_else(|| std::io::Error::other("no free name")),
        ))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
