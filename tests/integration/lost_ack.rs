//! Lost acknowledgements and a killed server, end to end (issue 9, "honest under faults"):
//! the real binary, with an incident open in the test's own data directory, against a
//! private server of the test's own (through the `LostAckProxy` where the fault is a lost
//! reply). Each test reads the book before, makes its fault, and ends by holding four
//! records against each other: what the binary printed (and its exit code), what `--json`
//! said, what the incident's journal holds, and what the database holds (money exact from
//! the orders' own amounts, each order rolled back once, the audit rows of the batch or
//! operation id). Each prints one `FAULT …` line with its figures (run with --nocapture).
//!
//! The burst is the demo book's 60 executed GBPUSD orders of 13:02–13:06 (`BURST_SQL`);
//! the batch's rollback function answers with a `rollback_id`, which is what the proxy is
//! armed to lose.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::BURST_SQL;
use crate::support::faults::*;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

const REASON: &str = "duplicate executions from deploy 4711";
const OPERATOR: &str = "lost-ack-test";
/// In every answer of the rollback functions the batch and a single rollback call, and in
/// no other answer the binary gets (the read-back's rows carry the id's value, not its name).
const MARKER: &[u8] = b"rollback_id";
/// The burst, rolled back as the incident commander would.
const BURST: [&str; 9] = ["rollback", "--symbol", "GBPUSD", "--from", "13:02", "--to", "13:06", "--reason", REASON];
const BURST_ORDERS: usize = 60;

/// One test's world: its server (and a proxy in front of it), its data directory with an
/// incident open, and the book as it was before the fault.
struct Scene {
    server: PrivateServer,
    proxy: LostAckProxy,
    home: tempfile::TempDir,
    incident: String,
    /// Straight to the server (never through the proxy): the checks' view.
    pool: PgPool,
    before: Book,
    /// Orders rolled back in the book before the test (the demo book has some).
    rolled_back_before: i64,
    /// The burst's executed orders, in the batch's order, with their users.
    burst: Vec<(Uuid, Uuid)>,
}

impl Scene {
    async fn new() -> Scene {
        let server = PrivateServer::start().await;
        let proxy = LostAckProxy::in_front_of(&server);
        let pool = server.pool().await;
        let sql =
            format!("SELECT id, user_id FROM orders WHERE status = 'executed' AND {BURST_SQL} ORDER BY created_at, id");
        let burst: Vec<(Uuid, Uuid)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.expect("the burst");
        assert_eq!(burst.len(), BURST_ORDERS, "the demo book's burst");
        let rolled_back_before = assert_rolled_back_once(&pool).await;
        let before = Book::read(&pool).await;
        let home = tempfile::Builder::new().prefix("ic-lost-").tempdir_in("/tmp").expect("data dir");
        let mut scene = Scene { server, proxy, home, incident: String::new(), pool, before, rolled_back_before, burst };
        let mut open = scene.command(None);
        open.args(["--json", "incident", "new", "--title", "Duplicate executions", "--level", "2"]);
        let out = run_cmd(open, None).await;
        scene.incident = out.code(0).clean().json()["incident"].as_str().expect("incident id").to_string();
        scene
    }

    /// The binary in this world, pointed at `url` when given.
    fn command(&self, url: Option<&str>) -> tokio::process::Command {
        let mut c = console_in(self.home.path(), OPERATOR);
        c.env("HOME", self.home.path());
        if let Some(url) = url {
            c.arg("--database-url").arg(url);
        }
        c
    }

    /// `incident-console --database-url URL ARGS…`, not yet run.
    fn cli(&self, url: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = self.command(Some(url));
        c.args(args);
        c
    }

    /// Runs the binary in the background (so the test can break things meanwhile).
    fn spawn(&self, url: &str, args: &[&str]) -> tokio::task::JoinHandle<Out> {
        tokio::spawn(run_cmd(self.cli(url, args), None))
    }

    fn entries(&self) -> Vec<Value> {
        let path = self.home.path().join("incidents").join(&self.incident).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).expect("read the journal");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}"))).collect()
    }

    /// The one entry of `kind` for `operation`.
    fn entry(&self, kind: &str, operation: Uuid) -> Value {
        let found: Vec<Value> = self
            .entries()
            .into_iter()
            .filter(|e| e["kind"] == kind && e["data"]["operation"] == operation.to_string().as_str())
            .collect();
        assert_eq!(found.len(), 1, "one {kind} entry of operation {operation} in the journal: {found:?}");
        found.into_iter().next().unwrap_or_default()
    }

    /// The intent and the outcome of `operation`, the intent first.
    fn intent_and_outcome(&self, operation: Uuid) -> (Value, Value) {
        let (intent, outcome) = (self.entry("rollback_intended", operation), self.entry("rollback", operation));
        assert!(intent["seq"].as_i64() < outcome["seq"].as_i64(), "intent {intent} before outcome {outcome}");
        (intent, outcome)
    }

    /// The `rollback_settled` entries of `operation` (written by a later CLI rollback).
    fn settled(&self, operation: Uuid) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["kind"] == "rollback_settled" && e["data"]["operation"] == operation.to_string().as_str())
            .collect()
    }

    /// The operation of the last intent in the journal (a run whose stdout does not say it).
    fn last_intent(&self) -> Uuid {
        let entries = self.entries();
        let last = entries.iter().rev().find(|e| e["kind"] == "rollback_intended").expect("an intent");
        uuid_of(&last["data"]["operation"])
    }

    /// How many of the burst's orders the database shows rolled back.
    async fn burst_rolled_back(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM orders WHERE status = 'rolled_back' AND {BURST_SQL}");
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await.expect("count")
    }

    /// Sessions of the binary waiting on a lock while running a statement like `pattern`.
    async fn waiting_on_a_lock(&self, pattern: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()",
        )
        .bind(pattern)
        .fetch_one(&self.pool)
        .await
        .expect("pg_stat_activity")
    }

    /// Restarts a killed server and gives the checks a pool on it.
    async fn restart(&mut self) {
        self.server.restart().await;
        self.pool = self.server.pool().await;
    }

    /// The book now, money exact against the book before (panics if not), and every order
    /// rolled back at most once and consistently: the orders rolled back since the start.
    async fn money_exact(&self) -> (Book, BTreeSet<Uuid>) {
        let after = Book::read(&self.pool).await;
        let rolled = after.assert_money_exact(&self.before);
        let total = assert_rolled_back_once(&self.pool).await;
        assert_eq!(total - self.rolled_back_before, rolled.len() as i64, "rolled back since the start");
        (after, rolled)
    }

    fn burst_ids(&self) -> BTreeSet<Uuid> {
        self.burst.iter().map(|o| o.0).collect()
    }

    /// The burst's user whose first order comes last in the batch: holding that user's
    /// profile row stalls one worker only after the others have had time to roll back
    /// orders of theirs, so a fault made then lands mid-batch.
    fn late_user(&self) -> Uuid {
        let mut firsts: Vec<Uuid> = Vec::new();
        for (_, user) in &self.burst {
            if !firsts.contains(user) {
                firsts.push(*user);
            }
        }
        *firsts.last().expect("users")
    }
}

/// Waits for `what` to be true, checking every 10 ms; panics after `limit`.
async fn until<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Money as the binary prints it: at least two decimals, no trailing zeros beyond them.
fn money(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() < 2 { format!("{n:.2}") } else { n.to_string() }
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_str().and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_else(|| panic!("not a uuid: {v}"))
}

fn decimal_of(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

fn ids_of(v: &Value) -> Vec<Uuid> {
    v.as_array().expect("a list").iter().map(|pair| uuid_of(&pair[0])).collect()
}

/// A batch's `summary` as `--json` gives it.
#[derive(Debug)]
struct Reported {
    batch: Uuid,
    total: u64,
    rolled_back: usize,
    already: u64,
    refused: usize,
    failed: Vec<Uuid>,
    unknown: Vec<Uuid>,
    not_attempted: u64,
    reply_lost: usize,
    refunded: Decimal,
}

impl Reported {
    fn of(j: &Value) -> Reported {
        let s = &j["summary"];
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("summary.{k} in {s}"));
        Reported {
            batch: uuid_of(&s["batch_id"]),
            total: n("total"),
            rolled_back: n("rolled_back") as usize,
            already: n("already_rolled_back"),
            refused: s["refused"].as_array().expect("refused").len(),
            failed: ids_of(&s["failed"]),
            unknown: ids_of(&s["unknown"]),
            not_attempted: n("not_attempted"),
            reply_lost: n("reply_lost") as usize,
            refunded: decimal_of(&s["refunded"]),
        }
    }

    /// `Summary::outcome_sentence` for these figures: the journal's detail and the line
    /// people read.
    fn sentence(&self) -> String {
        let lost = match self.reply_lost {
            0 => String::new(),
            n => format!(" ({n} confirmed from the database after the reply was lost)"),
        };
        let mut s = format!(
            "{} rolled back{lost}, {} already rolled back, {} refused, {} failed",
            self.rolled_back,
            self.already,
            self.refused,
            self.failed.len()
        );
        if !self.unknown.is_empty() {
            s.push_str(&format!(
                ", {} unknown (the reply was lost and the database could not be asked: they may be rolled back)",
                self.unknown.len()
            ));
        }
        s
    }
}

/// What a batch's figures come to once they are held against each other.
struct Agreed {
    /// Orders with a rollback row of the batch.
    db: usize,
    db_refunded: Decimal,
    journal_orders: u64,
    journal_refunded: Decimal,
}

/// Holds a batch's report (`r`, the `--json` summary) against the database and the
/// journal: the orders the report counts as rolled back are exactly the batch's rows
/// without the unknown ones (which may have committed), the refund is theirs, nothing it
/// calls failed is rolled back, and the journal's outcome says the same, in the same words.
async fn batch_agrees(s: &Scene, r: &Reported, after: &Book) -> Agreed {
    let figures = BatchFigures::of(&s.pool, r.batch).await;
    assert!(figures.postcheck_failed.is_empty(), "{figures:?}");
    let unknown: BTreeSet<Uuid> = r.unknown.iter().copied().collect();
    let confirmed: BTreeSet<Uuid> = figures.rolled_back.difference(&unknown).copied().collect();
    assert_eq!(confirmed.len(), r.rolled_back, "summary.rolled_back against the batch's rows: {r:?}");
    assert!(confirmed.is_subset(&s.burst_ids()), "only the burst's orders");
    // Each rollback row's refund is its order's cost (assert_rolled_back_once checks it).
    let refunded_confirmed: Decimal =
        confirmed.iter().map(|id| after.orders[id].total_cost.expect("cost of an executed order")).sum();
    let unknown_committed: Decimal = figures
        .rolled_back
        .intersection(&unknown)
        .map(|id| after.orders[id].total_cost.expect("cost of an executed order"))
        .sum();
    assert_eq!(refunded_confirmed + unknown_committed, figures.refunded);
    assert_eq!(r.refunded, refunded_confirmed, "summary.refunded against the batch's rows: {r:?}");
    for id in &r.failed {
        assert_eq!(after.orders[id].status, "executed", "order {id} reported failed is not executed in the database");
    }
    assert!(figures.failed.iter().all(|id| r.failed.contains(id)), "a rollback_failed row the summary lacks");

    let (intent, outcome) = s.intent_and_outcome(r.batch);
    let d = &outcome["data"];
    assert_eq!((&intent["data"]["mode"], &intent["data"]["orders"]), (&Value::from("batch"), &Value::from(r.total)));
    assert_eq!(d["mode"], "batch", "{outcome}");
    assert_eq!(d["orders"].as_u64(), Some(r.rolled_back as u64), "journal orders: {outcome}");
    assert_eq!(decimal_of(&d["refunded"]), r.refunded, "journal refunded: {outcome}");
    assert_eq!(d["detail"], r.sentence().as_str(), "journal detail: {outcome}");
    let complete = r.refused == 0 && r.failed.is_empty() && r.unknown.is_empty() && r.not_attempted == 0;
    assert_eq!(d["success"], complete, "journal success: {outcome}");
    Agreed {
        db: figures.rolled_back.len(),
        db_refunded: figures.refunded,
        journal_orders: d["orders"].as_u64().unwrap_or_default(),
        journal_refunded: decimal_of(&d["refunded"]),
    }
}

/// The last progress line on stderr (not a terminal: plain lines).
fn last_progress(out: &Out) -> &str {
    out.stderr.lines().rev().find(|l| l.starts_with("progress: ")).unwrap_or_else(|| panic!("no progress in {out:?}"))
}

// ---------------------------------------------------------------------------------------
// 1. A single rollback whose reply is lost after the commit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_single_rollback_is_read_back_and_reported_done() {
    let s = Scene::new().await;
    let url = s.proxy.url();
    let mut runs = Vec::new();
    // Twice: as people read it, then as --json; one lost reply each.
    for (n, json) in [(0, false), (1, true)] {
        let (order, user) = s.burst[n];
        s.proxy.drop_next_reply_containing(MARKER, 1);
        let mut args = vec!["rollback".to_string(), order.to_string(), "--user".into(), user.to_string()];
        args.extend(["--reason", REASON, "--yes"].map(String::from));
        if json {
            args.push("--json".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_cmd(s.cli(&url, &args), None).await;
        out.code(0).clean();
        assert_eq!(s.proxy.dropped_after_commit(), n + 1, "the reply was lost after the commit: {out:?}");
        assert_eq!(s.proxy.drops().len(), n + 1, "and nothing else was lost");
        runs.push((order, json, out));
    }
    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, BTreeSet::from([s.burst[0].0, s.burst[1].0]), "exactly the two orders");

    let mut figures_said = Vec::new();
    for (order, json, out) in &runs {
        let cost = after.orders[order].total_cost.expect("cost");
        let margin = s.before.orders[order].margin.expect("the margin of its open position");
        // The operation id is the intent's; the audit rows carry it.
        let entries = s.entries();
        let intent = entries
            .iter()
            .find(|e| e["kind"] == "rollback_intended" && e["data"]["order"] == order.to_string().as_str())
            .expect("the rollback's intent");
        let operation = uuid_of(&intent["data"]["operation"]);
        let figures = BatchFigures::of(&s.pool, operation).await;
        assert_eq!(figures.rolled_back, BTreeSet::from([*order]), "{figures:?}");
        assert_eq!(figures.refunded, cost);
        assert!(figures.failed.is_empty(), "no rollback_failed row for a rollback that happened: {figures:?}");

        let (reply_lost, success, said_refund, postcheck) = if *json {
            let j = out.json();
            let rb = &j["rollback"];
            assert!(rb["reply_lost"].as_str().is_some_and(|w| !w.is_empty()), "rollback.reply_lost: {j}");
            assert_eq!(rb["order_ids"], serde_json::json!([order.to_string()]), "{j}");
            assert_eq!(decimal_of(&rb["margin_released"]), margin, "{j}");
            // Read back, not answered: what the reply would have said and nothing else is
            // known, and nothing is made up.
            assert_eq!((&rb["transfers_reversed"], &rb["duration_us"]), (&Value::Null, &Value::Null), "{j}");
            (
                rb["reply_lost"].as_str().unwrap_or_default().to_string(),
                rb["success"] == true,
                decimal_of(&rb["refunded"]),
                j["postcheck"]["successful"] == true,
            )
        } else {
            out.says("The reply was lost (")
                .says("the database's rows show this rollback committed:")
                // No "0 transfer(s) reversed in 0 ms": the read-back does not know them.
                .says(&format!(
                    "Rolled back 1 order(s): refunded {}, margin released {}.\n",
                    money(cost),
                    money(margin)
                ))
                .says("Post-check against the baseline: PASSED");
            let why = out.stdout.split("The reply was lost (").nth(1).and_then(|r| r.split(");").next());
            (why.unwrap_or_default().to_string(), true, cost, true)
        };
        assert!(success && postcheck, "{out:?}");
        assert_eq!(said_refund, cost, "the refund said is the database's");

        let (_, outcome) = s.intent_and_outcome(operation);
        let d = &outcome["data"];
        assert_eq!((d["orders"].as_u64(), d["success"].as_bool()), (Some(1), Some(true)), "{outcome}");
        assert_eq!(decimal_of(&d["refunded"]), cost, "{outcome}");
        let detail = d["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("the reply was lost") && detail.contains("confirmed from the database"), "{detail}");
        // The post-check run anew after the read-back is journaled, and passed.
        let post = s.entries().into_iter().find(|e| {
            e["kind"] == "postcheck"
                && e["data"]["order"] == order.to_string().as_str()
                && e["seq"].as_i64() > outcome["seq"].as_i64()
        });
        assert_eq!(post.map(|p| p["data"]["successful"].clone()), Some(Value::Bool(true)));
        figures_said.push(format!(
            "{}: exit={} success={success} reply_lost={reply_lost:?} db.rolled_back={} journal.orders={} \
             refunded said={said_refund} db={} journal={}",
            if *json { "json" } else { "text" },
            out.code,
            figures.rolled_back.len(),
            d["orders"],
            figures.refunded,
            decimal_of(&d["refunded"]),
        ));
    }
    eprintln!(
        "FAULT lost-ack-single: proxy.dropped_after_commit={} (one per run); {}",
        s.proxy.dropped_after_commit(),
        figures_said.join("; ")
    );
}

// ---------------------------------------------------------------------------------------
// 2. and 3. A batch that loses replies

/// Rolls back the burst through the proxy with `concurrency` workers, losing `times`
/// replies after letting `skip` through, and checks the four records agree. `json`: read
/// the summary from `--json`; else from the lines people read.
/// `chunk` orders per call (`--chunk-size`): each lost reply is that many orders'.
async fn batch_losing_replies(name: &str, concurrency: u16, chunk: usize, skip: usize, times: usize, json: bool) {
    let s = Scene::new().await;
    s.proxy.drop_replies_containing(MARKER, skip, times);
    let concurrency = concurrency.to_string();
    let chunk_size = chunk.to_string();
    let mut args = BURST.to_vec();
    args.extend(["--yes", "--concurrency", &concurrency, "--chunk-size", &chunk_size]);
    if json {
        args.push("--json");
    }
    let out = run_cmd(s.cli(&s.proxy.url(), &args), None).await;
    out.clean();
    let drops = s.proxy.drops();
    assert_eq!(drops.len(), times, "the proxy lost {times} replies: {drops:?}\n{out:?}");
    assert_eq!(s.proxy.dropped_after_commit(), times, "each after its commit: {drops:?}");

    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, s.burst_ids(), "the whole burst rolled back, once each\n{out:?}");
    out.code(0);
    let r = if json {
        let j = out.json();
        assert_eq!(j["audit_of_touched_users"], serde_json::json!([]), "{j}");
        assert_eq!(j["audit_error"], Value::Null, "{j}");
        assert!(j.get("journal_error").is_none(), "{j}");
        Reported::of(&j)
    } else {
        // The batch id is the intent's; the figures are the sentence people read.
        let batch = s.last_intent();
        let figures = BatchFigures::of(&s.pool, batch).await;
        let r = Reported {
            batch,
            total: BURST_ORDERS as u64,
            rolled_back: figures.rolled_back.len(),
            already: 0,
            refused: 0,
            failed: Vec::new(),
            unknown: Vec::new(),
            not_attempted: 0,
            reply_lost: times * chunk,
            refunded: figures.refunded,
        };
        out.says(&format!(": {}.\n", r.sentence()))
            .says(&format!("Refunded {}, margin released", money(r.refunded)))
            .says("Audit of the touched users: no violations.");
        assert!(!out.stdout.contains("failed  ") && !out.stdout.contains("UNKNOWN"), "{}", out.stdout);
        r
    };
    assert_eq!((r.total, r.rolled_back, r.already), (BURST_ORDERS as u64, BURST_ORDERS, 0), "{r:?}");
    assert!(r.failed.is_empty() && r.unknown.is_empty() && r.refused == 0 && r.not_attempted == 0, "{r:?}");
    assert_eq!(
        r.reply_lost,
        s.proxy.dropped_after_commit() * chunk,
        "summary.reply_lost = the orders of the proxy's drops"
    );
    let a = batch_agrees(&s, &r, &after).await;
    assert_eq!(a.db, BURST_ORDERS);
    assert_eq!(last_progress(&out), "progress: 60/60 finished, 60 rolled back");
    // The audit that ran is journaled after the outcome, clean.
    let (_, outcome) = s.intent_and_outcome(r.batch);
    let audits: Vec<Value> = s
        .entries()
        .into_iter()
        .filter(|e| e["kind"] == "audit" && e["seq"].as_i64() > outcome["seq"].as_i64())
        .collect();
    assert_eq!(audits.iter().map(|e| e["data"]["violations"].clone()).collect::<Vec<_>>(), [Value::from(0)]);
    eprintln!(
        "FAULT {name}: exit={} summary.rolled_back={} reply_lost={} proxy.dropped_after_commit={} db={} \
         journal.orders={} refunded summary={} db={} journal={}",
        out.code,
        r.rolled_back,
        r.reply_lost,
        s.proxy.dropped_after_commit(),
        a.db,
        a.journal_orders,
        r.refunded,
        a.db_refunded,
        a.journal_refunded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_batch_of_the_burst_loses_three_replies_mid_batch() {
    batch_losing_replies("lost-ack-batch", 4, 1, 10, 3, true).await;
}

/// A chunk's reply lost after it committed (one worker, 50 orders per call: the first call
/// is 50 of the burst's 60): every order of it is settled from the database as this
/// batch's, none is sent twice, and the last 10 go through as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_chunked_batch_loses_a_whole_chunks_reply() {
    batch_losing_replies("lost-ack-chunked-batch", 1, 50, 0, 1, false).await;
}

/// One worker: the one connection breaks, and the whole queue depends on its reconnecting
/// (a tester once saw "0 rolled back, 639 failed" here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_batch_with_one_worker_loses_one_reply() {
    batch_losing_replies("lost-ack-batch-concurrency-1", 1, 1, 20, 1, false).await;
}

// ---------------------------------------------------------------------------------------
// 4. and 5. The server killed with -9 mid-batch

/// Starts the burst's batch straight on the server (`extra` flags added) with one worker
/// stalled on a held profile row, and kills the server with -9 once that worker waits:
/// mid-batch for sure, since that worker's queue is not done. Returns the running binary
/// and how many of the burst's orders were rolled back just before the kill.
async fn batch_killed_mid_batch(s: &Scene, extra: &[&str]) -> (tokio::task::JoinHandle<Out>, i64) {
    let mut holder = s.server.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE")
        .bind(s.late_user())
        .execute(&mut holder)
        .await
        .expect("hold the profile row");
    let mut args = BURST.to_vec();
    args.extend(["--yes", "--json", "--concurrency", "4"]);
    args.extend_from_slice(extra);
    let cli = s.spawn(&s.server.url(), &args);
    until("a worker of the batch waits on the held row", Duration::from_secs(60), async || {
        // One order per call (rollback_execute_order_atomic) or a chunk (rollback_orders).
        s.waiting_on_a_lock("%rollback_%order%").await > 0
    })
    .await;
    let at_kill = s.burst_rolled_back().await;
    // The holder dies with the server: its transaction never commits (it changed nothing).
    let killed = s.server.kill9();
    assert!(killed >= 6, "{killed} processes: the postmaster, its helpers and the sessions");
    drop(holder);
    assert!(!cli.is_finished(), "the batch ended before the kill");
    (cli, at_kill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_server_killed_mid_batch_and_restarted_finishes_the_batch() {
    let mut s = Scene::new().await;
    // One order per call: at most one reply per worker can be lost.
    let (cli, at_kill) = batch_killed_mid_batch(&s, &["--chunk-size", "1"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = Instant::now();
    s.restart().await;
    let restarted_in = restart.elapsed();
    assert!(!cli.is_finished(), "the batch ended while the server was down (it should wait for it)");
    let out = cli.await.expect("join");
    out.clean().code(0);
    let j = out.json();
    let r = Reported::of(&j);

    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, s.burst_ids(), "the whole burst rolled back, once each\n{out:?}");
    assert_eq!((r.total, r.rolled_back, r.already), (BURST_ORDERS as u64, BURST_ORDERS, 0), "{r:?}");
    assert!(r.failed.is_empty() && r.unknown.is_empty() && r.refused == 0 && r.not_attempted == 0, "{r:?}");
    // A call cut off by the kill committed or not; only one per worker was in flight.
    assert!(r.reply_lost <= 4, "{r:?}");
    assert_eq!(j["audit_of_touched_users"], serde_json::json!([]), "{j}");
    assert_eq!(j["audit_error"], Value::Null, "{j}");
    let a = batch_agrees(&s, &r, &after).await;
    assert_eq!(a.db, BURST_ORDERS);
    assert_eq!(last_progress(&out), "progress: 60/60 finished, 60 rolled back");
    eprintln!(
        "FAULT kill9-mid-batch-restarted: exit={} db.at_kill={at_kill} restart={restarted_in:?} \
         summary.rolled_back={} reply_lost={} db={} journal.orders={} refunded summary={} db={} journal={}",
        out.code, r.rolled_back, r.reply_lost, a.db, a.journal_orders, r.refunded, a.db_refunded, a.journal_refunded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_server_killed_mid_batch_and_not_restarted_reports_what_it_knows() {
    let mut s = Scene::new().await;
    // Workers give up reconnecting after 3 s instead of 30 (a hidden flag, for this test).
    // One order per call: at most one unknown per worker.
    let (cli, at_kill) = batch_killed_mid_batch(&s, &["--reconnect-for-secs", "3", "--chunk-size", "1"]).await;
    let down = Instant::now();
    let out = cli.await.expect("join");
    let ended_in = down.elapsed();
    out.clean().code(3);
    let j = out.json();
    let r = Reported::of(&j);
    assert!(j["audit_error"].as_str().is_some_and(|e| !e.is_empty()), "audit_error: {j}");
    assert_eq!(j["audit_of_touched_users"], Value::Null, "{j}");
    assert!(j.get("journal_error").is_none(), "the journal is local: {j}");
    assert_eq!(r.total, BURST_ORDERS as u64);
    assert!(!r.unknown.is_empty() && r.unknown.len() <= 4, "at most one unknown per worker: {r:?}");
    assert_eq!(r.rolled_back + r.unknown.len() + r.failed.len(), BURST_ORDERS, "{r:?}");
    assert!(r.already == 0 && r.refused == 0 && r.not_attempted == 0, "{r:?}");
    assert!(r.rolled_back < BURST_ORDERS, "the held worker's orders were not done: {r:?}");
    let failures = j["summary"]["failed"].as_array().expect("failed").clone();
    assert!(
        failures.iter().all(|f| f[1].as_str().is_some_and(|e| e.starts_with("not sent: "))),
        "every failure is an order not sent: {failures:?}"
    );
    // The journal has the outcome, written while the database was down.
    let (_, outcome) = s.intent_and_outcome(r.batch);
    assert_eq!(outcome["data"]["success"], false, "{outcome}");

    // Back up: what the batch left is what it said, give or take the unknown ones.
    s.restart().await;
    let (after, rolled) = s.money_exact().await;
    let a = batch_agrees(&s, &r, &after).await;
    assert!(a.db >= r.rolled_back && a.db <= r.rolled_back + r.unknown.len(), "db {} for {r:?}", a.db);
    assert_eq!(rolled.len(), a.db, "nothing but the batch rolled anything back");

    // The same command again finishes the rest.
    let mut args = BURST.to_vec();
    args.extend(["--yes", "--json", "--concurrency", "4"]);
    let rerun = run_cmd(s.cli(&s.server.url(), &args), None).await;
    rerun.clean().code(0);
    let r2 = Reported::of(&rerun.json());
    assert_eq!((r2.total as usize, r2.rolled_back), (BURST_ORDERS - a.db, BURST_ORDERS - a.db), "{r2:?}");
    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, s.burst_ids(), "the whole burst rolled back, once each, over the two runs");
    let a2 = batch_agrees(&s, &r2, &after).await;
    // The rerun settles the first batch from the database if its journal figures fell
    // short (an order reported unknown had committed), and only then; either way the
    // journal's figures of the two batches add up to the database's for the whole burst.
    let settled = s.settled(r.batch);
    let (journal_first, journal_first_refunded) = if (a.db, a.db_refunded) == (r.rolled_back, r.refunded) {
        assert!(settled.is_empty(), "nothing to settle: {settled:?}");
        assert!(!rerun.stderr.contains("Settled"), "{}", rerun.stderr);
        (a.journal_orders, a.journal_refunded)
    } else {
        assert_eq!(settled.len(), 1, "{settled:?}");
        rerun.complains("Settled 1 earlier rollback(s) of this incident from the database");
        let d = &settled[0]["data"];
        (d["orders"].as_u64().unwrap_or_default(), decimal_of(&d["refunded"]))
    };
    assert_eq!((journal_first, journal_first_refunded), (a.db as u64, a.db_refunded), "the first batch, journaled");
    let burst_cost: Decimal = s.burst_ids().iter().map(|id| after.orders[id].total_cost.unwrap_or_default()).sum();
    assert_eq!(
        (journal_first + a2.journal_orders, journal_first_refunded + a2.journal_refunded),
        (BURST_ORDERS as u64, burst_cost),
        "the journal's figures of the two runs are the burst's"
    );
    eprintln!(
        "FAULT kill9-mid-batch-stays-down: exit={} ended {ended_in:?} after the kill, db.at_kill={at_kill} \
         summary.rolled_back={} unknown={} failed={} reply_lost={} db={} journal.orders={} \
         refunded summary={} db={} journal={}; rerun: exit={} rolled_back={} db={} journal.orders={} \
         settled={}",
        out.code,
        r.rolled_back,
        r.unknown.len(),
        r.failed.len(),
        r.reply_lost,
        a.db,
        a.journal_orders,
        r.refunded,
        a.db_refunded,
        a.journal_refunded,
        rerun.code,
        r2.rolled_back,
        a2.db,
        a2.journal_orders,
        settled.len()
    );
}

// ---------------------------------------------------------------------------------------
// 6. The server killed after the batch's last rollback, before the audit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_server_killed_before_the_audit_reports_the_batch_done_and_unaudited() {
    let mut s = Scene::new().await;
    // The audit of the touched users reads the very tables the rollbacks write, so no lock
    // can stop it and only it; the proxy holds its statement back instead (the rollbacks
    // before it pass), and the server dies while it waits.
    s.proxy.hold_statements_containing(b"ledger_audit_users(");
    let mut args = BURST.to_vec();
    args.extend(["--yes", "--json", "--concurrency", "4"]);
    let cli = s.spawn(&s.proxy.url(), &args);
    until("the 60 rolled back and the audit held", Duration::from_secs(60), async || s.proxy.held_statements() > 0)
        .await;
    let at_kill = s.burst_rolled_back().await;
    assert_eq!(at_kill, BURST_ORDERS as i64, "the audit runs after the last rollback");
    s.server.kill9();
    s.proxy.let_go();
    let out = cli.await.expect("join");
    out.clean().code(3);
    assert_eq!(s.proxy.held_statements(), 1, "one audit, held");
    assert!(s.proxy.drops().is_empty(), "no reply lost");
    let j = out.json();
    let r = Reported::of(&j);
    assert!(j["audit_error"].as_str().is_some_and(|e| !e.is_empty()), "audit_error: {j}");
    assert_eq!(j["audit_of_touched_users"], Value::Null, "{j}");
    assert!(j.get("journal_error").is_none(), "{j}");
    assert_eq!((r.total, r.rolled_back, r.reply_lost), (BURST_ORDERS as u64, BURST_ORDERS, 0), "{r:?}");
    assert!(r.failed.is_empty() && r.unknown.is_empty() && r.refused == 0 && r.not_attempted == 0, "{r:?}");
    assert_eq!(last_progress(&out), "progress: 60/60 finished, 60 rolled back");
    // No audit entry: the journal does not claim an audit that did not run.
    let entries = s.entries();
    let (_, outcome) = s.intent_and_outcome(r.batch);
    assert!(
        !entries.iter().any(|e| e["kind"] == "audit" && e["seq"].as_i64() > outcome["seq"].as_i64()),
        "an audit journaled that never ran"
    );

    s.restart().await;
    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, s.burst_ids());
    let a = batch_agrees(&s, &r, &after).await;
    eprintln!(
        "FAULT kill9-before-audit: exit={} audit_error={:?} summary.rolled_back={} reply_lost={} db={} \
         journal.orders={} refunded summary={} db={} journal={}",
        out.code,
        j["audit_error"].as_str().unwrap_or_default(),
        r.rolled_back,
        r.reply_lost,
        a.db,
        a.journal_orders,
        r.refunded,
        a.db_refunded,
        a.journal_refunded
    );
}

// ---------------------------------------------------------------------------------------
// 7. A single rollback whose reply is lost, and the server killed before it can be asked

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_single_rollback_with_the_server_killed_is_unknown_until_asked() {
    let mut s = Scene::new().await;
    let (order, user) = s.burst[0];
    // The lost reply's connection stays open until the server is dead: the binary cannot
    // read the rollback back before it dies.
    s.proxy.hold_lost_connections();
    s.proxy.drop_next_reply_containing(MARKER, 1);
    let (o, u) = (order.to_string(), user.to_string());
    let cli = s.spawn(&s.proxy.url(), &["rollback", &o, "--user", &u, "--reason", REASON, "--yes", "--json"]);
    until("the reply lost", Duration::from_secs(60), async || !s.proxy.drops().is_empty()).await;
    s.server.kill9();
    s.proxy.let_go();
    let out = cli.await.expect("join");
    out.clean().code(3).complains("outcome unknown: ");
    assert_eq!(s.proxy.drops(), [LostReply { committed: true, explicit_transaction: false }]);
    let j = out.json();
    assert_eq!(j["exit_code"], 3, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| e.starts_with("outcome unknown: ")), "{j}");

    // The journal: the intent, and an outcome that says it is unknown, not a failure.
    let entries = s.entries();
    let intent = entries.iter().rev().find(|e| e["kind"] == "rollback_intended").expect("intent");
    let operation = uuid_of(&intent["data"]["operation"]);
    let (_, outcome) = s.intent_and_outcome(operation);
    let d = &outcome["data"];
    assert_eq!(d["success"], false, "{outcome}");
    let detail = d["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("outcome unknown: "), "the journal says the outcome is unknown: {outcome}");
    let mut timeline = s.command(None);
    timeline.args(["incident", "timeline"]);
    let timeline = run_cmd(timeline, None).await;
    timeline.code(0).clean().says("outcome unknown: ");

    // Back up: the rollback had committed, once, under the operation's id.
    s.restart().await;
    let (after, rolled) = s.money_exact().await;
    assert_eq!(rolled, BTreeSet::from([order]), "the rollback committed before the kill");
    let figures = BatchFigures::of(&s.pool, operation).await;
    assert_eq!(figures.rolled_back, BTreeSet::from([order]));
    assert_eq!(Some(figures.refunded), after.orders[&order].total_cost);
    assert!(figures.failed.is_empty(), "no failure recorded for it: {figures:?}");

    // The incident's next rollback settles it from the database: the journal, and the
    // timeline read from it, then say what the database holds.
    let (next, next_user) = (s.burst[1].0.to_string(), s.burst[1].1.to_string());
    let rerun =
        run_cmd(s.cli(&s.server.url(), &["rollback", &next, "--user", &next_user, "--reason", REASON, "--yes"]), None)
            .await;
    rerun.clean().code(0).complains("Settled 1 earlier rollback(s) of this incident from the database");
    let settled = s.settled(operation);
    assert_eq!(settled.len(), 1, "{settled:?}");
    let sd = &settled[0]["data"];
    assert_eq!(sd["orders"], 1, "{sd}");
    assert_eq!(decimal_of(&sd["refunded"]), figures.refunded, "{sd}");
    let was = format!("{} order(s), refunded {}", d["orders"], d["refunded"].as_str().unwrap_or_default());
    assert_eq!(sd["was"], was.as_str(), "{sd}");
    let mut timeline = s.command(None);
    timeline.args(["incident", "timeline"]);
    run_cmd(timeline, None).await.code(0).clean().says(&format!(
        "rollback settled from the database: operation {operation} rolled back 1 order(s), refunded {}",
        figures.refunded.normalize()
    ));
    let (_, rolled) = s.money_exact().await;
    assert_eq!(rolled, BTreeSet::from([order, s.burst[1].0]), "the two orders, once each");
    eprintln!(
        "FAULT lost-ack-single-server-killed: exit={} error={:?} proxy.dropped_after_commit={} \
         journal: success={} orders={} refunded={} detail={detail:?}; after restart db.rolled_back={} refunded={}; \
         next rollback settled it: orders={} refunded={}",
        out.code,
        j["error"].as_str().unwrap_or_default(),
        s.proxy.dropped_after_commit(),
        d["success"],
        d["orders"],
        d["refunded"],
        figures.rolled_back.len(),
        figures.refunded,
        sd["orders"],
        decimal_of(&sd["refunded"])
    );
}
