//! Write-ahead journaling of rollbacks (issue 9, "An unwritable journal does not stop money
//! from moving"), end to end: the real binary against the real server, its incident's
//! journal on a directory it cannot write or on a full disk. A rollback whose intent
//! cannot be written is refused and changes nothing; `--no-journal` goes ahead and leaves
//! its waiver in the audit log; the normal path writes the intent before and the outcome
//! after, under one operation id; a disk that fills between them is said loudly and the
//! timeline and report show the intent with no outcome.
//!
//! Root writes through any permission bits, so when the tests run as root the binary runs
//! as the `postgres` system user for the read-only journal; a full disk is a small tmpfs,
//! which only root can mount (skipped, said on stderr, otherwise).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::Step;
use incident_console::store::incidents::IncidentStore;
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::{TestDb, account, executed, fingerprint, test_db};

/// What the tests give as the rollback's reason.
const REASON: &str = "duplicate executions from deploy 4711";
/// The operator name the binary runs under.
const OPERATOR: &str = "inc-test";

/// The uid and gid of the `postgres` system user when running as root: root ignores
/// permission bits, so a read-only journal is only read-only for another user.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns static storage or null and the
    // ids are copied out at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() { None } else { Some(((*pw).pw_uid, (*pw).pw_gid)) }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Says on stderr, past the harness's capture, that a test did not run.
fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "NOTICE: {test} skipped: {why}");
}

/// One test's data directory (its incidents under `incidents/`) and the user the binary
/// runs as. Write permission is given back on drop, so the directory can be removed.
struct World {
    dir: tempfile::TempDir,
    /// Where `INCIDENT_CONSOLE_DATA_DIR` points (the directory itself, or a mount in it).
    data: PathBuf,
    run_as: Option<(u32, u32)>,
}

impl World {
    /// A world whose binary runs as `run_as` (its directory handed to that user).
    fn new(run_as: Option<(u32, u32)>) -> World {
        let dir = tempfile::Builder::new().prefix("ic-wal-").tempdir_in("/tmp").expect("a temporary directory");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the test directory");
        }
        let data = dir.path().to_path_buf();
        World { dir, data, run_as }
    }

    /// `incident-console ARGS…` with this world's data directory, as its user.
    async fn ic(&self, args: &[&str]) -> Out {
        let mut c = console_in(&self.data, OPERATOR);
        c.env("HOME", self.dir.path()).env("INCIDENT_CONSOLE_CONFIG", self.dir.path().join("config.toml"));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.args(args);
        run_cmd(c, None).await
    }

    /// `incident-console --database-url URL ARGS…`.
    async fn db(&self, t: &TestDb, args: &[&str]) -> Out {
        let mut all = vec!["--database-url", t.url.as_str()];
        all.extend_from_slice(args);
        self.ic(&all).await
    }

    /// Opens an incident (as the world's user) and returns its id.
    async fn open(&self) -> String {
        let out = self.ic(&["--json", "incident", "new", "--title", "Duplicate executions", "--level", "2"]).await;
        let j = out.code(0).clean().json();
        j["incident"].as_str().unwrap_or_else(|| panic!("no incident id in {j}")).to_string()
    }

    fn incidents(&self) -> PathBuf {
        self.data.join("incidents")
    }

    fn journal(&self, id: &str) -> PathBuf {
        self.incidents().join(id).join("journal.jsonl")
    }

    /// The journal's entries, parsed.
    fn entries(&self, id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.journal(id)).expect("read the journal");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}"))).collect()
    }

    /// A file of order ids for `rollback --orders`, readable by the world's user.
    fn order_file(&self, orders: &[Uuid]) -> PathBuf {
        let path = self.dir.path().join("orders.txt");
        let text: String = orders.iter().map(|o| format!("{o}\n")).collect();
        std::fs::write(&path, text).expect("write the order file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod the order file");
        path
    }

    /// Makes the incidents directory read-only, as a read-only data directory is: no file in
    /// it can be opened for writing, nothing can be created.
    fn make_read_only(&self) {
        set_modes(&self.incidents(), 0o500, 0o400);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        set_modes(&self.incidents(), 0o700, 0o600);
    }
}

/// Sets every directory under (and including) `dir` to `dirs` and every file to `files`.
fn set_modes(dir: &Path, dirs: u32, files: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    // Children first while the directory can still be read (and written back).
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            set_modes(&path, dirs, files);
        } else {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(files));
        }
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dirs));
}

/// A tmpfs of `size` mounted at `path` (root only); unmounted on drop.
struct Tmpfs {
    path: CString,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("the mount point");
        let target = CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL");
        let options = CString::new(format!("size={size},mode=0700")).expect("options");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc =
            unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, options.as_ptr().cast()) };
        assert_eq!(rc, 0, "mount a tmpfs at {}: {}", path.display(), std::io::Error::last_os_error());
        Tmpfs { path: target }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path; a lazy unmount cannot fail on a busy file.
        unsafe {
            libc::umount2(self.path.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// Appends notes to the incident's journal until its last page has exactly `free` bytes
/// left (`page` bytes a page), so that once the disk is full exactly that much more can
/// be written to it.
fn leave_in_last_page(w: &World, id: &str, free: u64, page: u64) {
    let store = IncidentStore::new(w.incidents());
    let mut inc = store.open(id, Checklist::shipped()).expect("open the incident");
    let size = || std::fs::metadata(w.journal(id)).expect("stat the journal").len();
    let want = page - free;
    let mut text_len = 1u64;
    for _ in 0..8 {
        let before = size();
        let text = "x".repeat(usize::try_from(text_len).expect("small"));
        inc.act(Step::Note { text }, OPERATOR, Utc::now()).expect("a padding note");
        let after = size();
        if after % page == want {
            return;
        }
        // The next note's line is this one's less its text, and one more seq digit at most.
        let envelope = after - before - text_len;
        let need = (want + page - after % page) % page;
        text_len = if need > envelope { need - envelope } else { need + page - envelope };
        // A note holds at most 4000 characters: a long way goes in steps.
        text_len = text_len.min(3000);
    }
    panic!("could not leave {free} bytes in the journal's last page");
}

/// Writes into a new file in `dir` until the file system is full.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("create the filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
}

/// The file system's block size (a tmpfs's is the page size).
fn block_size(dir: &Path) -> u64 {
    let path = CString::new(dir.as_os_str().as_encoded_bytes()).expect("a path without NUL");
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut s), 0, "statvfs");
        s.f_bsize
    }
}

/// A user with two executed orders of one transaction group and one order of their own,
/// and another user with one order.
struct Book {
    user: Uuid,
    group: [Uuid; 2],
    single: Uuid,
    other_user: Uuid,
    other: Uuid,
}

async fn book(t: &TestDb) -> Book {
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let group = [executed(&t.pool, user, "1000", Some(tx)).await, executed(&t.pool, user, "2000", Some(tx)).await];
    let single = executed(&t.pool, user, "300", None).await;
    let other_user = account(&t.pool, "5000").await;
    let other = executed(&t.pool, other_user, "400", None).await;
    Book { user, group, single, other_user, other }
}

/// How many of `orders` are rolled back.
async fn rolled_back(t: &TestDb, orders: &[Uuid]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = ANY ($1) AND status = 'rolled_back'")
        .bind(orders.to_vec())
        .fetch_one(&t.pool)
        .await
        .expect("count rolled back")
}

/// What the audit log says an operation rolled back: orders, their refund (the orders'
/// total cost, as each row's `details.refunded` says) and when the first row was written.
async fn audited(t: &TestDb, operation: Uuid) -> (i64, Decimal, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT count(*), coalesce(sum(o.total_cost), 0), min(a.created_at) \
         FROM order_audit_log a JOIN orders o ON o.id = a.order_id \
         WHERE a.batch_id = $1 AND a.action = 'order_rolled_back'",
    )
    .bind(operation)
    .fetch_one(&t.pool)
    .await
    .expect("the operation's audit rows")
}

/// The login the test binary's sessions use.
async fn login(t: &TestDb) -> String {
    sqlx::query_scalar("SELECT session_user::text").fetch_one(&t.pool).await.expect("session_user")
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_str().and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_else(|| panic!("not a uuid: {v}"))
}

fn decimal_of(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

fn entry_at(e: &Value) -> DateTime<Utc> {
    e["at"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no time in {e}"))
}

/// The entries of `kind`.
fn of_kind<'a>(entries: &'a [Value], kind: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

/// A single rollback and a batch refused by an unwritable journal: exit 4, the reason named
/// (the journal's path and the OS error), nothing changed in the database, nothing written
/// to the journal. Run as `--json` for the batch: an error object.
async fn assert_refused(w: &World, t: &TestDb, id: &str, b: &Book, os_error: &str) {
    let journal_before = std::fs::read(w.journal(id)).expect("read the journal");
    let print = fingerprint(&t.pool).await;
    let (o, u) = (b.single.to_string(), b.user.to_string());

    let out = w.db(t, &["rollback", &o, "--user", &u, "--reason", REASON, "--yes"]).await;
    out.code(4).clean();
    out.complains(&format!("not done: the intent could not be written to the journal of incident {id}"));
    out.complains(&w.journal(id).display().to_string()).complains(os_error).complains("Nothing was changed");
    out.complains("--no-journal");
    assert!(!out.stdout.contains("Rolled back"), "{}", out.stdout);

    let file = w.order_file(&[b.single, b.other]);
    let out =
        w.db(t, &["--json", "rollback", "--orders", &file.display().to_string(), "--reason", REASON, "--yes"]).await;
    out.code(4).clean();
    let j: Value =
        out.stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
            panic!("the last line of stdout is a JSON error object:\n{}\n{}", out.stdout, out.stderr)
        });
    assert_eq!(j["exit_code"], 4, "{j}");
    let error = j["error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be written to the journal") && error.contains(os_error), "{j}");

    assert_eq!(fingerprint(&t.pool).await, print, "the database did not change");
    assert_eq!(rolled_back(t, &[b.single, b.other]).await, 0, "no order was rolled back");
    assert_eq!(std::fs::read(w.journal(id)).expect("read the journal"), journal_before, "nothing journaled");
}

/// (a) The incident's directory is read-only: the rollback and the batch are refused.
#[tokio::test]
async fn journal_read_only_refuses_the_rollback_and_changes_nothing() {
    let run_as = unprivileged();
    if is_root() && run_as.is_none() {
        return skipped("journal_read_only_refuses_the_rollback_and_changes_nothing", "root without a postgres user");
    }
    let t = test_db().await;
    let b = book(&t).await;
    let w = World::new(run_as);
    let id = w.open().await;
    w.make_read_only();
    assert_refused(&w, &t, &id, &b, "Permission denied (os error 13)").await;
}

/// (b) The disk is full: the rollback and the batch are refused.
#[tokio::test]
async fn journal_on_a_full_disk_refuses_the_rollback_and_changes_nothing() {
    if !is_root() {
        return skipped(
            "journal_on_a_full_disk_refuses_the_rollback_and_changes_nothing",
            "mounting a tmpfs needs root",
        );
    }
    let t = test_db().await;
    let b = book(&t).await;
    let mut w = World::new(None);
    let mount = w.dir.path().join("disk");
    let _disk = Tmpfs::mount(&mount, "256k");
    w.data = mount.clone();
    let id = w.open().await;
    // Not even a short entry fits any more.
    leave_in_last_page(&w, &id, 100, block_size(&mount));
    fill(&mount);
    assert_refused(&w, &t, &id, &b, "No space left on device (os error 28)").await;
}

/// (c) `--no-journal`: the commander acts without the journal (here: one that cannot be
/// written). The rollback and the batch go ahead; each order's waiver is in the audit log
/// first, with the operator, the login, the operation id and the reason; the journal is
/// not touched.
#[tokio::test]
async fn journal_waived_with_no_journal_rolls_back_and_the_audit_log_says_who_and_why() {
    let run_as = unprivileged();
    if is_root() && run_as.is_none() {
        return skipped("journal_waived_with_no_journal_rolls_back_…", "root without a postgres user");
    }
    let t = test_db().await;
    let b = book(&t).await;
    let w = World::new(run_as);
    let id = w.open().await;
    w.make_read_only();
    let journal_before = std::fs::read(w.journal(&id)).expect("read the journal");
    let login = login(&t).await;
    let operator = format!("{OPERATOR} (via {login})");

    let (o, u) = (b.single.to_string(), b.user.to_string());
    let out = w.db(&t, &["--json", "rollback", &o, "--user", &u, "--reason", REASON, "--yes", "--no-journal"]).await;
    out.code(0).clean().complains("Journal waived (--no-journal)");
    assert_eq!(out.json()["rollback"]["success"], true, "{}", out.stdout);
    assert_eq!(rolled_back(&t, &[b.single]).await, 1);

    // The waiver row, then the rollback's row, under one operation id.
    let rows: Vec<(i64, String, String, String, Option<Uuid>, Value)> = sqlx::query_as(
        "SELECT id, action::text, operator::text, db_user, batch_id, details FROM order_audit_log \
         WHERE order_id = $1 ORDER BY id",
    )
    .bind(b.single)
    .fetch_all(&t.pool)
    .await
    .expect("audit rows");
    let [(_, waived, by, db_user, waiver_op, details), (_, done, _, _, rollback_op, _)] = rows.as_slice() else {
        panic!("a waiver and a rollback row: {rows:?}")
    };
    assert_eq!((waived.as_str(), done.as_str()), ("journal_waived", "order_rolled_back"), "the waiver first");
    assert_eq!((by, db_user), (&operator, &login), "attributed to the operator and the login");
    assert!(waiver_op.is_some() && waiver_op == rollback_op, "one operation id: {waiver_op:?} {rollback_op:?}");
    assert_eq!(details["reason"], REASON, "{details}");
    assert_eq!(details["mode"], "single", "{details}");
    assert_eq!(details["operation"], waiver_op.map(|u| u.to_string()).unwrap_or_default(), "{details}");
    out.complains(&waiver_op.map(|u| u.to_string()).unwrap_or_default());

    // A batch: a waiver row per order, under the batch's id, before any of its rollbacks.
    let file = w.order_file(&[b.group[0], b.other]);
    let out = w
        .db(
            &t,
            &[
                "--json",
                "rollback",
                "--orders",
                &file.display().to_string(),
                "--reason",
                REASON,
                "--yes",
                "--no-journal",
            ],
        )
        .await;
    out.code(0).clean();
    let batch = uuid_of(&out.json()["summary"]["batch_id"]);
    let rows: Vec<(i64, String, Uuid, String)> = sqlx::query_as(
        "SELECT id, action::text, order_id, operator::text FROM order_audit_log WHERE batch_id = $1 ORDER BY id",
    )
    .bind(batch)
    .fetch_all(&t.pool)
    .await
    .expect("the batch's audit rows");
    let actions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(actions, ["journal_waived", "journal_waived", "order_rolled_back", "order_rolled_back"], "{rows:?}");
    let mut waived: Vec<Uuid> = rows[..2].iter().map(|r| r.2).collect();
    waived.sort();
    let mut expected = vec![b.group[0], b.other];
    expected.sort();
    assert_eq!(waived, expected);
    assert!(rows.iter().all(|r| r.3 == operator), "{rows:?}");
    assert_eq!(rolled_back(&t, &[b.group[0], b.other]).await, 2);

    assert_eq!(std::fs::read(w.journal(&id)).expect("read the journal"), journal_before, "the journal untouched");
}

/// (d) The normal path: the intent is written before the rollback (and before its audit
/// rows' time), the outcome after it, both under the operation id the audit rows carry; the
/// outcome's orders and refund are what SQL shows. A transaction group, then a batch.
#[tokio::test]
async fn journal_intent_before_and_outcome_after_under_the_operation_id_the_audit_rows_carry() {
    let t = test_db().await;
    let b = book(&t).await;
    let w = World::new(None);
    let id = w.open().await;

    let (o, u) = (b.group[0].to_string(), b.user.to_string());
    let out = w.db(&t, &["rollback", &o, "--user", &u, "--transaction", "--reason", REASON, "--yes"]).await;
    out.code(0).clean().says("Rolled back 2 order(s)");
    let entries = w.entries(&id);
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["incident_opened", "precheck", "rollback_intended", "rollback", "postcheck"]);
    let (intent, outcome) = (&entries[2], &entries[3]);
    let operation = uuid_of(&intent["data"]["operation"]);
    assert_eq!(outcome["data"]["operation"], intent["data"]["operation"], "{outcome}");
    assert_eq!(
        (&intent["data"]["mode"], &intent["data"]["orders"], &intent["data"]["order"]),
        (&Value::from("transaction"), &Value::from(2), &Value::from(o.as_str()))
    );
    let (orders, refunded, first) = audited(&t, operation).await;
    assert_eq!((orders, outcome["data"]["orders"].as_i64()), (2, Some(2)), "{outcome}");
    assert_eq!(decimal_of(&outcome["data"]["refunded"]), refunded, "{outcome}");
    assert_eq!(decimal_of(&intent["data"]["refund"]), refunded, "the pre-check's figure was right");
    let first = first.expect("audit rows");
    assert!(entry_at(intent) < first, "the intent ({}) was written before the rollback ({first})", intent["at"]);

    // A batch of two users' orders: its id is the operation.
    let file = w.order_file(&[b.single, b.other]);
    let out =
        w.db(&t, &["--json", "rollback", "--orders", &file.display().to_string(), "--reason", REASON, "--yes"]).await;
    out.code(0).clean();
    let batch = uuid_of(&out.json()["summary"]["batch_id"]);
    let entries = w.entries(&id);
    let intents = of_kind(&entries, "rollback_intended");
    let outcomes = of_kind(&entries, "rollback");
    let (intent, outcome) = (intents[1], outcomes[1]);
    assert_eq!(uuid_of(&intent["data"]["operation"]), batch);
    assert_eq!(uuid_of(&outcome["data"]["operation"]), batch);
    assert!(intent["seq"].as_i64() < outcome["seq"].as_i64());
    assert_eq!((&intent["data"]["mode"], &intent["data"]["orders"]), (&Value::from("batch"), &Value::from(2)));
    let (orders, refunded, first) = audited(&t, batch).await;
    assert_eq!((orders, outcome["data"]["orders"].as_i64()), (2, Some(2)), "{outcome}");
    assert_eq!(decimal_of(&outcome["data"]["refunded"]), refunded, "{outcome}");
    assert!(entry_at(intent) < first.expect("audit rows"), "the batch's intent came first");
    assert_eq!(rolled_back(&t, &[b.group[0], b.group[1], b.single, b.other]).await, 4);

    // Every intent has its outcome: the timeline says nothing is missing.
    let timeline = w.ic(&["incident", "timeline"]).await;
    timeline.code(0).clean().says("rollback intended");
    assert!(!timeline.stdout.contains("outcome not recorded"), "{}", timeline.stdout);
}

/// The disk fills between the intent and the outcome: the rollback ran, so the binary says
/// so loudly and exits 5 (`--json` carries `journal_error`); the timeline and the report
/// show the intent with "outcome not recorded — check the database".
#[tokio::test]
async fn journal_full_after_the_money_moved_is_said_loudly_and_the_intent_shows_no_outcome() {
    if !is_root() {
        return skipped("journal_full_after_the_money_moved_…", "mounting a tmpfs needs root");
    }
    let t = test_db().await;
    let b = book(&t).await;
    let mut w = World::new(None);
    let mount = w.dir.path().join("disk");
    let _disk = Tmpfs::mount(&mount, "256k");
    w.data = mount.clone();
    let id = w.open().await;
    // Room for the pre-check and the intent (about 800 bytes) but not for the outcome too.
    leave_in_last_page(&w, &id, 1000, block_size(&mount));
    fill(&mount);

    let (o, u) = (b.single.to_string(), b.user.to_string());
    let out = w.db(&t, &["--json", "rollback", &o, "--user", &u, "--reason", REASON, "--yes"]).await;
    out.code(5).clean();
    out.complains("WARNING: the rollback ran, but its outcome could not be written")
        .complains("No space left on device");
    let j = out.json();
    assert_eq!(j["rollback"]["success"], true, "{j}");
    assert!(j["journal_error"].as_str().is_some_and(|e| e.contains("No space left on device")), "{j}");
    assert_eq!(rolled_back(&t, &[b.single]).await, 1, "the money moved");

    let entries = w.entries(&id);
    let intent = of_kind(&entries, "rollback_intended");
    assert_eq!(intent.len(), 1, "the intent is on disk");
    assert!(of_kind(&entries, "rollback").is_empty(), "the outcome is not");
    let operation = intent[0]["data"]["operation"].as_str().unwrap_or_default().to_string();
    out.complains(&operation);
    assert_eq!(audited(&t, uuid_of(&intent[0]["data"]["operation"])).await.0, 1, "the database has it");

    let timeline = w.ic(&["incident", "timeline"]).await;
    timeline.code(0).clean().says("outcome not recorded — check the database").says(&operation);
    let report = w
        .ic(&[
            "template",
            "render",
            "post_incident_report",
            "--waive",
            "summary",
            "--waive",
            "root_cause",
            "--waive",
            "lessons_learned",
        ])
        .await;
    report.code(0).clean();
    report.says(&format!("- Outcome: outcome not recorded — check the database (operation {operation})"));
    report.says("1 with no outcome recorded: check the database");
}

/// `record_journal_waiver` writes nothing for an order that is not its user's, a reason
/// that is empty or a mode a rollback does not have, and keeps no terminal escapes.
#[tokio::test]
async fn journal_waiver_refuses_what_is_not_a_rollback_and_keeps_no_escapes() {
    let t = test_db().await;
    let b = book(&t).await;
    let op = Uuid::new_v4();
    let print = fingerprint(&t.pool).await;
    let refused = |r: incident_console::core::error::Result<u64>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.starts_with("the journal waiver was refused"), "{what}: {e}");
        e
    };
    use incident_console::store::db::record_journal_waiver as waive;
    let e = refused(waive(&t.pool, op, &[(b.single, b.other_user)], "single", REASON).await, "another user's order");
    assert!(e.contains("order_not_found"), "{e}");
    let e = refused(waive(&t.pool, op, &[(b.single, b.user)], "single", "  ").await, "a blank reason");
    assert!(e.contains("invalid_reason"), "{e}");
    refused(waive(&t.pool, op, &[(b.single, b.user)], "everything", REASON).await, "a mode no rollback has");
    refused(waive(&t.pool, op, &[], "batch", REASON).await, "no orders");
    assert_eq!(fingerprint(&t.pool).await, print, "a refused waiver writes nothing");

    let rows =
        waive(&t.pool, op, &[(b.single, b.user), (b.single, b.user), (b.other, b.other_user)], "batch", "x\u{1b}[2Jy")
            .await
            .expect("a waiver");
    assert_eq!(rows, 2, "one row per order");
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'reason' FROM order_audit_log WHERE batch_id = $1 AND action = 'journal_waived'",
    )
    .bind(op)
    .fetch_all(&t.pool)
    .await
    .expect("the waivers");
    assert!(reasons.iter().all(|r| !r.contains('\u{1b}') && r.starts_with('x')), "{reasons:?}");
}

/// The console started with `--no-journal`: its worker records each rollback's and each
/// batch's waiver in the audit log before it rolls back, under the operation id the
/// command carries; an order that is not its user's is refused before anything moves.
#[tokio::test]
async fn journal_waived_by_the_console_worker_is_in_the_audit_log_before_its_rollbacks() {
    use incident_console::console::protocol::{Command, ConnState, DbEvent};
    use incident_console::console::worker::{self, WorkerTarget};
    use incident_console::core::batch::BatchItem;
    use incident_console::store::config::ConsoleConfig;
    use std::time::Duration;

    let t = test_db().await;
    let b = book(&t).await;
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig { refresh: hour, audit: hour, ..ConsoleConfig::default() };
    let mut h = worker::spawn(WorkerTarget::Url(t.settings()), config);
    let mut next = async |what: &str| match tokio::time::timeout(Duration::from_secs(20), h.events.recv()).await {
        Ok(Some(DbEvent::Connection(ConnState::Down { error, .. }))) => panic!("down waiting for {what}: {error}"),
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the worker stopped"),
        Err(_) => panic!("no {what} within 20 s"),
    };
    while !matches!(next("the connection").await, DbEvent::Connection(ConnState::Up { .. })) {}
    let actions = async |operation: Uuid| -> Vec<String> {
        sqlx::query_scalar("SELECT action::text FROM order_audit_log WHERE batch_id = $1 ORDER BY id")
            .bind(operation)
            .fetch_all(&t.pool)
            .await
            .expect("the operation's audit rows")
    };

    h.commands.send(Command::Precheck { id: 1, order: b.single, user: b.user }).expect("send");
    let baseline = loop {
        if let DbEvent::Precheck { id: 1, result, .. } = next("the pre-check").await {
            break result.expect("pre-check").baseline.expect("baseline");
        }
    };
    let operation = Uuid::new_v4();
    let rollback = |id, order, user, baseline| Command::Rollback {
        id,
        order,
        user,
        reason: REASON.into(),
        baseline,
        group: false,
        operation,
        waive_journal: true,
    };
    // Not its user's order: the waiver is refused, and so nothing is rolled back.
    let print = fingerprint(&t.pool).await;
    h.commands.send(rollback(2, b.single, b.other_user, baseline.clone())).expect("send");
    let refused = loop {
        if let DbEvent::Rollback { id: 2, result } = next("the refusal").await {
            break result.expect_err("no waiver, no rollback");
        }
    };
    assert!(refused.starts_with("not rolled back: the journal waiver could not be recorded"), "{refused}");
    assert_eq!(fingerprint(&t.pool).await, print, "nothing changed");

    h.commands.send(rollback(3, b.single, b.user, baseline)).expect("send");
    loop {
        if let DbEvent::Rollback { id: 3, result } = next("the rollback").await {
            assert!(result.expect("rolled back").rollback.success);
            break;
        }
    }
    assert_eq!(actions(operation).await, ["journal_waived", "order_rolled_back"]);

    let batch = Uuid::new_v4();
    let items = vec![
        BatchItem { order_id: b.group[0], user_id: b.user },
        BatchItem { order_id: b.other, user_id: b.other_user },
    ];
    h.commands
        .send(Command::RunBatch {
            id: 4,
            items,
            reason: REASON.into(),
            operation: batch,
            waive_journal: true,
            preview: String::new(),
        })
        .expect("send");
    loop {
        if let DbEvent::BatchDone { id: 4, result } = next("the batch").await {
            let summary = result.expect("the batch ran");
            assert_eq!((summary.rolled_back, summary.batch_id), (2, batch));
            break;
        }
    }
    assert_eq!(actions(batch).await, ["journal_waived", "journal_waived", "order_rolled_back", "order_rolled_back"]);
    let _ = h.commands.send(Command::Shutdown);
}
