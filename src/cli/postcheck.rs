//! `postcheck ORDER --user U --baseline FILE`.

use serde_json::{Value, json};

use super::args::{self, GlobalArgs};
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::{observed, sanitize};
use crate::store::db;

pub(super) async fn postcheck(g: &GlobalArgs, a: args::PostcheckArgs) -> Result<i32> {
    let text = if a.baseline.as_os_str() == "-" {
        tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
            .await
            .map_err(|e| Error::task("reading stdin", e))?
            .map_err(|e| Error::BadInput(format!("cannot read the baseline from stdin: {e}")))?
    } else {
        std::fs::read_to_string(&a.baseline)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", a.baseline.display())))?
    };
    let baseline: Value =
        serde_json::from_str(&text).map_err(|e| Error::BadInput(format!("the baseline is not JSON: {e}")))?;
    // Accept the whole pre-check result too, not only its baseline.
    let baseline = match baseline.get("baseline") {
        Some(b) if baseline.get("checks").is_some() => b.clone(),
        _ => baseline,
    };
    // Only the format `precheck --baseline-out` writes: another version may mean otherwise.
    if baseline.get("version") != Some(&json!(1)) {
        return Err(Error::BadInput(format!(
            "the baseline's version is {}, not 1: write it with `incident-console precheck ORDER --user U --baseline-out FILE`",
            sanitize::line(&baseline.get("version").map_or("missing".to_string(), Value::to_string))
        )));
    }
    let (_s, pool) = connect(g).await?;
    let p = db::postcheck(&pool, a.order, a.user, &baseline).await?;
    if p.error_code.as_deref() == Some("invalid_baseline") {
        return Err(Error::BadInput("the baseline is not the pre-check baseline of this order and user".into()));
    }
    let seen = observed::postcheck(&p, a.order);
    super::observe(g, vec![seen], Some(&pool)).await;
    if g.json {
        print_json(&p)?;
    } else {
        println!("Post-check: {}", if p.successful { "PASSED" } else { "FAILED" });
        print!("{}", output::checks(&p.checks));
    }
    Ok(if p.successful { EXIT_OK } else { EXIT_CHECK_FAILED })
}
