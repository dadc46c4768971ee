//! The response checklists: shipped in `assets/checklists.toml`, replaceable by a file of
//! the same name in the user's config directory.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Level, Phase};

/// A fact the console observes itself, which can tick an item at Level 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoSignal {
    /// A post-check passed against its baseline.
    PostcheckPassed,
    /// Maintenance mode was turned on and the probe saw new orders refused.
    MaintenanceVerified,
    /// The ledger audit found nothing.
    AuditClean,
    /// A customer notice was copied out.
    CustomerNoticeSent,
    /// The resolution notice (the service is restored) was copied out.
    ResolutionNoticeSent,
    /// An internal alert was copied out.
    InternalAlertSent,
    /// The post-incident report was written.
    ReportWritten,
    /// A release rollback was proved (checksums, contract, probe, verify, ledger).
    ReleaseProved,
    /// The deployed service runs the expected version and its probe passed.
    ServiceVerified,
    /// The evidence bundle was written.
    BundleWritten,
}

impl AutoSignal {
    /// Whether the signal ticks items at `level`: Level 1's at Level 1 only (above it a
    /// person answers them); a proof only the console can make, at every level.
    pub fn ticks_at(self, level: Level) -> bool {
        matches!(self, AutoSignal::ReleaseProved | AutoSignal::ServiceVerified | AutoSignal::BundleWritten)
            || level == Level::Minor
    }
}

/// One item of a checklist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Stable id, used in the journal.
    pub id: String,
    /// The phase it belongs to.
    pub phase: Phase,
    /// What to do.
    pub text: String,
    /// The levels it applies to.
    pub levels: Vec<u8>,
    /// What the console can observe to tick it (Level 1 only).
    #[serde(default)]
    pub auto: Option<AutoSignal>,
    /// Someone's approval: ticking it records who approved.
    #[serde(default)]
    pub approval: bool,
}

impl Item {
    /// Whether the item is part of the response at this level.
    pub fn applies(&self, level: Level) -> bool {
        self.levels.contains(&level.number())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    item: Vec<Item>,
}

/// Why a checklist file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecklistError {
    /// Not TOML of the expected shape (the parser's message, sanitized).
    #[error("{0}")]
    Syntax(String),
    /// An item id that is not a-z, 0-9 and _ (shown sanitized).
    #[error("item id \"{0}\": use a-z, 0-9 and _")]
    BadId(String),
    /// Two items with one id.
    #[error("item id \"{0}\" appears twice")]
    Twice(String),
    /// An item without text.
    #[error("item \"{0}\" has no text")]
    NoText(String),
    /// Levels other than 1, 2, 3, or none.
    #[error("item \"{0}\": levels are 1, 2 and 3")]
    BadLevels(String),
}

/// The checklists of every phase and level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checklist {
    items: Vec<Item>,
}

const SHIPPED: &str = include_str!("../../../assets/checklists.toml");

impl Checklist {
    /// The checklist shipped with the console.
    pub fn shipped() -> Checklist {
        // The shipped file is checked by a test; an error here is a build defect.
        Checklist::parse(SHIPPED).unwrap_or(Checklist { items: Vec::new() })
    }

    /// Parses and checks a checklist file.
    pub fn parse(text: &str) -> std::result::Result<Checklist, ChecklistError> {
        let file: File = toml::from_str(text)
            .map_err(|e| ChecklistError::Syntax(crate::core::sanitize::multiline(&e.to_string())))?;
        let mut ids = BTreeSet::new();
        for item in &file.item {
            if item.id.is_empty() || !item.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(ChecklistError::BadId(crate::core::sanitize::line(&item.id).into_owned()));
            }
            if !ids.insert(item.id.clone()) {
                return Err(ChecklistError::Twice(item.id.clone()));
            }
            if item.text.trim().is_empty() {
                return Err(ChecklistError::NoText(item.id.clone()));
            }
            if item.levels.is_empty() || item.levels.iter().any(|l| !(1..=3).contains(l)) {
                return Err(ChecklistError::BadLevels(item.id.clone()));
            }
        }
        Ok(Checklist { items: file.item })
    }

    /// Every item.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// One item by id.
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The items of a phase at a level, in file order.
    pub fn for_phase(&self, phase: Phase, level: Level) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.phase == phase && i.applies(level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_checklist_is_valid_and_covers_every_phase() {
        let c = Checklist::parse(SHIPPED).map_err(|e| e.to_string());
        assert!(c.is_ok(), "{c:?}");
        let c = Checklist::shipped();
        for phase in Phase::ALL {
            for level in [Level::Minor, Level::Moderate, Level::Critical] {
                assert!(c.for_phase(phase, level).count() > 0, "{phase:?} {level:?}");
            }
        }
        // Level 3 adds the full-system steps and regulatory notification.
        let l3: Vec<_> = c.for_phase(Phase::Response, Level::Critical).map(|i| i.id.as_str()).collect();
        let l2: Vec<_> = c.for_phase(Phase::Response, Level::Moderate).map(|i| i.id.as_str()).collect();
        assert!(l3.contains(&"regulatory_notice") && !l2.contains(&"regulatory_notice"));
        assert!(l3.contains(&"full_system_plan"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dup = "[[item]]\nid='a'\nphase='response'\ntext='x'\nlevels=[1]\n[[item]]\nid='a'\nphase='response'\ntext='y'\nlevels=[2]\n";
        assert!(Checklist::parse(dup).err().map(|e| e.to_string()).unwrap_or_default().contains("twice"));
        let level = "[[item]]\nid='a'\nphase='response'\ntext='x'\nlevels=[4]\n";
        assert!(Checklist::parse(level).err().map(|e| e.to_string()).unwrap_or_default().contains("levels"));
        let phase = "[[item]]\nid='a'\nphase='lunch'\ntext='x'\nlevels=[1]\n";
        assert!(Checklist::parse(phase).err().map(|e| e.to_string()).unwrap_or_default().contains("lunch"));
    }
}
