//! Release plans on disk: a directory with `plan.toml` and `deploy/`, `revert/`, `verify/`
//! holding `NAME.sql` for each release (the layout Sqitch uses); and the sandbox's own plan,
//! built into the binary.

use std::fs;
use std::path::Path;

use crate::core::error::{Error, Result};
use crate::core::release::{PlanEntry, ReleaseScripts, parse_plan};

/// Reads the plan in `dir`: every release with its three scripts, oldest first.
pub fn read_plan(dir: &Path) -> Result<Vec<ReleaseScripts>> {
    let plan_path = dir.join("plan.toml");
    let text = fs::read_to_string(&plan_path)
        .map_err(|e| Error::BadInput(format!("cannot read the release plan {}: {e}", plan_path.display())))?;
    let entries = parse_plan(&text).map_err(|e| Error::BadInput(format!("{}: {e}", plan_path.display())))?;
    entries
        .into_iter()
        .map(|entry| {
            let script = |step: &str| {
                let p = dir.join(step).join(format!("{}.sql", entry.name));
                fs::read_to_string(&p).map_err(|e| {
                    Error::BadInput(format!(
                        "release {}: cannot read its {step} script {}: {e}",
                        entry.name,
                        p.display()
                    ))
                })
            };
            Ok(ReleaseScripts {
                deploy: script("deploy")?,
                revert: script("revert")?,
                verify: script("verify")?,
                entry,
            })
        })
        .collect()
}

macro_rules! sandbox_release {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../assets/sandbox/releases/deploy/", $name, ".sql")),
            include_str!(concat!("../../assets/sandbox/releases/revert/", $name, ".sql")),
            include_str!(concat!("../../assets/sandbox/releases/verify/", $name, ".sql")),
        )
    };
}

const SANDBOX_PLAN: &str = include_str!("../../assets/sandbox/releases/plan.toml");
const SANDBOX_SCRIPTS: [(&str, &str, &str, &str); 2] =
    [sandbox_release!("gateway-lookup"), sandbox_release!("fast-path")];

/// The sandbox's release history: a good release, then the fast path that skipped the
/// idempotency check and executed the burst's retries again.
pub fn sandbox_plan() -> Result<Vec<ReleaseScripts>> {
    let entries: Vec<PlanEntry> =
        parse_plan(SANDBOX_PLAN).map_err(|e| Error::BadInput(format!("the sandbox's release plan: {e}")))?;
    entries
        .into_iter()
        .map(|entry| {
            let (_, deploy, revert, verify) =
                SANDBOX_SCRIPTS.iter().find(|s| s.0 == entry.name).copied().ok_or_else(|| {
                    Error::BadInput(format!("the sandbox's release plan names {} without scripts", entry.name))
                })?;
            Ok(ReleaseScripts { entry, deploy: deploy.into(), revert: revert.into(), verify: verify.into() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_plan_has_its_two_releases_with_scripts() {
        let plan = sandbox_plan().map(|p| p.into_iter().map(|r| r.entry.name).collect::<Vec<_>>());
        assert_eq!(plan.ok(), Some(vec!["gateway-lookup".to_string(), "fast-path".to_string()]));
    }

    #[test]
    fn a_plan_directory_needs_every_script() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let _ = fs::write(dir.path().join("plan.toml"), "[[release]]\nname = \"one\"\n");
        let _ = fs::create_dir_all(dir.path().join("deploy"));
        let _ = fs::write(dir.path().join("deploy/one.sql"), "SELECT 1;");
        let err = read_plan(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("revert script"), "{err}");
    }
}
