//! Releases of the execution system (Level 3): the plan a release directory holds, what the
//! database answers about releases, and the proof that a rollback took the system back to
//! its target. Plain data and pure judgement; the SQL is `store::db::releases`, the files
//! `store::releases`, the use case `ops::release`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One release of a plan (`plan.toml`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanEntry {
    /// Its name: lowercase letters, digits, dots, dashes, underscores (1 to 63).
    pub name: String,
    /// What it changes, in a sentence.
    #[serde(default)]
    pub description: String,
    /// The version of the deployed service that goes with it, if any.
    #[serde(default)]
    pub service_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    release: Vec<PlanEntry>,
}

/// A release ready to deploy: its plan entry and its three scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseScripts {
    /// Name, description, service version.
    pub entry: PlanEntry,
    /// What deploys it.
    pub deploy: String,
    /// What takes it back (the console archives what it drops first).
    pub revert: String,
    /// What fails when it is not in effect.
    pub verify: String,
}

/// Whether `name` is a release name the database accepts.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn valid_version(v: &str) -> bool {
    let mut chars = v.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && v.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// Reads a plan: its releases in order, each name valid and used once.
pub fn parse_plan(text: &str) -> Result<Vec<PlanEntry>, String> {
    let file: PlanFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    if file.release.is_empty() {
        return Err("the plan lists no [[release]]".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &file.release {
        if !valid_name(&r.name) {
            return Err(format!(
                "release name {:?}: use 1 to 63 lowercase letters, digits, dots, dashes or underscores",
                crate::core::sanitize::line(&r.name)
            ));
        }
        if !seen.insert(r.name.clone()) {
            return Err(format!("release {} is listed twice", r.name));
        }
        if let Some(v) = &r.service_version
            && !valid_version(v)
        {
            return Err(format!(
                "release {}: service_version {:?} must be letters, digits, dots, dashes, pluses or underscores",
                r.name,
                crate::core::sanitize::line(v)
            ));
        }
    }
    Ok(file.release)
}

/// A release as the database recorded it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReleaseRow {
    /// Its deployment's id (a release deployed again gets a new one).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What it changes.
    pub description: String,
    /// The service version that goes with it.
    pub service_version: Option<String>,
    /// When it was deployed.
    pub deployed_at: DateTime<Utc>,
    /// The operator who deployed it (and the login).
    pub deployed_by: String,
    /// The database login that deployed it.
    pub deployed_by_login: String,
    /// Objects it changed.
    pub objects: i64,
    /// When it was rolled back, if it was.
    pub reverted_at: Option<DateTime<Utc>>,
    /// Who rolled it back.
    pub reverted_by: Option<String>,
    /// Why.
    pub revert_reason: Option<String>,
}

impl ReleaseRow {
    /// Deployed and not rolled back.
    pub fn active(&self) -> bool {
        self.reverted_at.is_none()
    }
}

/// One object a release changed: its definition before and after (absent: it did not
/// exist) and their checksums.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ObjectChange {
    /// function, index, constraint, column, table, trigger or view.
    pub kind: String,
    /// Its name (a function's with its argument types).
    pub identity: String,
    /// Definition before the release.
    pub before_def: Option<String>,
    /// md5 of `before_def`.
    pub before_sum: Option<String>,
    /// Definition after the release.
    pub after_def: Option<String>,
    /// md5 of `after_def`.
    pub after_sum: Option<String>,
}

impl ObjectChange {
    /// added, dropped or changed.
    pub fn change(&self) -> &'static str {
        match (&self.before_def, &self.after_def) {
            (None, _) => "added",
            (_, None) => "dropped",
            _ => "changed",
        }
    }
}

/// A release and what it changed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReleaseDetail {
    /// The release.
    pub release: ReleaseRow,
    /// Its objects.
    pub objects: Vec<ObjectChange>,
}

/// A release a rollback reverts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReleaseRef {
    /// Its deployment's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its service version.
    #[serde(default)]
    pub service_version: Option<String>,
}

/// An object changed by hand since its release was deployed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Drift {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub identity: String,
    /// The checksum its release recorded.
    pub recorded_sum: Option<String>,
    /// The checksum it has now (absent: it is gone).
    pub current_sum: Option<String>,
}

/// An object a rollback changes, and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PlannedObject {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub identity: String,
    /// drop, restore or recreate.
    pub action: String,
    /// Its checksum now.
    pub current_sum: Option<String>,
    /// Its checksum at the target release (absent: it is dropped).
    pub target_sum: Option<String>,
}

/// Values a rollback archives and then drops.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToArchive {
    /// column or table.
    pub kind: String,
    /// `table.column`, or the table.
    pub object: String,
    /// Non-null values (a column) or rows (a table).
    pub values: i64,
}

/// What a rollback to a release would do (read only).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RevertPrecheck {
    /// The release it goes back to.
    pub target: String,
    /// That release's service version.
    pub target_service_version: Option<String>,
    /// The releases it reverts, newest first.
    pub releases: Vec<ReleaseRef>,
    /// Every object it changes.
    pub objects: Vec<PlannedObject>,
    /// Objects changed by hand since deployed (their changes would be lost).
    pub drift: Vec<Drift>,
    /// Every value it archives and drops.
    pub archive: Vec<ToArchive>,
    /// Whether maintenance mode is on now.
    pub maintenance_mode: bool,
}

/// One column's values or one table's rows, archived.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Archived {
    /// The archive set's id.
    pub set_id: i64,
    /// column or table.
    pub kind: String,
    /// `table.column`, or the table.
    pub object: String,
    /// The release that added it.
    pub release: String,
    /// Values archived (as counted in the live table).
    pub rows: i64,
    /// The live table's checksum of them.
    pub checksum: String,
    /// The archive's checksum of its copy.
    pub archived_checksum: String,
}

/// One object's checksum after a rollback against the target's.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ObjectCheck {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub identity: String,
    /// The target release's checksum (absent: must not exist).
    pub expected_sum: Option<String>,
    /// Its checksum after the revert.
    pub current_sum: Option<String>,
    /// They agree.
    pub ok: bool,
}

/// What `release_rollback` answered when it did (or rehearsed) the rollback.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RollbackAnswer {
    /// Rehearsed and undone.
    pub dry_run: bool,
    /// The release it went back to.
    pub target: String,
    /// That release's service version.
    pub target_service_version: Option<String>,
    /// Releases reverted, newest first.
    pub reverted: Vec<ReleaseRef>,
    /// Values archived.
    pub archived: Vec<Archived>,
    /// Every changed object's checksum against the target's, inside the transaction.
    pub checks: Vec<ObjectCheck>,
    /// Drift accepted (with --accept-drift).
    pub drift: Vec<Drift>,
    /// Who.
    pub operator: String,
    /// The login.
    pub login: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A refusal of a release function: its stable code and why.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReleaseRefusal {
    /// Stable error code.
    pub error_code: String,
    /// Why, in words.
    pub message: String,
    /// Drift behind a `drift` refusal.
    #[serde(default)]
    pub drift: Vec<Drift>,
}

/// What the execution path did with a repeated idempotency key (inside a rolled-back
/// transaction).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct IdempotencyProbe {
    /// The symbol probed.
    pub symbol: String,
    /// Orders executed for the two calls with one key.
    pub executions: i64,
    /// Both calls answered the same order.
    pub same_order: bool,
}

impl IdempotencyProbe {
    /// A repeated key executed once and answered the first order.
    pub fn holds(&self) -> bool {
        self.executions == 1 && self.same_order
    }
}

/// One restored archive set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Restored {
    /// The archive set.
    pub set_id: i64,
    /// `table.column`, or the table.
    pub object: String,
    /// Values back in place.
    pub rows: i64,
    /// Their checksum (equal to the archive's).
    pub checksum: String,
}

/// One check of a release rollback's proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofCheck {
    /// Stable name.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind it.
    pub detail: String,
}

/// The proof that a release rollback took the system back to its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseProof {
    /// Every check, in order.
    pub checks: Vec<ProofCheck>,
    /// All of them held.
    pub passed: bool,
}

impl ReleaseProof {
    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<String> {
        self.checks.iter().filter(|c| !c.passed).map(|c| c.name.clone()).collect()
    }
}

/// What the rows showed after the rollback committed, read back by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    /// Each checked object's checksum now (absent: it does not exist).
    pub checksums: Vec<(String, String, Option<String>)>,
    /// Contract signatures that no longer resolve.
    pub missing_signatures: Vec<String>,
    /// The idempotency probe, or why it could not run.
    pub probe: Result<IdempotencyProbe, String>,
    /// The target's verify script: passed, or why not.
    pub verify: Result<(), String>,
    /// Ledger audit violations, or why it could not run.
    pub ledger_violations: Result<u64, String>,
}

/// Judges a rollback: the archive matched, every object is the target's (inside the
/// transaction and read back after it committed), the contract's signatures resolve, a
/// repeated idempotency key executes once, the target's verify passes, the ledger is clean.
pub fn prove(answer: &RollbackAnswer, read: &ReadBack) -> ReleaseProof {
    let mut checks = Vec::new();
    let archive_ok = answer.archived.iter().all(|a| a.checksum == a.archived_checksum);
    let values: i64 = answer.archived.iter().map(|a| a.rows).sum();
    checks.push(ProofCheck {
        name: "archive_matches".into(),
        passed: archive_ok,
        detail: if answer.archived.is_empty() {
            "nothing to archive".into()
        } else {
            format!(
                "{values} value(s) of {} object(s) archived; count and checksum equal the live table's",
                answer.archived.len()
            )
        },
    });
    let inside_bad: Vec<&ObjectCheck> = answer.checks.iter().filter(|c| !c.ok).collect();
    let after_bad: Vec<String> = answer
        .checks
        .iter()
        .filter(|c| {
            let now =
                read.checksums.iter().find(|(k, i, _)| *k == c.kind && *i == c.identity).and_then(|x| x.2.clone());
            now != c.expected_sum
        })
        .map(|c| format!("{} {}", c.kind, c.identity))
        .collect();
    checks.push(ProofCheck {
        name: "checksums_match_target".into(),
        passed: inside_bad.is_empty() && after_bad.is_empty(),
        detail: if inside_bad.is_empty() && after_bad.is_empty() {
            format!(
                "{} object(s) have {}'s checksums again, read back after commit",
                answer.checks.len(),
                answer.target
            )
        } else {
            format!("differ from {}: {}", answer.target, after_bad.join(", "))
        },
    });
    checks.push(ProofCheck {
        name: "contract_intact".into(),
        passed: read.missing_signatures.is_empty(),
        detail: if read.missing_signatures.is_empty() {
            format!("all {} SQL contract signatures resolve", crate::core::contract::CONTRACT_SIGNATURES.len())
        } else {
            format!("missing: {}", read.missing_signatures.join(", "))
        },
    });
    checks.push(match &read.probe {
        Ok(p) => ProofCheck {
            name: "idempotency_probe".into(),
            passed: p.holds(),
            detail: format!(
                "one idempotency key sent twice on {} executed {} order(s){} (rolled back)",
                p.symbol,
                p.executions,
                if p.same_order { ", both answers the same order" } else { ", different orders" }
            ),
        },
        Err(e) => ProofCheck { name: "idempotency_probe".into(), passed: false, detail: format!("not run: {e}") },
    });
    checks.push(ProofCheck {
        name: "target_verifies".into(),
        passed: read.verify.is_ok(),
        detail: match &read.verify {
            Ok(()) => format!("{}'s verify script passes", answer.target),
            Err(e) => format!("{}'s verify script fails: {e}", answer.target),
        },
    });
    checks.push(match &read.ledger_violations {
        Ok(0) => ProofCheck { name: "ledger_clean".into(), passed: true, detail: "full ledger audit: clean".into() },
        Ok(n) => ProofCheck { name: "ledger_clean".into(), passed: false, detail: format!("{n} ledger violation(s)") },
        Err(e) => ProofCheck { name: "ledger_clean".into(), passed: false, detail: format!("audit not run: {e}") },
    });
    let passed = checks.iter().all(|c| c.passed);
    ReleaseProof { checks, passed }
}

/// A line diff of two definitions, `-` and `+` lines with two lines of context.
pub fn diff_text(before: &str, after: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after);
    diff.unified_diff().context_radius(2).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_needs_valid_unique_names() {
        let ok = parse_plan("[[release]]\nname = \"a-1\"\nservice_version = \"v1\"\n[[release]]\nname = \"b\"\n");
        assert_eq!(ok.map(|p| p.len()), Ok(2));
        assert!(parse_plan("[[release]]\nname = \"A\"\n").is_err_and(|e| e.contains("lowercase")));
        assert!(
            parse_plan("[[release]]\nname = \"a\"\n[[release]]\nname = \"a\"\n").is_err_and(|e| e.contains("twice"))
        );
        assert!(parse_plan("").is_err_and(|e| e.contains("no [[release]]")));
        assert!(parse_plan("[[release]]\nname = \"a\"\nservice_version = \"v 1\"\n").is_err());
        assert!(parse_plan("[[release]]\nname = \"a\"\nextra = 1\n").is_err());
    }

    fn answer() -> RollbackAnswer {
        RollbackAnswer {
            dry_run: false,
            target: "good".into(),
            target_service_version: Some("v1".into()),
            reverted: vec![],
            archived: vec![Archived {
                set_id: 1,
                kind: "column".into(),
                object: "orders.x".into(),
                release: "bad".into(),
                rows: 3,
                checksum: "7".into(),
                archived_checksum: "7".into(),
            }],
            checks: vec![ObjectCheck {
                kind: "function".into(),
                identity: "f()".into(),
                expected_sum: Some("s".into()),
                current_sum: Some("s".into()),
                ok: true,
            }],
            drift: vec![],
            operator: "o".into(),
            login: "l".into(),
            at: Utc::now(),
        }
    }

    fn read() -> ReadBack {
        ReadBack {
            checksums: vec![("function".into(), "f()".into(), Some("s".into()))],
            missing_signatures: vec![],
            probe: Ok(IdempotencyProbe { symbol: "EURUSD".into(), executions: 1, same_order: true }),
            verify: Ok(()),
            ledger_violations: Ok(0),
        }
    }

    #[test]
    fn the_proof_holds_only_when_every_check_does() {
        assert!(prove(&answer(), &read()).passed);
        let mut r = read();
        r.checksums[0].2 = Some("changed".into());
        assert_eq!(prove(&answer(), &r).failed(), vec!["checksums_match_target"]);
        let mut r = read();
        r.probe = Ok(IdempotencyProbe { symbol: "EURUSD".into(), executions: 2, same_order: false });
        assert_eq!(prove(&answer(), &r).failed(), vec!["idempotency_probe"]);
        let mut a = answer();
        a.archived[0].archived_checksum = "8".into();
        assert_eq!(prove(&a, &read()).failed(), vec!["archive_matches"]);
        let mut r = read();
        r.ledger_violations = Ok(2);
        r.missing_signatures = vec!["ledger_audit()".into()];
        assert_eq!(prove(&answer(), &r).failed(), vec!["contract_intact", "ledger_clean"]);
    }
}
