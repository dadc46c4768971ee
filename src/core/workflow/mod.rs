//! The incident workflow: levels and phases as the source document defines them, the
//! checklists, and the incident's state as a pure state machine over journal entries.

pub mod checklist;
pub mod classify;
pub mod incident;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How bad the incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// Level 1: single component, performance, non-critical features; automatic rollback.
    Minor,
    /// Level 2: several components, data consistency, security; manual rollback.
    Moderate,
    /// Level 3: complete failure, data corruption, breach, regulatory; full system rollback.
    Critical,
}

impl Level {
    /// From 1, 2 or 3.
    pub fn from_number(n: u8) -> Option<Level> {
        match n {
            1 => Some(Level::Minor),
            2 => Some(Level::Moderate),
            3 => Some(Level::Critical),
            _ => None,
        }
    }

    /// 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            Level::Minor => 1,
            Level::Moderate => 2,
            Level::Critical => 3,
        }
    }

    /// "MINOR", "MODERATE", "CRITICAL": the level must read without colour too.
    pub fn label(self) -> &'static str {
        match self {
            Level::Minor => "MINOR",
            Level::Moderate => "MODERATE",
            Level::Critical => "CRITICAL",
        }
    }
}

/// Where the response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// 0–15 minutes: detection, classification, team activation.
    Assessment,
    /// 15–60 minutes: stop new orders, preserve state, investigate, decide.
    Response,
    /// 1–4 hours: execute the rollback, validate, restore gradually.
    Recovery,
    /// 4 hours on: root cause, impact, lessons, documentation.
    PostIncident,
}

impl Phase {
    /// Its name.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Assessment => "Assessment",
            Phase::Response => "Response",
            Phase::Recovery => "Recovery",
            Phase::PostIncident => "Post-incident",
        }
    }

    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [Phase::Assessment, Phase::Response, Phase::Recovery, Phase::PostIncident];

    /// The name used in files and commands.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Assessment => "assessment",
            Phase::Response => "response",
            Phase::Recovery => "recovery",
            Phase::PostIncident => "post_incident",
        }
    }

    /// Parses a phase name ("recovery", "post-incident", "Post incident").
    pub fn parse(s: &str) -> Option<Phase> {
        let k = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Phase::ALL.into_iter().find(|p| p.key() == k)
    }

    /// The phase after this one.
    pub fn next(self) -> Option<Phase> {
        Phase::ALL.iter().position(|p| *p == self).and_then(|i| Phase::ALL.get(i + 1).copied())
    }

    /// How long the phase is meant to last (none for post-incident).
    pub fn time_box(self) -> Option<Duration> {
        match self {
            Phase::Assessment => Some(Duration::minutes(15)),
            Phase::Response => Some(Duration::minutes(45)),
            Phase::Recovery => Some(Duration::hours(3)),
            Phase::PostIncident => None,
        }
    }
}

/// What the header says about the incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentHeader {
    /// Short id, e.g. INC-20261126-0748.
    pub id: String,
    /// What happened, in a few words.
    pub title: String,
    /// Its level.
    pub level: Level,
    /// Its phase.
    pub phase: Phase,
    /// When the phase began.
    pub phase_since: DateTime<Utc>,
}

impl IncidentHeader {
    /// A new incident starting now.
    pub fn new(title: String, level: Level, now: DateTime<Utc>) -> Self {
        IncidentHeader {
            id: format!("INC-{}", now.format("%Y%m%d-%H%M")),
            title,
            level,
            phase: Phase::Assessment,
            phase_since: now,
        }
    }
}
