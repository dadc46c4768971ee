//! Key hints, built from the keymap: every key the console names on screen is read from
//! the bindings in effect, so a rebound key is shown as it is bound (gitui's `strings.rs`
//! is the model). A hint names one key per action, the one `KeyMap::hint_key` picks.

use crate::console::keys::dialog_chord;
use crate::core::keys::{Chord, KeyAction, KeyMap};

/// The keymap, read for hints.
#[derive(Clone, Copy)]
pub struct Keys<'a>(pub &'a KeyMap);

impl Keys<'_> {
    /// The key to name for an action: "q".
    pub fn of(&self, action: KeyAction) -> String {
        self.0.hint_key(action)
    }

    /// Every key of an action, with '/': "c/esc".
    pub fn all(&self, action: KeyAction) -> String {
        self.0.keys_for(action).replace(' ', "/")
    }

    /// The key to name and the others: "p (or enter)".
    pub fn with_others(&self, action: KeyAction) -> String {
        let keys = self.0.hint_keys(action);
        match keys.split_first() {
            Some((first, [])) => first.clone(),
            Some((first, rest)) => format!("{first} (or {})", rest.join(", ")),
            None => self.of(action),
        }
    }

    /// `preferred` while it is bound to the action, else the action's key: a finished
    /// rollback "esc closes", though the shortest key of cancel is "c".
    pub fn prefer(&self, action: KeyAction, preferred: &str) -> String {
        match Chord::parse(preferred) {
            Ok(chord) if self.0.is_bound(chord, action) => preferred.to_string(),
            _ => self.of(action),
        }
    }

    /// Up and down in a dialog's list: "↑↓" while the arrow keys move it, else its keys
    /// ("k/j").
    pub fn up_down(&self) -> String {
        let arrow = |name: &str, action: KeyAction| {
            Chord::named(name, false, false).is_some_and(|c| dialog_chord(self.0, c) == Some(action))
        };
        if arrow("up", KeyAction::Up) && arrow("down", KeyAction::Down) {
            "↑↓".into()
        } else {
            format!("{}/{}", self.of(KeyAction::Up), self.of(KeyAction::Down))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hints_follow_the_bindings() {
        let m = KeyMap::default();
        let k = Keys(&m);
        assert_eq!(k.of(KeyAction::Quit), "q");
        assert_eq!(k.all(KeyAction::Cancel), "c/esc");
        assert_eq!(k.with_others(KeyAction::Precheck), "p (or enter)");
        assert_eq!(k.with_others(KeyAction::Filter), "/");
        assert_eq!(k.prefer(KeyAction::Cancel, "esc"), "esc");
        assert_eq!(k.up_down(), "↑↓");
        let mut o = BTreeMap::new();
        o.insert(KeyAction::Cancel, vec!["x".to_string()]);
        o.insert(KeyAction::ClearSelection, vec!["Z".to_string()]);
        o.insert(KeyAction::Up, vec!["k".to_string()]);
        let m = KeyMap::with_overrides(&o).unwrap_or_default();
        let k = Keys(&m);
        assert_eq!(k.prefer(KeyAction::Cancel, "esc"), "x");
        assert_eq!(k.up_down(), "k/j");
    }
}
