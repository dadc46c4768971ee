//! Copying a message out of the terminal: OSC 52 (also through tmux), and a file in the
//! incident's directory every time, because OSC 52 can be disabled or truncated by the
//! terminal and nobody can tell from inside.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};

use super::{CommsError, Result};

/// The OSC 52 sequence that puts `text` on the system clipboard: `ESC ] 52 ; c ; <base64> BEL`.
pub fn osc52(text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("\x1b]52;c;{b64}\x07")
}

/// OSC 52 wrapped for tmux passthrough: `ESC P tmux; <sequence, every ESC doubled> ESC \`.
/// tmux forwards it only with `set -g allow-passthrough on` (or `set-clipboard on`).
pub fn osc52_tmux(text: &str) -> String {
    let inner = osc52(text).replace('\x1b', "\x1b\x1b");
    format!("\x1bPtmux;{inner}\x1b\\")
}

/// The sequence to write: wrapped for tmux when running inside it.
pub fn clipboard_sequence(text: &str, in_tmux: bool) -> String {
    if in_tmux { osc52_tmux(text) } else { osc52(text) }
}

/// Whether this process runs inside tmux ($TMUX set and not empty).
pub fn in_tmux() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}

/// Writes the message to `<dir>/<UTC timestamp>-<name>.md` and returns the path. Never
/// overwrites: a second copy in the same second gets `-2`, `-3`, ... The file is readable
/// by its owner only, as internal messages name people and orders.
pub fn export(dir: &Path, name: &str, text: &str, at: DateTime<Utc>) -> Result<PathBuf> {
    let io = |path: &Path, e: std::io::Error| CommsError::Io { path: path.to_path_buf(), message: e.to_string() };
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
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
                f.write_all(text.as_bytes()).map_err(|e| io(&path, e))?;
                // The file is the proof of what was sent; make it survive a crash.
                f.sync_all().map_err(|e| io(&path, e))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&path, e)),
        }
    }
    Err(CommsError::Io { path: dir.join(format!("{stem}.md")), message: "1000 copies in one second; giving up".into() })
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
    fn osc52_exact_bytes() {
        // base64("hello") = "aGVsbG8="
        assert_eq!(osc52("hello"), "\x1b]52;c;aGVsbG8=\x07");
        assert_eq!(osc52("hello").as_bytes(), b"\x1b]52;c;aGVsbG8=\x07");
        assert_eq!(osc52(""), "\x1b]52;c;\x07");
    }

    #[test]
    fn tmux_wrapping_doubles_every_escape() {
        let s = osc52_tmux("hello");
        assert_eq!(s, "\x1bPtmux;\x1b\x1b]52;c;aGVsbG8=\x07\x1b\\");
        assert_eq!(clipboard_sequence("hello", true), s);
        assert_eq!(clipboard_sequence("hello", false), osc52("hello"));
    }

    #[test]
    fn control_characters_in_the_text_are_only_ever_base64() {
        let s = osc52("evil\x1b]52;c;x\x07");
        assert_eq!(s.matches('\x1b').count(), 1);
        assert_eq!(s.matches('\x07').count(), 1);
    }

    #[test]
    fn export_never_overwrites_and_sanitizes_the_name() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| CommsError::Io { path: PathBuf::new(), message: e.to_string() })?;
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
