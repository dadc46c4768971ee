//! Text from the database or a user, made safe to print: control characters and escape
//! sequences are shown (as `\x1b`, `\n`, ...), never executed by the terminal.

use std::borrow::Cow;
use std::fmt::Write;

fn is_unsafe(c: char) -> bool {
    // C0 controls, DEL, C1 controls (0x9b is a one-byte CSI), and the invisible ones.
    c.is_control() || is_invisible(c)
}

/// Characters that draw nothing yet change how text reads or breaks: bidi overrides,
/// isolates and marks, zero-width characters, the byte-order mark, line and paragraph
/// separators.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{2029}'
            | '\u{2060}'..='\u{2064}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{feff}'
    )
}

/// The first character of `s` that a person's text should not hold: a control or
/// invisible character (line breaks and tabs allowed when `multiline`).
pub fn first_hidden(s: &str, multiline: bool) -> Option<char> {
    s.chars().find(|&c| is_unsafe(c) && !(multiline && matches!(c, '\n' | '\r' | '\t')))
}

/// One line of text: every control character is escaped, newlines included.
pub fn line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x100 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text that may span lines: newlines are kept, everything else is escaped.
pub fn multiline(s: &str) -> String {
    s.split('\n').map(line).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_sequences() {
        assert_eq!(line("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(line("x\u{9b}31m"), "x\\x9b31m");
        assert_eq!(line("bell\x07"), "bell\\x07");
        assert_eq!(line("l1\nl2"), "l1\\nl2");
        assert_eq!(line("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        for c in ['\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{feff}', '\u{2028}', '\u{2029}'] {
            assert_eq!(line(&format!("a{c}b")), format!("a\\u{{{:x}}}b", c as u32));
        }
    }

    #[test]
    fn finds_what_a_person_should_not_type() {
        assert_eq!(first_hidden("plain text, ünïcode", false), None);
        assert_eq!(first_hidden("two\nlines", false), Some('\n'));
        assert_eq!(first_hidden("two\nlines\tand a tab", true), None);
        assert_eq!(first_hidden("bell\x07", true), Some('\x07'));
        assert_eq!(first_hidden("rtl\u{202e}", true), Some('\u{202e}'));
    }

    #[test]
    fn leaves_plain_text_alone() {
        assert!(matches!(line("EURUSD 1.08500000 ünïcode"), Cow::Borrowed(_)));
        assert_eq!(multiline("a\nb\x1bc"), "a\nb\\x1bc");
    }
}
