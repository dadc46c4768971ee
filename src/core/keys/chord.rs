//! A key as bindings name it ("ctrl-c", "shift-tab", "G", "f5", "space"): parsed from the
//! config file, printed in hints, and compared with what the terminal sends.

use std::fmt;

/// Why a key or a `[keys]` table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing was written.
    #[error("an empty key")]
    Empty,
    /// Not a key this console knows (shown sanitized).
    #[error("unknown key \"{0}\"")]
    Unknown(String),
    /// A key of an action's list that cannot be used.
    #[error("[keys] {action}: {problem}")]
    InBinding {
        /// The action, as written in the file.
        action: String,
        /// What is wrong with the key.
        problem: Box<KeyError>,
    },
    /// One key for two actions of the same table.
    #[error("[keys] \"{chord}\" is bound to both {first} and {second}")]
    BoundTwice {
        /// The key.
        chord: String,
        /// The action it had.
        first: String,
        /// The action it was given too.
        second: String,
    },
}

/// A key with its modifiers, as bindings name it (the console maps terminal events to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Chord {
    code: ChordCode,
    ctrl: bool,
    alt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ChordCode {
    Char(char),
    Named(&'static str),
    F(u8),
}

/// The keys with names, as written in the config file.
const NAMED: [&str; 14] = [
    "enter",
    "esc",
    "tab",
    "backtab",
    "backspace",
    "up",
    "down",
    "left",
    "right",
    "home",
    "end",
    "pgup",
    "pgdn",
    "delete",
];

impl Chord {
    /// A character key (shift is part of the character: 'G').
    pub fn char(c: char, ctrl: bool, alt: bool) -> Chord {
        Chord { code: ChordCode::Char(c), ctrl, alt }
    }

    /// A named key ("enter", "space", "pgdn", ...); None for a name bindings cannot use.
    pub fn named(name: &str, ctrl: bool, alt: bool) -> Option<Chord> {
        let name = if name == "space" { "space" } else { NAMED.iter().copied().find(|n| *n == name)? };
        Some(Chord { code: ChordCode::Named(name), ctrl, alt })
    }

    /// A function key, F1 to F24.
    pub fn function(n: u8, ctrl: bool, alt: bool) -> Chord {
        Chord { code: ChordCode::F(n), ctrl, alt }
    }

    /// Parses "ctrl-c", "shift-tab", "G", "f5", "space".
    pub fn parse(text: &str) -> Result<Chord, KeyError> {
        let lower = text.trim();
        if lower.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut ctrl = false;
        let mut alt = false;
        let mut shift = false;
        let mut rest = lower;
        loop {
            let l = rest.to_ascii_lowercase();
            if let Some(r) = l.strip_prefix("ctrl-").or_else(|| l.strip_prefix("c-")) {
                ctrl = true;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = l.strip_prefix("alt-").or_else(|| l.strip_prefix("m-")) {
                alt = true;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = l.strip_prefix("shift-") {
                shift = true;
                rest = &rest[rest.len() - r.len()..];
            } else {
                break;
            }
        }
        let name = rest.to_ascii_lowercase();
        let code = if rest.chars().count() == 1 {
            let c = rest.chars().next().unwrap_or(' ');
            if c == ' ' {
                ChordCode::Named("space")
            } else if shift {
                ChordCode::Char(c.to_ascii_uppercase())
            } else if ctrl {
                ChordCode::Char(c.to_ascii_lowercase())
            } else {
                ChordCode::Char(c)
            }
        } else if name == "space" {
            ChordCode::Named("space")
        } else if name == "tab" && shift {
            ChordCode::Named("backtab")
        } else if let Some(n) =
            name.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()).filter(|n| (1..=24).contains(n))
        {
            ChordCode::F(n)
        } else {
            let alias = match name.as_str() {
                "return" => "enter",
                "escape" => "esc",
                "pageup" => "pgup",
                "pagedown" => "pgdn",
                "del" => "delete",
                other => other,
            };
            ChordCode::Named(
                NAMED
                    .iter()
                    .copied()
                    .find(|n| *n == alias)
                    .ok_or_else(|| KeyError::Unknown(crate::core::sanitize::line(text).into_owned()))?,
            )
        };
        Ok(Chord { code, ctrl, alt })
    }
}

impl fmt::Display for Chord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            write!(f, "ctrl-")?;
        }
        if self.alt {
            write!(f, "alt-")?;
        }
        match self.code {
            ChordCode::Char(c) => write!(f, "{c}"),
            ChordCode::Named("backtab") => write!(f, "shift-tab"),
            ChordCode::Named(n) => write!(f, "{n}"),
            ChordCode::F(n) => write!(f, "f{n}"),
        }
    }
}
