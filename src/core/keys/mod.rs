//! What each key does in the console, and how a user's TOML file changes it.
//!
//! Bindings live in two tables. The screen table holds what keys do on a screen (`enter`
//! pre-checks there); the dialog table holds what they do in a dialog or a text input
//! (`enter` accepts there, `y` answers yes). A key may mean one thing in each table; within
//! a table it means one thing. Both are set from the same `[keys]` section of the config.
//!
//! Key strings are written the way people say them: `q`, `G`, `?`, `enter`, `esc`,
//! `tab`, `shift-tab`, `ctrl-c`, `alt-x`, `f5`, `pgdn`, `space`. A string the parser does
//! not understand is an error at start-up that names it, never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;

mod chord;
mod help;

pub use chord::{Chord, KeyError};
pub use help::{HELP, HelpGroup, HelpSection};

/// Something a key can do: on a screen, or (the last seven) in a dialog or a text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    /// Leave the console (asks first while a rollback runs).
    Quit,
    /// Show or hide the list of keys.
    Help,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Move up one row.
    Up,
    /// Move down one row.
    Down,
    /// Move up one page.
    PageUp,
    /// Move down one page.
    PageDown,
    /// Go to the first row.
    Top,
    /// Go to the last row loaded.
    Bottom,
    /// Edit the orders filter.
    Filter,
    /// Select or unselect the order under the cursor for a batch.
    ToggleSelect,
    /// Select every order matching the filter for a batch.
    SelectAllMatching,
    /// Forget the selection.
    ClearSelection,
    /// Sort the orders: a digit then picks the column, its digit again reverses it.
    Sort,
    /// Show or hide the orders per minute over the list (where a burst is).
    PerMinute,
    /// Pre-check the order under the cursor.
    Precheck,
    /// Roll back the order under the cursor.
    Rollback,
    /// Roll back the transaction group of the order under the cursor.
    RollbackGroup,
    /// Roll back the selected orders as a batch.
    RollbackBatch,
    /// Cancel the request or rollback that is running; close a dialog.
    Cancel,
    /// Reload the orders and the dashboard.
    Refresh,
    /// Switch between the rollback screen and the incident screen.
    Screen,
    /// Tick the checklist item under the cursor.
    Tick,
    /// Skip the checklist item under the cursor, with a reason.
    Skip,
    /// Give the item to a role, or a role to a person.
    Assign,
    /// Move the incident to its next phase.
    NextPhase,
    /// Raise or lower the incident's level, with a reason.
    Level,
    /// Ask the classification questions and propose a level.
    Classify,
    /// Add a note to the timeline.
    Note,
    /// Turn maintenance mode on or off, and verify it.
    Maintenance,
    /// Edit the message under the cursor.
    Edit,
    /// Fill the message's next required field.
    Fill,
    /// Waive the message's next required field.
    Waive,
    /// Copy the message (OSC 52) and write it to a file.
    Copy,
    /// Write the post-incident report.
    Report,
    /// Open the blast radius: executions per minute and suspected repeated executions, one
    /// of which becomes the filter and the selection.
    BlastRadius,
    /// Open or close the circuit breaker (with a reason): while open, every rollback is refused.
    Breaker,
    /// Open the approvals overlay: requests for a second person, approved or denied here.
    Approvals,
    /// Write the incident's evidence bundle (journal, reports, messages, rollbacks, audit
    /// rows, checksums; signed when a key is configured).
    Bundle,
    /// Open the release overlay (Level 3): the current and previous release of the
    /// execution system, what a rollback would change and archive, and the rollback.
    Releases,
    /// Show the whole of what is under the cursor (an order, a check, an error), with a
    /// key that copies it or its full id.
    Detail,
    /// Close the incident, with a reason: resolved recorded, the update reminder stops.
    Close,
    /// Set one of the incident's times (impact began, detected, mitigated, resolved).
    Times,
    /// In a dialog or an input: accept (record, pick, apply, continue, roll back).
    Accept,
    /// In a dialog or an input: close it; what was typed is abandoned (the message editor
    /// keeps its edits).
    Dismiss,
    /// In a dialog: answer yes.
    Yes,
    /// In a dialog: answer no.
    No,
    /// In the classification questions: answer unsure (counts as yes).
    Unsure,
    /// In the classification questions: back to the previous question.
    Back,
    /// In the message editor: fill the text from the incident again.
    Refill,
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// On a screen, outside dialogs and inputs.
    Screen,
    /// In a dialog or a text input (typed characters go to the input).
    Dialog,
}

impl KeyAction {
    /// Every screen action, in the order the help lists them.
    pub const ALL: [KeyAction; 44] = [
        KeyAction::Help,
        KeyAction::Quit,
        KeyAction::NextPane,
        KeyAction::PrevPane,
        KeyAction::Up,
        KeyAction::Down,
        KeyAction::PageUp,
        KeyAction::PageDown,
        KeyAction::Top,
        KeyAction::Bottom,
        KeyAction::Filter,
        KeyAction::ToggleSelect,
        KeyAction::SelectAllMatching,
        KeyAction::ClearSelection,
        KeyAction::Sort,
        KeyAction::PerMinute,
        KeyAction::Precheck,
        KeyAction::Rollback,
        KeyAction::RollbackGroup,
        KeyAction::RollbackBatch,
        KeyAction::Cancel,
        KeyAction::Refresh,
        KeyAction::Screen,
        KeyAction::Tick,
        KeyAction::Skip,
        KeyAction::Assign,
        KeyAction::NextPhase,
        KeyAction::Level,
        KeyAction::Classify,
        KeyAction::Note,
        KeyAction::Maintenance,
        KeyAction::Edit,
        KeyAction::Fill,
        KeyAction::Waive,
        KeyAction::Copy,
        KeyAction::Report,
        KeyAction::Detail,
        KeyAction::BlastRadius,
        KeyAction::Releases,
        KeyAction::Bundle,
        KeyAction::Breaker,
        KeyAction::Approvals,
        KeyAction::Times,
        KeyAction::Close,
    ];

    /// The dialog and input actions (bound in a table of their own).
    pub const DIALOG: [KeyAction; 7] = [
        KeyAction::Accept,
        KeyAction::Dismiss,
        KeyAction::Yes,
        KeyAction::No,
        KeyAction::Unsure,
        KeyAction::Back,
        KeyAction::Refill,
    ];

    /// The table the action is bound in.
    pub fn context(self) -> Context {
        if KeyAction::DIALOG.contains(&self) { Context::Dialog } else { Context::Screen }
    }

    /// What the help says it does.
    pub fn describe(self) -> &'static str {
        match self {
            KeyAction::Quit => "quit (asks mid-rollback)",
            KeyAction::Help => "show or hide this help",
            KeyAction::NextPane => "next pane",
            KeyAction::PrevPane => "previous pane",
            KeyAction::Up => "line up",
            KeyAction::Down => "line down",
            KeyAction::PageUp => "page up",
            KeyAction::PageDown => "page down",
            KeyAction::Top => "first order",
            KeyAction::Bottom => "last order (the end)",
            KeyAction::Filter => "filter the orders",
            KeyAction::ToggleSelect => "select order for a batch",
            KeyAction::SelectAllMatching => "select all matching",
            KeyAction::ClearSelection => "clear the selection",
            KeyAction::Sort => "sort by a column (digit)",
            KeyAction::PerMinute => "orders per minute on/off",
            KeyAction::Precheck => "pre-check the order",
            KeyAction::Rollback => "roll back the order",
            KeyAction::RollbackGroup => "roll back its group",
            KeyAction::RollbackBatch => "roll back the selection",
            KeyAction::Cancel => "cancel what runs / close",
            KeyAction::Refresh => "reload orders, dashboard",
            KeyAction::Screen => "rollback / incident screen",
            KeyAction::Tick => "tick the checklist item",
            KeyAction::Skip => "skip the item (with reason)",
            KeyAction::Assign => "assign item / role",
            KeyAction::NextPhase => "next phase",
            KeyAction::Level => "change level (with reason)",
            KeyAction::Classify => "classification helper",
            KeyAction::Note => "note to the timeline",
            KeyAction::Maintenance => "maintenance on/off",
            KeyAction::Edit => "edit the message",
            KeyAction::Fill => "fill a required field",
            KeyAction::Waive => "waive a required field",
            KeyAction::Copy => "copy message (+ file)",
            KeyAction::Report => "write the report",
            KeyAction::Detail => "details; y copies the id",
            KeyAction::BlastRadius => "blast radius (bursts)",
            KeyAction::Releases => "release rollback (Level 3)",
            KeyAction::Bundle => "write the evidence bundle",
            KeyAction::Breaker => "circuit breaker open/close",
            KeyAction::Approvals => "approvals: a second person decides",
            KeyAction::Close => "end: close the incident",
            KeyAction::Times => "set the incident's times",
            KeyAction::Accept => "dialog: accept / continue",
            KeyAction::Dismiss => "dialog: close / abandon",
            KeyAction::Yes => "dialog: yes",
            KeyAction::No => "dialog: no",
            KeyAction::Unsure => "dialog: unsure",
            KeyAction::Back => "dialog: previous question",
            KeyAction::Refill => "editor: refill the message",
        }
    }
}

/// The bindings in effect.
#[derive(Debug, Clone)]
pub struct KeyMap {
    /// Screen bindings.
    screen: BTreeMap<Chord, KeyAction>,
    /// Dialog and input bindings.
    dialog: BTreeMap<Chord, KeyAction>,
    /// Each action's keys in the order written (defaults or config): a hint names the
    /// shortest, and the first written among equals ("y" rather than "Y").
    written: BTreeMap<KeyAction, Vec<Chord>>,
}

const DEFAULTS: [(KeyAction, &[&str]); 51] = [
    (KeyAction::Quit, &["q", "ctrl-c"]),
    (KeyAction::Help, &["?", "f1"]),
    (KeyAction::NextPane, &["tab"]),
    (KeyAction::PrevPane, &["shift-tab"]),
    (KeyAction::Up, &["k", "up"]),
    (KeyAction::Down, &["j", "down"]),
    (KeyAction::PageUp, &["pgup", "ctrl-u"]),
    (KeyAction::PageDown, &["pgdn", "ctrl-d"]),
    (KeyAction::Top, &["g", "home"]),
    (KeyAction::Bottom, &["G", "end"]),
    (KeyAction::Filter, &["/"]),
    (KeyAction::ToggleSelect, &["space"]),
    (KeyAction::SelectAllMatching, &["A"]),
    (KeyAction::ClearSelection, &["x"]),
    (KeyAction::Sort, &["S"]),
    (KeyAction::PerMinute, &["m"]),
    (KeyAction::Precheck, &["p", "enter"]),
    (KeyAction::Rollback, &["r"]),
    (KeyAction::RollbackGroup, &["t"]),
    (KeyAction::RollbackBatch, &["b"]),
    (KeyAction::Cancel, &["esc", "c"]),
    (KeyAction::Refresh, &["R", "f5"]),
    (KeyAction::Screen, &["i"]),
    (KeyAction::Tick, &["d"]),
    (KeyAction::Skip, &["s"]),
    (KeyAction::Assign, &["a"]),
    (KeyAction::NextPhase, &["P"]),
    (KeyAction::Level, &["L"]),
    (KeyAction::Classify, &["C"]),
    (KeyAction::Note, &["n"]),
    (KeyAction::Maintenance, &["M"]),
    (KeyAction::Edit, &["e"]),
    (KeyAction::Fill, &["f"]),
    (KeyAction::Waive, &["w"]),
    (KeyAction::Copy, &["y"]),
    (KeyAction::Report, &["W"]),
    (KeyAction::Detail, &["v"]),
    (KeyAction::BlastRadius, &["B"]),
    (KeyAction::Releases, &["D"]),
    (KeyAction::Bundle, &["X"]),
    (KeyAction::Breaker, &["K"]),
    (KeyAction::Approvals, &["V"]),
    (KeyAction::Close, &["E"]),
    (KeyAction::Times, &["T"]),
    (KeyAction::Accept, &["enter"]),
    (KeyAction::Dismiss, &["esc"]),
    (KeyAction::Yes, &["y", "Y"]),
    (KeyAction::No, &["n", "N"]),
    (KeyAction::Unsure, &["u", "U", "?"]),
    (KeyAction::Back, &["backspace"]),
    (KeyAction::Refill, &["ctrl-r"]),
];

impl Default for KeyMap {
    fn default() -> Self {
        let mut map = KeyMap { screen: BTreeMap::new(), dialog: BTreeMap::new(), written: BTreeMap::new() };
        for (action, keys) in DEFAULTS {
            let chords: Vec<Chord> = keys.iter().filter_map(|k| Chord::parse(k).ok()).collect();
            for chord in &chords {
                map.table_mut(action.context()).insert(*chord, action);
            }
            map.written.insert(action, chords);
        }
        map
    }
}

impl KeyMap {
    fn table(&self, context: Context) -> &BTreeMap<Chord, KeyAction> {
        match context {
            Context::Screen => &self.screen,
            Context::Dialog => &self.dialog,
        }
    }

    fn table_mut(&mut self, context: Context) -> &mut BTreeMap<Chord, KeyAction> {
        match context {
            Context::Screen => &mut self.screen,
            Context::Dialog => &mut self.dialog,
        }
    }

    /// The defaults with the user's `[keys]` table applied: each action listed gets exactly
    /// the keys given for it. A key may be bound once per table (screen, dialog).
    pub fn with_overrides(overrides: &BTreeMap<KeyAction, Vec<String>>) -> Result<Self, KeyError> {
        let mut map = KeyMap::default();
        for (action, keys) in overrides {
            let table = map.table_mut(action.context());
            table.retain(|_, a| a != action);
            let mut chords = Vec::new();
            for k in keys {
                let chord = Chord::parse(k)
                    .map_err(|e| KeyError::InBinding { action: action_name(*action), problem: Box::new(e) })?;
                if let Some(other) = table.insert(chord, *action).filter(|o| o != action) {
                    return Err(KeyError::BoundTwice {
                        chord: chord.to_string(),
                        first: action_name(other),
                        second: action_name(*action),
                    });
                }
                if !chords.contains(&chord) {
                    chords.push(chord);
                }
            }
            map.written.insert(*action, chords);
        }
        Ok(map)
    }

    /// The screen action bound to a chord, if any.
    pub fn lookup(&self, chord: Chord) -> Option<KeyAction> {
        self.screen.get(&chord).copied()
    }

    /// The dialog action bound to a chord, if any.
    pub fn lookup_dialog(&self, chord: Chord) -> Option<KeyAction> {
        self.dialog.get(&chord).copied()
    }

    /// The keys of an action, for the help and `config check` ("ctrl-c q").
    pub fn keys_for(&self, action: KeyAction) -> String {
        let keys: Vec<String> =
            self.table(action.context()).iter().filter(|(_, a)| **a == action).map(|(c, _)| c.to_string()).collect();
        if keys.is_empty() { "unbound".into() } else { keys.join(" ") }
    }

    /// The keys of an action in the order a hint names them: the shortest first ("q"
    /// rather than "ctrl-c"; the first written among equals), then the others as written.
    pub fn hint_keys(&self, action: KeyAction) -> Vec<String> {
        let mut names: Vec<String> = self.written.get(&action).into_iter().flatten().map(Chord::to_string).collect();
        if let Some(i) = (0..names.len()).min_by_key(|&i| names[i].chars().count()) {
            let shortest = names.remove(i);
            names.insert(0, shortest);
        }
        names
    }

    /// The key a hint names for an action (the first of `hint_keys`); "unbound" when it
    /// has none.
    pub fn hint_key(&self, action: KeyAction) -> String {
        self.hint_keys(action).into_iter().next().unwrap_or_else(|| "unbound".into())
    }

    /// Whether a chord is bound to an action (in the action's table).
    pub fn is_bound(&self, chord: Chord, action: KeyAction) -> bool {
        self.table(action.context()).get(&chord) == Some(&action)
    }
}

fn action_name(a: KeyAction) -> String {
    // snake_case, as written in the TOML file
    let debug = format!("{a:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_action() {
        let m = KeyMap::default();
        for a in KeyAction::ALL.into_iter().chain(KeyAction::DIALOG) {
            assert_ne!(m.keys_for(a), "unbound", "{a:?}");
            assert_ne!(m.hint_key(a), "unbound", "{a:?}");
        }
        assert_eq!(DEFAULTS.len(), KeyAction::ALL.len() + KeyAction::DIALOG.len());
    }

    #[test]
    fn the_two_tables_are_apart() {
        let m = KeyMap::default();
        let enter = Chord::parse("enter").unwrap_or(Chord::char('x', false, false));
        assert_eq!(m.lookup(enter), Some(KeyAction::Precheck));
        assert_eq!(m.lookup_dialog(enter), Some(KeyAction::Accept));
        let y = Chord::char('y', false, false);
        assert_eq!(m.lookup(y), Some(KeyAction::Copy));
        assert_eq!(m.lookup_dialog(y), Some(KeyAction::Yes));
        // A clash is one within a table; the same key in both tables is not one.
        let mut o = BTreeMap::new();
        o.insert(KeyAction::Accept, vec!["ctrl-s".to_string(), "p".to_string()]);
        let m = KeyMap::with_overrides(&o).unwrap_or_default();
        assert_eq!(m.lookup_dialog(Chord::char('p', false, false)), Some(KeyAction::Accept));
        assert_eq!(m.lookup(Chord::char('p', false, false)), Some(KeyAction::Precheck));
        assert_eq!(m.lookup_dialog(enter), None);
        o.insert(KeyAction::Yes, vec!["p".to_string()]);
        let err = KeyMap::with_overrides(&o).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("bound to both accept and yes"), "{err}");
    }

    #[test]
    fn hints_name_the_shortest_key_first_written() {
        let m = KeyMap::default();
        assert_eq!(m.hint_key(KeyAction::Quit), "q");
        assert_eq!(m.hint_key(KeyAction::Cancel), "c");
        assert_eq!(m.hint_key(KeyAction::Yes), "y");
        assert_eq!(m.hint_key(KeyAction::Unsure), "u");
        assert_eq!(m.hint_key(KeyAction::Refresh), "R");
        assert_eq!(m.hint_keys(KeyAction::Cancel), ["c", "esc"]);
        assert_eq!(m.hint_keys(KeyAction::Precheck), ["p", "enter"]);
        let mut o = BTreeMap::new();
        o.insert(KeyAction::Refresh, vec!["f6".to_string(), "ctrl-l".to_string()]);
        o.insert(KeyAction::Report, Vec::new());
        let m = KeyMap::with_overrides(&o).unwrap_or_default();
        assert_eq!(m.hint_key(KeyAction::Refresh), "f6");
        assert_eq!(m.hint_key(KeyAction::Report), "unbound");
        assert_eq!(m.keys_for(KeyAction::Report), "unbound");
    }

    #[test]
    fn overrides_replace_and_bad_keys_are_errors() {
        let mut o = BTreeMap::new();
        o.insert(KeyAction::Quit, vec!["ctrl-q".to_string()]);
        let m = KeyMap::with_overrides(&o).unwrap_or_default();
        assert_eq!(m.lookup(Chord::char('q', true, false)), Some(KeyAction::Quit));
        assert_eq!(m.lookup(Chord::char('q', false, false)), None);

        o.insert(KeyAction::Help, vec!["hyper-k".to_string()]);
        let err = KeyMap::with_overrides(&o).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unknown key \"hyper-k\""), "{err}");

        let mut clash = BTreeMap::new();
        clash.insert(KeyAction::Help, vec!["r".to_string()]);
        let err = KeyMap::with_overrides(&clash).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("bound to both"), "{err}");
    }

    #[test]
    fn chords_print_as_written() {
        for k in ["ctrl-c", "shift-tab", "G", "f5", "space", "pgdn", "alt-x"] {
            assert_eq!(Chord::parse(k).map(|c| c.to_string()).ok().as_deref(), Some(k));
        }
    }
}
