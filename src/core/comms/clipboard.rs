//! Copying a message out of the terminal: the OSC 52 sequence (also wrapped for tmux's
//! passthrough, the fallback when tmux's own buffer cannot be loaded: `store::clipboard`).
//! The file written beside it every time is `store::files::export`.

use base64::Engine;

/// The OSC 52 sequence that puts `text` on the system clipboard: `ESC ] 52 ; c ; <base64> BEL`.
pub fn osc52(text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!("\x1b]52;c;{b64}\x07")
}

/// OSC 52 wrapped for tmux passthrough: `ESC P tmux; <sequence, every ESC doubled> ESC \`.
/// tmux forwards it to the outer terminal only with `set -g allow-passthrough on`.
pub fn osc52_tmux(text: &str) -> String {
    let inner = osc52(text).replace('\x1b', "\x1b\x1b");
    format!("\x1bPtmux;{inner}\x1b\\")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn control_characters_in_the_text_are_only_ever_base64() {
        let s = osc52("evil\x1b]52;c;x\x07");
        assert_eq!(s.matches('\x1b').count(), 1);
        assert_eq!(s.matches('\x07').count(), 1);
    }
}
