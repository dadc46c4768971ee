//! What the help lists, grouped by where a key works: the console as a whole, each screen's
//! panes, the dialogs. Each action is listed once, under the group where it is used, with a
//! label that reads after its keys ("k up" then "previous row", never "line up").

use super::KeyAction;

/// One group of the help: a heading and its sections.
#[derive(Debug, Clone, Copy)]
pub struct HelpGroup {
    /// "Rollback screen".
    pub title: &'static str,
    /// Its sections, in order.
    pub sections: &'static [HelpSection],
}

/// A section of a group: a pane (or a kind of key) and the keys it takes.
#[derive(Debug, Clone, Copy)]
pub struct HelpSection {
    /// "orders", "checklist".
    pub title: &'static str,
    /// Each action and what the help calls it there.
    pub entries: &'static [(KeyAction, &'static str)],
}

/// The help's groups, in the order shown.
pub const HELP: [HelpGroup; 4] = [
    HelpGroup {
        title: "General",
        sections: &[
            HelpSection {
                title: "console",
                entries: &[
                    (KeyAction::Help, "this help"),
                    (KeyAction::Quit, "quit"),
                    (KeyAction::Screen, "other screen"),
                    (KeyAction::NextPane, "next pane"),
                    (KeyAction::PrevPane, "previous pane"),
                    (KeyAction::Cancel, "cancel what runs"),
                    (KeyAction::Detail, "whole text (y copies)"),
                    (KeyAction::Refresh, "reload"),
                ],
            },
            HelpSection {
                title: "moving",
                entries: &[
                    (KeyAction::Up, "previous row"),
                    (KeyAction::Down, "next row"),
                    (KeyAction::PageUp, "previous page"),
                    (KeyAction::PageDown, "next page"),
                    (KeyAction::Top, "first row"),
                    (KeyAction::Bottom, "last row"),
                ],
            },
            HelpSection {
                title: "incident",
                entries: &[
                    (KeyAction::NextPhase, "next phase"),
                    (KeyAction::Level, "change level"),
                    (KeyAction::Classify, "classify"),
                    (KeyAction::Times, "set times"),
                    (KeyAction::Maintenance, "maintenance on/off"),
                    (KeyAction::Releases, "release rollback"),
                    (KeyAction::Breaker, "breaker"),
                    (KeyAction::Approvals, "approvals"),
                    (KeyAction::Report, "report"),
                    (KeyAction::Bundle, "evidence bundle"),
                    (KeyAction::Close, "close it"),
                ],
            },
        ],
    },
    HelpGroup {
        title: "Rollback screen",
        sections: &[
            HelpSection {
                title: "orders",
                entries: &[
                    (KeyAction::Filter, "filter"),
                    (KeyAction::Sort, "sort (then a digit)"),
                    (KeyAction::PerMinute, "per-minute strip on/off"),
                    (KeyAction::BlastRadius, "blast radius (bursts)"),
                ],
            },
            HelpSection {
                title: "roll back",
                entries: &[
                    (KeyAction::Precheck, "pre-check"),
                    (KeyAction::Rollback, "the order"),
                    (KeyAction::RollbackGroup, "its transaction group"),
                ],
            },
            HelpSection {
                title: "batch",
                entries: &[
                    (KeyAction::ToggleSelect, "select the order"),
                    (KeyAction::SelectAllMatching, "all matching"),
                    (KeyAction::ClearSelection, "clear the selection"),
                    (KeyAction::RollbackBatch, "roll back the selection"),
                ],
            },
        ],
    },
    HelpGroup {
        title: "Incident screen",
        sections: &[
            HelpSection {
                title: "checklist",
                entries: &[
                    (KeyAction::Tick, "tick"),
                    (KeyAction::Skip, "skip"),
                    (KeyAction::Assign, "assign a role (Team: a person)"),
                ],
            },
            HelpSection {
                title: "messages",
                entries: &[
                    (KeyAction::Edit, "edit"),
                    (KeyAction::Fill, "fill a field"),
                    (KeyAction::Waive, "waive a field"),
                    (KeyAction::Copy, "copy (and a file)"),
                ],
            },
            HelpSection { title: "timeline", entries: &[(KeyAction::Note, "add a note")] },
        ],
    },
    HelpGroup {
        title: "Dialogs",
        sections: &[HelpSection {
            title: "",
            entries: &[
                (KeyAction::Accept, "accept"),
                (KeyAction::Dismiss, "close"),
                (KeyAction::Yes, "yes"),
                (KeyAction::No, "no"),
                (KeyAction::Unsure, "unsure"),
                (KeyAction::Back, "previous question"),
                (KeyAction::Refill, "refill (editor)"),
            ],
        }],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::KeyMap;

    fn listed() -> Vec<KeyAction> {
        HELP.iter().flat_map(|g| g.sections.iter()).flat_map(|s| s.entries.iter().map(|(a, _)| *a)).collect()
    }

    #[test]
    fn every_action_is_listed_once() {
        let listed = listed();
        for a in KeyAction::ALL.into_iter().chain(KeyAction::DIALOG) {
            assert_eq!(listed.iter().filter(|l| **l == a).count(), 1, "{a:?}");
        }
        assert_eq!(listed.len(), KeyAction::ALL.len() + KeyAction::DIALOG.len());
    }

    #[test]
    fn a_label_does_not_repeat_its_keys_or_its_section() {
        // "k up up" read as a stutter: a label says what the keys do, not their names.
        let m = KeyMap::default();
        for g in HELP {
            for s in g.sections {
                for (a, label) in s.entries {
                    let keys = m.keys_for(*a);
                    for word in label.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 1) {
                        assert!(!keys.split(' ').any(|k| k == word), "{a:?}: {keys} {label}");
                        assert!(!s.title.split(' ').any(|t| t == word), "{a:?}: {} · {label}", s.title);
                    }
                }
            }
        }
    }
}
