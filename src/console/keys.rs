//! Terminal key events as the keymap's chords: the one place the console's keys meet
//! crossterm's.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::core::keys::{Chord, KeyAction, KeyMap};

/// The chord of a key event (None for keys no binding can name).
pub fn chord_of(ev: &KeyEvent) -> Option<Chord> {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    let alt = ev.modifiers.contains(KeyModifiers::ALT);
    let name = match ev.code {
        KeyCode::Char(' ') => "space",
        // Shift is part of the character itself ('G'), so it is not kept separately.
        KeyCode::Char(c) => return Some(Chord::char(if ctrl { c.to_ascii_lowercase() } else { c }, ctrl, alt)),
        KeyCode::F(n) => return Some(Chord::function(n, ctrl, alt)),
        KeyCode::Enter => "enter",
        KeyCode::Esc => "esc",
        KeyCode::Tab => "tab",
        KeyCode::BackTab => "backtab",
        KeyCode::Backspace => "backspace",
        KeyCode::Up => "up",
        KeyCode::Down => "down",
        KeyCode::Left => "left",
        KeyCode::Right => "right",
        KeyCode::Home => "home",
        KeyCode::End => "end",
        KeyCode::PageUp => "pgup",
        KeyCode::PageDown => "pgdn",
        KeyCode::Delete => "delete",
        _ => return None,
    };
    Chord::named(name, ctrl, alt)
}

/// What a chord does in a dialog: its dialog binding, else up or down when the screen
/// binds it so (a picker's cursor moves as a list's does); nothing else of the screen's.
pub fn dialog_chord(keys: &KeyMap, chord: Chord) -> Option<KeyAction> {
    keys.lookup_dialog(chord).or_else(|| keys.lookup(chord).filter(|a| matches!(a, KeyAction::Up | KeyAction::Down)))
}

/// The keymap read with terminal events.
pub trait EventKeys {
    /// The screen action of a key event, if any.
    fn action(&self, ev: &KeyEvent) -> Option<KeyAction>;
    /// The action of a key event in a dialog or a text input, if any (see `dialog_chord`).
    fn dialog_action(&self, ev: &KeyEvent) -> Option<KeyAction>;
}

impl EventKeys for KeyMap {
    fn action(&self, ev: &KeyEvent) -> Option<KeyAction> {
        chord_of(ev).and_then(|c| self.lookup(c))
    }

    fn dialog_action(&self, ev: &KeyEvent) -> Option<KeyAction> {
        chord_of(ev).and_then(|c| dialog_chord(self, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn default_keys_from_events() {
        let m = KeyMap::default();
        assert_eq!(m.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(KeyAction::Quit));
        assert_eq!(m.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)), Some(KeyAction::Bottom));
        assert_eq!(m.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)), Some(KeyAction::PrevPane));
        assert_eq!(m.action(&ev(KeyCode::Char(' '), KeyModifiers::NONE)), Some(KeyAction::ToggleSelect));
        assert_eq!(m.action(&ev(KeyCode::PageDown, KeyModifiers::NONE)), Some(KeyAction::PageDown));
    }

    #[test]
    fn dialog_keys_from_events() {
        let m = KeyMap::default();
        let none = KeyModifiers::NONE;
        assert_eq!(m.dialog_action(&ev(KeyCode::Enter, none)), Some(KeyAction::Accept));
        assert_eq!(m.dialog_action(&ev(KeyCode::Esc, none)), Some(KeyAction::Dismiss));
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('Y'), KeyModifiers::SHIFT)), Some(KeyAction::Yes));
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('?'), none)), Some(KeyAction::Unsure));
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('r'), KeyModifiers::CONTROL)), Some(KeyAction::Refill));
        // Up and down come from the screen's bindings; other screen keys do not.
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('k'), none)), Some(KeyAction::Up));
        assert_eq!(m.dialog_action(&ev(KeyCode::Down, none)), Some(KeyAction::Down));
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('p'), none)), None);
        assert_eq!(m.dialog_action(&ev(KeyCode::Char('c'), none)), None);
    }
}
