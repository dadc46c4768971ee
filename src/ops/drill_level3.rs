//! The Level 3 drill on the sandbox, headless: a database of its own on the sandbox's
//! cluster with the demo book and its release history (the fast path deployed shortly
//! before the burst), an incident of its own, then every step of a full-system rollback,
//! each checked against numbers: classify, maintenance on and verified, the release rolled
//! back (nothing lost, proved), the service rolled back (a real local process), the burst
//! rolled back and proved, the ledger audited, maintenance off, the report written, the
//! journal verified.

use crate::core::approval::ApprovalKind;
use crate::ops::approval::{self, Ask};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use sqlx::Connection;

use crate::core::batch::BatchItem;
use crate::core::error::{Error, Result};
use crate::core::observed;
use crate::core::sanitize;
use crate::core::workflow::Level;
use crate::core::workflow::incident::{Observation, Step as IncidentStep};
use crate::ops::drill::Step;
use crate::ops::release::{self, Answer};
use crate::store::connect::SessionOptions;
use crate::store::db::{self, Db};
use crate::store::demo::{self, DemoSpec};
use crate::store::incidents::{IncidentStore, OpenIncident};
use crate::store::sandbox::{Cluster, Durability};
use crate::store::{config, target};

/// The drill's own database on the sandbox cluster (made afresh, dropped at the end).
pub const DRILL_DATABASE: &str = "incident_console_drill3";

const REASON: &str = "Level 3 drill: the fast-path release skipped the idempotency check and executed retries again";

/// The Level 3 drill's report.
#[derive(Debug, Clone, Serialize)]
pub struct Level3Report {
    /// When it started.
    pub started_at: chrono::DateTime<Utc>,
    /// The drill's incident directory (journal, report), kept.
    pub incident_dir: Option<PathBuf>,
    /// The report it wrote.
    pub report: Option<PathBuf>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// All steps passed.
    pub passed: bool,
}

struct Steps(Vec<Step>);

impl Steps {
    fn record(&mut self, name: &str, started: Instant, outcome: Result<(bool, String)>) -> bool {
        let (passed, detail) = outcome.unwrap_or_else(|e| (false, format!("error: {e}")));
        self.0.push(Step { name: name.into(), passed, detail, elapsed_ms: started.elapsed().as_millis() });
        passed
    }
}

/// Where the drill keeps its incident: `<sandbox>/drills/<time>`.
fn drill_dir(cluster: &Cluster) -> PathBuf {
    cluster.root().join("drills").join(Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
}

/// Runs the Level 3 drill on the sandbox cluster; `exe` is this program (for the demo
/// service it starts and rolls back).
pub async fn run(session: &SessionOptions, exe: &Path, say: &(dyn Fn(&str) + Sync)) -> Result<Level3Report> {
    let started_at = Utc::now();
    let cluster = tokio::task::spawn_blocking(crate::store::sandbox::sandbox_cluster)
        .await
        .map_err(|e| Error::Sandbox(e.to_string()))??;
    target::ensure_ready(&cluster, Durability::Durable, say).await?;
    let dir = drill_dir(&cluster);
    let mut steps = Steps(Vec::new());
    let mut report = Level3Report { started_at, incident_dir: None, report: None, steps: Vec::new(), passed: false };

    let t = Instant::now();
    let prepared = prepare(&cluster).await;
    let (url, burst) = match prepared {
        Ok((url, burst, detail)) => {
            steps.record("prepare: the demo book and its release history", t, Ok((true, detail)));
            (url, burst)
        }
        Err(e) => {
            steps.record("prepare: the demo book and its release history", t, Err(e));
            report.steps = steps.0;
            return Ok(report);
        }
    };
    let settings = target::settings_for(url, true, session);
    let pool = settings.pool(4).await?;
    let result = drill_steps(&settings, &pool, &mut steps, &burst, &dir, exe, &mut report).await;
    pool.close().await;
    drop_database(&cluster).await;
    if let Err(e) = result {
        steps.record("the drill stopped", Instant::now(), Err(e));
    }
    report.passed = !steps.0.is_empty() && steps.0.iter().all(|s| s.passed);
    report.steps = steps.0;
    Ok(report)
}

/// A fresh drill database: migrated, the demo book, the release history.
async fn prepare(cluster: &Cluster) -> Result<(String, demo::BurstInfo, String)> {
    drop_database(cluster).await;
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres")).await?;
    db::create_database(&mut admin, DRILL_DATABASE, None).await?;
    let _ = admin.close().await;
    let url = cluster.url(DRILL_DATABASE);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await?;
    db::migrate(&pool).await?;
    let mut conn = pool.acquire().await?;
    let spec = DemoSpec::standard(1, demo::default_trading_date(Utc::now()));
    let book = target::seed_demo(&mut conn, &spec).await?;
    let (releases, tagged) = target::seed_release_history(&mut conn).await?;
    drop(conn);
    pool.close().await;
    let detail = format!(
        "{} accounts, {} orders; burst: {} duplicate executions on {} from {} to {}; {releases} releases \
         (fast-path current, {tagged} orders executed by it)",
        book.accounts.len(),
        book.executed.len() + book.unexecuted.len(),
        book.burst.orders,
        book.burst.symbol,
        book.burst.from.format("%H:%M"),
        book.burst.to.format("%H:%M")
    );
    Ok((url, book.burst, detail))
}

async fn drop_database(cluster: &Cluster) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(&cluster.url("postgres")).await {
        let _ = db::drop_database(&mut admin, DRILL_DATABASE).await;
        let _ = admin.close().await;
    }
}

fn observe(inc: &mut OpenIncident, o: Observation) -> Result<()> {
    inc.act(IncidentStep::Observe(o), "drill", Utc::now())?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn drill_steps(
    settings: &crate::store::connect::ConnectSettings,
    pool: &Db,
    steps: &mut Steps,
    burst: &demo::BurstInfo,
    dir: &Path,
    exe: &Path,
    report: &mut Level3Report,
) -> Result<()> {
    // Classify: an incident of the drill's own, at Level 3.
    let t = Instant::now();
    let store = IncidentStore::new(dir.join("incidents"));
    let mut inc = store.create(
        "Level 3 drill: duplicate executions after the fast-path release",
        Level::Critical,
        "data corruption: the execution path executed retries again (60 duplicate executions)",
        "drill",
        Utc::now(),
        config::checklist()?,
    )?;
    report.incident_dir = Some(inc.dir.clone());
    let ok = inc.incident.level == Level::Critical;
    if !steps.record(
        "classify: Level 3 (critical)",
        t,
        Ok((ok, format!("incident {} opened at Level 3", inc.incident.id))),
    ) {
        return Ok(());
    }

    // The defect is live: a repeated idempotency key executes again.
    let t = Instant::now();
    let probe = release::probe_idempotency(pool).await.map_err(Error::CheckFailed);
    let live = probe.map(|p| {
        (
            p.executions == 2,
            format!("under fast-path one key sent twice executed {} order(s) (rolled back)", p.executions),
        )
    });
    if !steps.record("the defect is live (probe)", t, live) {
        return Ok(());
    }

    // Maintenance on and verified.
    let t = Instant::now();
    let (_, m) = crate::ops::maintenance::switch_maintenance(pool, true, REASON).await?;
    observe(&mut inc, Observation::Maintenance { on: true, reason: REASON.into(), verified: m.new_orders_refused })?;
    if !steps.record(
        "maintenance on and verified",
        t,
        Ok((
            m.new_orders_refused,
            format!("a probe order was answered {}", m.probe_code.as_deref().unwrap_or("success")),
        )),
    ) {
        return Ok(());
    }

    // The release rollback: its pre-check, then the revert, proved.
    let t = Instant::now();
    let tagged: i64 = sqlx::query_scalar("SELECT count(execution_route) FROM orders").fetch_one(pool).await?;
    let pre = match release::precheck(pool, "gateway-lookup").await? {
        Answer::Done(p) => p,
        Answer::Refused(r) => return Err(Error::CheckFailed(format!("pre-check refused: {}", r.message))),
    };
    let archive: i64 = pre.archive.iter().map(|a| a.values).sum();
    let ok =
        pre.drift.is_empty() && archive == tagged && pre.releases.len() == 1 && pre.releases[0].name == "fast-path";
    let detail = format!(
        "reverts {}; {} object(s); archives {archive} value(s) (SQL counts {tagged}); drift: {}",
        pre.releases.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        pre.objects.len(),
        if pre.drift.is_empty() { "none".to_string() } else { pre.drift.len().to_string() }
    );
    if !steps.record("release rollback pre-check", t, Ok((ok, detail))) {
        return Ok(());
    }
    // Four eyes: the release rollback needs a second person (another login), who approves it.
    let t = Instant::now();
    let second = second_person(settings).await?;
    let operation = uuid::Uuid::new_v4();
    let ask = Ask {
        kind: ApprovalKind::ReleaseRollback,
        operation,
        orders: Vec::new(),
        target: Some("gateway-lookup".into()),
        reason: REASON.into(),
        incident: Some((inc.incident.id.clone(), 3)),
        preview: serde_json::json!({ "source": "Level 3 drill" }),
        single: false,
    };
    let approved = four_eyes(pool, &second, &mut inc, &ask).await;
    if !steps.record("four eyes: the release rollback approved by a second login", t, approved) {
        second.close().await;
        return Ok(());
    }
    let t = Instant::now();
    let done = match release::rollback(pool, "gateway-lookup", REASON, false, false, Some(operation)).await? {
        Answer::Done(d) => d,
        Answer::Refused(r) => return Err(Error::CheckFailed(format!("release rollback refused: {}", r.message))),
    };
    let proof = done.proof.clone().unwrap_or(crate::core::release::ReleaseProof { checks: vec![], passed: false });
    let archived: i64 = done.answer.archived.iter().map(|a| a.rows).sum();
    observe(&mut inc, observed::release_rollback(&done.answer, done.proof.as_ref(), REASON))?;
    let stored: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(row_count), 0)::bigint FROM release_archive.archive_sets")
            .fetch_one(pool)
            .await?;
    let ok = proof.passed && archived == tagged && stored == tagged;
    let detail = format!(
        "fast-path -> gateway-lookup; {archived} value(s) archived (archive holds {stored}); proof {}/{}: {}",
        proof.checks.iter().filter(|c| c.passed).count(),
        proof.checks.len(),
        proof
            .checks
            .iter()
            .map(|c| format!("{} {}", c.name, if c.passed { "ok" } else { "FAILED" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !steps.record("release rollback: nothing lost, proved", t, Ok((ok, detail))) {
        return Ok(());
    }

    // The deployed service, back on the good release's version.
    let t = Instant::now();
    let expected = done.answer.target_service_version.clone().unwrap_or_else(|| "v41".into());
    let service = service_step(dir, exe, &expected).await;
    if let Ok(s) = &service {
        observe(&mut inc, observed::service_rollback(s, &expected))?;
    }
    if !steps.record("service rollback (a real local service)", t, service.map(|s| (s.passed, s.verdict))) {
        return Ok(());
    }

    // The burst: every duplicate execution rolled back as a batch, and proved.
    let t = Instant::now();
    let items: Vec<BatchItem> = db::orders_in_window(pool, &burst.symbol, burst.from, burst.to, "executed")
        .await?
        .into_iter()
        .map(|(order_id, user_id)| BatchItem { order_id, user_id })
        .collect();
    let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.order_id).collect();
    let preview = db::batch_preview(pool, &ids).await?;
    let opts = crate::ops::batch::BatchOptions::new(REASON.into());
    let ask = Ask {
        kind: ApprovalKind::Batch,
        operation: opts.batch_id,
        orders: items.iter().map(|i| (i.order_id, i.user_id)).collect(),
        target: None,
        reason: REASON.into(),
        incident: Some((inc.incident.id.clone(), 3)),
        preview: serde_json::json!({ "source": "Level 3 drill: the burst" }),
        single: false,
    };
    let approved = four_eyes(pool, &second, &mut inc, &ask).await;
    second.close().await;
    if !steps.record("four eyes: the burst's batch approved by a second login", t, approved) {
        return Ok(());
    }
    let t = Instant::now();
    observe(&mut inc, observed::batch_intended(opts.batch_id, items.len() as u64, preview.total_refund, REASON))?;
    let (summary, outcomes) =
        crate::ops::batch::run(settings, items.clone(), &opts, std::sync::Arc::new(Default::default())).await?;
    let batch_proof = crate::ops::batch::prove(pool, &summary, &outcomes).await?;
    observe(&mut inc, observed::batch(&summary, REASON, opts.batch_id))?;
    let ok = summary.rolled_back == burst.orders && batch_proof.passed() && summary.refunded == preview.total_refund;
    let detail = format!(
        "{} of {} duplicate executions rolled back, {} refunded (preview {}); {}",
        summary.rolled_back,
        burst.orders,
        summary.refunded,
        preview.total_refund,
        batch_proof.sentence()
    );
    if !steps.record("burst rollback (batch), proved", t, Ok((ok, detail))) {
        return Ok(());
    }

    // The whole ledger.
    let t = Instant::now();
    let violations = db::ledger_audit_full(pool).await?.len() as u64;
    observe(&mut inc, Observation::Audit { violations })?;
    if !steps.record("full ledger audit", t, Ok((violations == 0, format!("{violations} violation(s)")))) {
        return Ok(());
    }

    // New orders back, proved by a probe that now executes (and is undone).
    let t = Instant::now();
    let (_, m) = crate::ops::maintenance::switch_maintenance(pool, false, "Level 3 drill: recovered").await?;
    let verified = !m.new_orders_refused;
    observe(&mut inc, Observation::Maintenance { on: false, reason: "Level 3 drill: recovered".into(), verified })?;
    let probe = release::probe_idempotency(pool).await.map_err(Error::CheckFailed)?;
    let ok = verified && probe.holds();
    let detail = format!(
        "new orders accepted again; a repeated key now executes {} order(s){}",
        probe.executions,
        if probe.same_order { ", the same one" } else { "" }
    );
    if !steps.record("maintenance off; the good release answers a repeated key once", t, Ok((ok, detail))) {
        return Ok(());
    }

    // The report, from the journal, and the journal's chain. What only a person knows is
    // written as the commander would.
    let t = Instant::now();
    for (name, value) in [
        ("summary", "The fast-path release skipped the idempotency check; 60 retries executed again on GBPUSD."),
        ("root_cause", "Release fast-path gave every retry an idempotency key of its own."),
        ("lessons_learned", "Probe idempotency before a release goes live; keep the release rollback drilled."),
    ] {
        inc.act(IncidentStep::SetField { name: name.into(), value: value.into() }, "drill", Utc::now())?;
    }
    let written = crate::ops::incident::write_report(&mut inc, None, "drill", Utc::now());
    let checked = written.and_then(|path| {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::file("read", &path, e))?;
        report.report = Some(path.clone());
        let wanted = ["release rollback to gateway-lookup", "PROVED", &format!("service rollback to {expected}")];
        let missing: Vec<&str> = wanted.iter().copied().filter(|w| !text.contains(w)).collect();
        Ok((
            missing.is_empty(),
            if missing.is_empty() {
                format!("{} written; it names the release rollback, its proof and the service rollback", path.display())
            } else {
                format!("{} lacks: {}", path.display(), missing.join(", "))
            },
        ))
    });
    if !steps.record("post-incident report", t, checked) {
        return Ok(());
    }
    let t = Instant::now();
    let verification = inc.verify()?;
    let ticked = ["release_rollback", "service_rollback"]
        .iter()
        .filter(|id| matches!(inc.incident.item_state(id), crate::core::workflow::incident::ItemState::Done { .. }))
        .count();
    let (intact, chain) = match &verification {
        crate::core::journal::Verification::Intact { entries, last_hash } => {
            (true, format!("journal intact: {entries} entries, last hash {}", last_hash.get(..16).unwrap_or(last_hash)))
        }
        other => (false, sanitize::line(&format!("journal NOT intact: {other:?}")).into_owned()),
    };
    if !steps.record(
        "journal verified; Level 3 items ticked by observation",
        t,
        Ok((intact && ticked == 2, format!("{chain}; {ticked}/2 release and service items ticked"))),
    ) {
        return Ok(());
    }

    // The evidence bundle, checked offline as an auditor would: every step is in it.
    let t = Instant::now();
    let bundled = async {
        let w = crate::ops::bundle::write(&mut inc, Some(pool), &settings.url, None, None, None, "drill", Utc::now())
            .await?;
        let files = crate::store::bundle::read(&w.path)?;
        let check = crate::core::bundle::check(&files, None);
        let events =
            files.iter().find(|(p, _)| p == "events.json").map(|(_, b)| String::from_utf8_lossy(b).into_owned());
        let kinds = [
            "maintenance",
            "approval",
            "release_rollback",
            "service_rollback",
            "rollback_intended",
            "\"rollback\"",
            "audit",
        ];
        let missing: Vec<&str> =
            kinds.iter().copied().filter(|k| !events.as_deref().unwrap_or("").contains(k)).collect();
        // Both approvals are in it: requested, approved and used, with who did each.
        let approvals: serde_json::Value = files
            .iter()
            .find(|(p, _)| p == "database/approvals.json")
            .and_then(|(_, b)| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let used = approvals["log"].as_array().map_or(0, |l| l.iter().filter(|e| e["action"] == "used").count());
        let requests = approvals["requests"].as_array().map_or(0, Vec::len);
        let ok = check.intact() && missing.is_empty() && w.database_missing.is_none() && used == 2 && requests == 2;
        Ok::<_, Error>((
            ok,
            format!(
                "{} ({} files) verifies offline: {}; {requests} approval request(s), {used} used; every step's entry in it{}",
                w.path.display(),
                w.files,
                check.problem.as_deref().unwrap_or("intact"),
                if missing.is_empty() { String::new() } else { format!(" except {}", missing.join(", ")) }
            ),
        ))
    }
    .await;
    steps.record("evidence bundle written and checked offline", t, bundled);
    Ok(())
}

/// The drill's second person: the sandbox's second login (a role of the cluster, made by
/// `ensure_ready` before the drill began), under another operator name.
async fn second_person(settings: &crate::store::connect::ConnectSettings) -> Result<Db> {
    let mut second = settings.clone();
    second.url = target::as_second_login(&settings.url);
    second.operator = "drill-second".into();
    second.pool(1).await
}

/// Files the request (the policy must ask for it), shows that the requester cannot approve
/// it, has the second person approve it; each step journaled.
async fn four_eyes(pool: &Db, second: &Db, inc: &mut OpenIncident, ask: &Ask) -> Result<(bool, String)> {
    let need = approval::needed(pool, ask).await?;
    if !need.required {
        return Ok((false, "the policy did not ask for a second person".into()));
    }
    let req = approval::file(pool, ask, &need).await?;
    observe(inc, Observation::Approval(req.event("requested", &req.reason, &req.requested_by)))?;
    let own = approval::decide(pool, req.id, true, "my own", Some(&inc.incident.id)).await;
    let refused_own = matches!(&own, Err(e) if e.to_string().contains("self_approval"));
    let decided = approval::decide(second, req.id, true, "second pair of eyes: scope checked", None).await?;
    let by = decided.decided_by.clone().unwrap_or_default();
    observe(
        inc,
        Observation::Approval(decided.event("approved", decided.decision_reason.as_deref().unwrap_or(""), &by)),
    )?;
    let ok = refused_own && decided.state(Utc::now()) == crate::core::approval::RequestState::Approved;
    Ok((
        ok,
        format!(
            "{} (required: {}); the requester's own approval {}; approved by {} ({})",
            decided.scope(),
            need.reasons.join("; "),
            if refused_own { "refused (self_approval)" } else { "NOT refused" },
            sanitize::line(&by),
            sanitize::line(decided.decided_login.as_deref().unwrap_or("?"))
        ),
    ))
}

/// Starts the demo service on v42 (the fast path's), rolls it back to `expected` with its
/// configured commands, and stops it.
async fn service_step(dir: &Path, exe: &Path, expected: &str) -> Result<crate::core::service::ServiceRollback> {
    let state = dir.join("service");
    std::fs::create_dir_all(&state).map_err(|e| Error::file("create", &state, e))?;
    let mut child = tokio::process::Command::new(exe)
        .args(["sandbox", "service", "run", "--version", "v42", "--state-dir"])
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::BadInput(format!("cannot start the demo service: {e}")))?;
    // It says where it listens once it does.
    let address = state.join("address");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !address.exists() {
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Err(Error::CheckFailed("the demo service did not start listening within 10 s".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cfg = crate::store::demo_service::demo_service_config(exe, &state);
    let out = crate::ops::service::rollback_service(&cfg, expected, &|_| {}).await;
    let _ = child.kill().await;
    out
}
