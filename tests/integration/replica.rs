//! Reads off the primary (issue 13), against a real streaming standby that each test
//! builds with `pg_basebackup` from a private server of its own (`PrivateServer::standby`):
//! the console's orders list reads the standby while a pre-check of the same order reads
//! the primary; the lag the header shows rises while replay is paused and falls after it
//! resumes; a dead standby sends the reads back to the primary and the console goes on;
//! `audit --full --replica-url` finds what the primary finds; the replica's password is
//! never printed.

use std::time::{Duration, Instant};

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::BURST_SQL;
use crate::support::faults::PrivateServer;
use incident_console::console::protocol::{Command, ConnState, DbEvent, PageRequest};
use incident_console::console::worker::{self, WorkerHandle, WorkerTarget};
use incident_console::core::orders::OrderSort;
use incident_console::core::orders::filter::parse_filter;
use incident_console::core::replica::{Fallback, ReplicaStatus};
use incident_console::store::config::{ConsoleConfig, SecretUrl};
use incident_console::store::connect::ConnectSettings;
use sqlx::Connection;
use uuid::Uuid;

fn settings(url: String) -> ConnectSettings {
    ConnectSettings {
        url,
        is_sandbox: false,
        operator: "replica-test".into(),
        application_name: "incident-console-test".into(),
        statement_timeout: Duration::from_secs(60),
        lock_timeout: Duration::from_secs(10),
        pooling: Default::default(),
    }
}

/// The console's worker on `primary`, reading off `standby`.
fn worker_with_standby(primary: &PrivateServer, standby: &PrivateServer, max_lag: Duration) -> WorkerHandle {
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig {
        refresh: hour,
        audit: hour,
        replica_url: Some(SecretUrl(standby.url())),
        replica_max_lag: max_lag,
        ..ConsoleConfig::default()
    };
    worker::spawn(WorkerTarget::Url(settings(primary.url())), config)
}

/// The worker's events, with the last standby status seen kept aside.
struct Events {
    h: WorkerHandle,
    replica: Vec<ReplicaStatus>,
}

impl Events {
    async fn next(&mut self, what: &str, within: Duration) -> DbEvent {
        match tokio::time::timeout(within, self.h.events.recv()).await {
            Ok(Some(DbEvent::Connection(ConnState::Down { error, .. }))) => panic!("down waiting for {what}: {error}"),
            Ok(Some(ev)) => {
                if let DbEvent::Replica(s) = &ev {
                    self.replica.push(s.clone());
                }
                ev
            }
            Ok(None) => panic!("the worker stopped"),
            Err(_) => panic!("no {what} within {within:?}; standby statuses: {:?}", self.replica),
        }
    }

    /// Waits for a standby status that `ok` accepts.
    async fn replica_until(
        &mut self,
        what: &str,
        within: Duration,
        ok: impl Fn(&ReplicaStatus) -> bool,
    ) -> ReplicaStatus {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let DbEvent::Replica(s) = self.next(what, left).await
                && ok(&s)
            {
                return s;
            }
        }
    }

    async fn up(&mut self) {
        while !matches!(
            self.next("the connection", Duration::from_secs(30)).await,
            DbEvent::Connection(ConnState::Up { .. })
        ) {}
    }

    /// The status of `order` in the orders list, as the worker reads it.
    async fn listed_status(&mut self, id: u64, order: Uuid) -> String {
        let query = parse_filter(&order.to_string()).expect("filter");
        self.h
            .commands
            .send(Command::LoadOrders { id, query, sort: OrderSort::default(), page: PageRequest::First, limit: 10 })
            .expect("send");
        loop {
            match self.next("the orders page", Duration::from_secs(20)).await {
                DbEvent::Orders { id: got, rows, .. } if got == id => {
                    let row = rows.iter().find(|r| r.id == order).expect("the order is listed");
                    return row.status.clone();
                }
                DbEvent::Failed { id: got, error } if got == id => panic!("the orders page failed: {error}"),
                _ => {}
            }
        }
    }

    /// Rollbacks in the dashboard's last hour, from the next dashboard the worker reads.
    async fn dashboard_rollbacks(&mut self) -> u64 {
        self.h.commands.send(Command::RefreshDashboard).expect("send");
        loop {
            if let DbEvent::Dashboard(d) = self.next("the dashboard", Duration::from_secs(20)).await {
                return d.per_minute.iter().sum();
            }
        }
    }

    async fn precheck(&mut self, id: u64, order: Uuid, user: Uuid) -> incident_console::core::contract::Precheck {
        self.h.commands.send(Command::Precheck { id, order, user }).expect("send");
        loop {
            if let DbEvent::Precheck { id: got, result, .. } = self.next("the pre-check", Duration::from_secs(20)).await
                && got == id
            {
                return result.expect("pre-check");
            }
        }
    }
}

async fn burst_order(server: &PrivateServer) -> (Uuid, Uuid) {
    let mut c = server.conn().await;
    let pair = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE status = 'executed' AND {BURST_SQL} ORDER BY created_at, id LIMIT 1"
    )))
    .fetch_one(&mut c)
    .await
    .expect("a burst order");
    let _ = c.close().await;
    pair
}

#[tokio::test]
async fn the_orders_list_reads_the_standby_while_a_precheck_reads_the_primary() {
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    eprintln!("standby built in {:?}", standby.started_in);
    let (order, user) = burst_order(&primary).await;
    let mut ev = Events { h: worker_with_standby(&primary, &standby, Duration::from_secs(120)), replica: Vec::new() };
    ev.up().await;
    ev.replica_until("the standby in use", Duration::from_secs(20), ReplicaStatus::in_use).await;
    assert_eq!(ev.listed_status(1, order).await, "executed");

    standby.pause_replay().await;
    // The worker rolls the order back on the primary, as the console does.
    let baseline = ev.precheck(2, order, user).await.baseline.expect("baseline");
    ev.h.commands
        .send(Command::Rollback {
            id: 3,
            order,
            user,
            reason: "duplicate execution".into(),
            baseline,
            group: false,
            operation: Uuid::new_v4(),
            waive_journal: false,
        })
        .expect("send");
    loop {
        if let DbEvent::Rollback { id: 3, result } = ev.next("the rollback", Duration::from_secs(30)).await {
            let r = result.expect("rolled back");
            assert!(r.postcheck.as_ref().is_some_and(|p| p.successful), "post-check passed: {r:?}");
            break;
        }
    }
    // The standby, paused, still shows the order executed: the list reads it ...
    ev.replica_until("the standby in use while paused", Duration::from_secs(10), |s| {
        matches!(s, ReplicaStatus::InUse { paused: true, .. })
    })
    .await;
    assert_eq!(ev.listed_status(4, order).await, "executed", "the orders list reads the (paused) standby");
    // ... while the pre-check of the same order reads the primary, where it is rolled back.
    let fresh = ev.precheck(5, order, user).await;
    assert!(!fresh.ready, "a pre-check never reads the lagging copy: {fresh:?}");
    assert_eq!(fresh.refusal().0, "already_rolled_back");

    // The dashboard reads the standby too: no rollback in its last hour yet.
    assert_eq!(ev.dashboard_rollbacks().await, 0, "the dashboard reads the (paused) standby");
    ev.h.commands.send(Command::BlastRadius { id: 7 }).expect("send");
    loop {
        if let DbEvent::BlastRadius { id: 7, result } = ev.next("the blast radius", Duration::from_secs(20)).await {
            assert!(result.is_ok_and(|b| !b.per_minute.is_empty()), "the blast radius is read on the standby");
            break;
        }
    }
    assert!(ev.replica.last().is_some_and(ReplicaStatus::in_use), "no read failed over: {:?}", ev.replica);

    standby.resume_replay().await;
    standby.wait_replayed(&primary).await;
    assert_eq!(ev.listed_status(6, order).await, "rolled_back", "replayed, the standby shows the rollback");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ev.dashboard_rollbacks().await != 1 {
        assert!(Instant::now() < deadline, "the dashboard shows the replayed rollback");
    }
    let _ = ev.h.commands.send(Command::Shutdown);
}

#[tokio::test]
async fn the_lag_rises_while_replay_is_paused_and_falls_after_it_resumes() {
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    let max_lag = Duration::from_secs(3);
    let mut ev = Events { h: worker_with_standby(&primary, &standby, max_lag), replica: Vec::new() };
    ev.up().await;
    ev.replica_until("the standby in use", Duration::from_secs(20), |s| {
        matches!(s, ReplicaStatus::InUse { lag_ms: 0, .. })
    })
    .await;
    standby.pause_replay().await;
    let mut c = primary.conn().await;
    sqlx::raw_sql("CREATE TABLE lag_probe (n int); INSERT INTO lag_probe VALUES (1)")
        .execute(&mut c)
        .await
        .expect("write");
    // Paused: the lag grows past a second while the standby is still used, then past the
    // limit, and the reads go back to the primary.
    let rising = ev
        .replica_until(
            "a lag of a second",
            Duration::from_secs(10),
            |s| matches!(s, ReplicaStatus::InUse { lag_ms, paused: true } if *lag_ms >= 1000),
        )
        .await;
    let over = ev
        .replica_until(
            "the lag past the limit",
            Duration::from_secs(10),
            |s| matches!(s, ReplicaStatus::Fallback(Fallback::Lagging { lag_ms: Some(ms), .. }) if *ms > 3000),
        )
        .await;
    assert!(over.header_text().contains("reads on primary"), "{}", over.header_text());
    let lags: Vec<u64> = ev
        .replica
        .iter()
        .filter_map(|s| match s {
            ReplicaStatus::InUse { lag_ms, paused: true } if *lag_ms > 0 => Some(*lag_ms),
            ReplicaStatus::Fallback(Fallback::Lagging { lag_ms: Some(ms), .. }) => Some(*ms),
            _ => None,
        })
        .collect();
    assert!(lags.windows(2).all(|w| w[0] <= w[1]), "the lag only rises while paused: {lags:?}");
    eprintln!("paused: {} then {}", rising.header_text(), over.header_text());
    // Resumed: caught up at once, the standby is read again.
    standby.resume_replay().await;
    let back = ev
        .replica_until(
            "the lag back to nothing",
            Duration::from_secs(10),
            |s| matches!(s, ReplicaStatus::InUse { lag_ms, paused: false } if *lag_ms < 1000),
        )
        .await;
    eprintln!("resumed: {}", back.header_text());
    let _ = c.close().await;
    let _ = ev.h.commands.send(Command::Shutdown);
}

#[tokio::test]
async fn a_dead_standby_sends_the_reads_to_the_primary_and_the_console_goes_on() {
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    let (order, _) = burst_order(&primary).await;
    let mut ev = Events { h: worker_with_standby(&primary, &standby, Duration::from_secs(5)), replica: Vec::new() };
    ev.up().await;
    ev.replica_until("the standby in use", Duration::from_secs(20), ReplicaStatus::in_use).await;
    assert_eq!(ev.listed_status(1, order).await, "executed");
    standby.kill9();
    // The next read may be the one that finds it dead: it is answered from the primary.
    let started = Instant::now();
    assert_eq!(ev.listed_status(2, order).await, "executed");
    assert!(started.elapsed() < Duration::from_secs(5), "answered from the primary in {:?}", started.elapsed());
    let down = ev
        .replica_until("the fallback", Duration::from_secs(5), |s| {
            matches!(s, ReplicaStatus::Fallback(Fallback::Unreachable(_)))
        })
        .await;
    let text = format!("{} {down:?}", down.header_text());
    assert!(text.contains("STANDBY UNREACHABLE: reads on primary"), "{text}");
    assert!(!text.contains(standby.password()), "the standby's password is never shown: {text}");
    // The dashboard and the list go on, from the primary.
    assert_eq!(ev.listed_status(3, order).await, "executed");
    ev.h.commands.send(Command::RefreshDashboard).expect("send");
    while !matches!(ev.next("the dashboard", Duration::from_secs(20)).await, DbEvent::Dashboard(_)) {}
    let _ = ev.h.commands.send(Command::Shutdown);
}

#[tokio::test]
async fn audit_full_on_the_standby_finds_what_the_primary_finds_and_never_prints_the_password() {
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    // A violation on the primary, just before the audit: the standby must have replayed it.
    let mut c = primary.conn().await;
    let user: Uuid =
        sqlx::query_scalar("SELECT id FROM profiles ORDER BY id LIMIT 1").fetch_one(&mut c).await.expect("x");
    sqlx::query("UPDATE profiles SET balance = balance + 1 WHERE id = $1").bind(user).execute(&mut c).await.expect("x");
    let _ = c.close().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: Vec<String>| {
        let mut cmd = console_in(dir.path(), "replica-test");
        cmd.args(args);
        run_cmd(cmd, None)
    };
    let on_standby = run(vec![
        "--database-url".into(),
        primary.url(),
        "--replica-url".into(),
        standby.url(),
        "audit".into(),
        "--full".into(),
        "--json".into(),
    ])
    .await;
    on_standby.code(1).clean();
    let on_primary =
        run(vec!["--database-url".into(), primary.url(), "audit".into(), "--full".into(), "--json".into()]).await;
    on_primary.code(1).clean();
    let (s, p) = (on_standby.json(), on_primary.json());
    assert_eq!(s["read_from"], "standby", "{s}");
    assert_eq!(p["read_from"], "primary", "{p}");
    assert!(s["violations"].as_array().is_some_and(|v| !v.is_empty()), "the violation is found: {s}");
    assert_eq!(s["violations"], p["violations"], "the standby's audit is the primary's");

    // A standby that is gone: the primary audits, and the note names no password.
    drop(standby);
    let gone = run(vec![
        "--database-url".into(),
        primary.url(),
        "--replica-url".into(),
        primary.url().replace("faults-", "gone-"),
        "audit".into(),
        "--full".into(),
        "--json".into(),
    ])
    .await;
    gone.code(1).clean().complains("Not auditing on the standby");
    assert_eq!(gone.json()["read_from"], "primary");
    assert!(!gone.stderr.contains(primary.password()), "{}", gone.stderr);
}

#[tokio::test]
async fn the_replica_url_in_the_config_file_is_used_and_its_password_never_printed() {
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.toml"),
        format!("replica_url = \"{}\"\nreplica_max_lag = \"10s\"\n", standby.url()),
    )
    .expect("config");
    let mut cmd = console_in(dir.path(), "replica-test");
    cmd.args(["--database-url", &primary.url(), "audit", "--full", "--json"]);
    let out = run_cmd(cmd, None).await;
    out.code(0).clean();
    assert_eq!(out.json()["read_from"], "standby", "{}", out.stdout);
    // `config check` shows the standby without its password.
    let mut cmd = console_in(dir.path(), "replica-test");
    cmd.args(["config", "check"]);
    let out = run_cmd(cmd, None).await;
    out.code(0).clean().says("replica: postgresql:///book?host=");
    let mut cmd = console_in(dir.path(), "replica-test");
    cmd.args(["config", "check", "--json"]);
    let out = run_cmd(cmd, None).await;
    out.code(0).clean();
    assert_eq!(out.json()["replica_max_lag_ms"], 10_000);
    let _ = standby;
}
