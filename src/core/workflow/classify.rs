//! The classification helper: the source document's criteria as questions, and the level
//! they point to. When an answer is "unsure", the level it would indicate counts: an
//! incident is classified up, never down, on doubt.

use super::Level;
use super::incident::Step;

/// An answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It applies.
    Yes,
    /// It does not.
    No,
    /// Nobody knows yet.
    Unsure,
}

/// One criterion of the source document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// Stable id.
    pub id: &'static str,
    /// The question asked.
    pub text: &'static str,
    /// The level a yes means.
    pub level: Level,
}

/// The criteria, most severe first.
pub const QUESTIONS: [Question; 10] = [
    Question { id: "complete_failure", text: "Has order execution failed completely?", level: Level::Critical },
    Question {
        id: "data_corruption",
        text: "Is data corrupted or lost (balances, orders, positions)?",
        level: Level::Critical,
    },
    Question { id: "security_breach", text: "Is there a security breach?", level: Level::Critical },
    Question { id: "regulatory", text: "Is there a regulatory compliance issue?", level: Level::Critical },
    Question { id: "multiple_components", text: "Have several components failed?", level: Level::Moderate },
    Question { id: "data_consistency", text: "Are there data consistency issues?", level: Level::Moderate },
    Question { id: "security_vulnerability", text: "Is a security vulnerability involved?", level: Level::Moderate },
    Question { id: "single_component", text: "Has a single component failed?", level: Level::Minor },
    Question { id: "performance", text: "Is performance degraded?", level: Level::Minor },
    Question { id: "non_critical", text: "Are only non-critical features affected?", level: Level::Minor },
];

/// The level the answers point to, and why. Unanswered questions count as "no".
pub fn propose(answers: &[(&str, Answer)]) -> (Level, Vec<&'static str>) {
    let mut level = Level::Minor;
    let mut why = Vec::new();
    for q in QUESTIONS {
        let a = answers.iter().find(|(id, _)| *id == q.id).map(|(_, a)| *a).unwrap_or(Answer::No);
        if a != Answer::No && q.level >= level {
            if q.level > level {
                why.clear();
            }
            level = q.level;
            why.push(q.text);
        }
    }
    (level, why)
}

/// The classification's outcome: the level it leaves and the steps that record it. It may
/// raise the level, never lower it: lowering is a decision of its own, with a typed reason
/// (`L`, `incident level`), and in doubt the higher level stands.
pub fn classification_steps(
    current: Level,
    answers: &[(&'static str, Answer)],
    classify_open: bool,
) -> (Level, Vec<Step>) {
    let (level, why) = propose(answers);
    let reason =
        format!("classified: {}", if why.is_empty() { "no criterion applies".to_string() } else { why.join(" ") });
    let (level, first) = if level > current {
        (level, Step::SetLevel { to: level, reason })
    } else if level < current {
        let text = format!(
            "level {} kept; the classification proposes Level {} ({reason}); lowering needs a reason of its own",
            current.number(),
            level.number()
        );
        (current, Step::Note { text })
    } else {
        (level, Step::Note { text: format!("level {} confirmed, {reason}", level.number()) })
    };
    let mut steps = vec![first];
    if classify_open {
        steps.push(Step::Tick { item: "classify".into() });
    }
    (level, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_criterion_decides() {
        assert_eq!(propose(&[]).0, Level::Minor);
        assert_eq!(propose(&[("performance", Answer::Yes)]).0, Level::Minor);
        assert_eq!(propose(&[("performance", Answer::Yes), ("data_consistency", Answer::Yes)]).0, Level::Moderate);
        let (l, why) = propose(&[("data_consistency", Answer::Yes), ("data_corruption", Answer::Yes)]);
        assert_eq!(l, Level::Critical);
        assert_eq!(why, vec!["Is data corrupted or lost (balances, orders, positions)?"]);
    }

    #[test]
    fn doubt_classifies_up() {
        assert_eq!(
            propose(&[("data_consistency", Answer::Yes), ("data_corruption", Answer::Unsure)]).0,
            Level::Critical
        );
        assert_eq!(
            propose(&[("single_component", Answer::Yes), ("security_vulnerability", Answer::Unsure)]).0,
            Level::Moderate
        );
    }
}
