//! The real console in tmux with a hot standby (`--replica-url`), made with `pg_basebackup`
//! from a private server (`PrivateServer::standby`): the header shows the standby's lag,
//! which rises while replay is paused and says the reads went back to the primary past
//! `--replica-max-lag`; after a resume it is back to nothing; a killed standby is said in
//! the header and the console goes on. The standby's password never reaches the screen.

use std::time::Duration;

use crate::support::faults::PrivateServer;
use crate::support::tmux::{Console, WAIT as T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_follows_the_standby_paused_resumed_and_killed() {
    let t0 = std::time::Instant::now();
    let primary = PrivateServer::start().await;
    let standby = primary.standby().await;
    println!("replica e2e: servers ready in {:?} (standby {:?})", t0.elapsed(), standby.started_in);
    let data = tempfile::tempdir().expect("a data directory");
    let c = Console::options()
        .env("INCIDENT_CONSOLE_DATA_DIR", data.path())
        .env("INCIDENT_CONSOLE_CONFIG", data.path().join("config.toml"))
        .open(&[
            "--database-url",
            &primary.url(),
            "--replica-url",
            &standby.url(),
            "--replica-max-lag",
            "2s",
            "--title",
            "standby drill",
        ]);
    let s = c.wait_for("standby lag 0.0 s", T).await;
    println!("replica e2e: header shows the lag {:?} after launch", c.opened.elapsed());
    assert!(s.contains("executed"), "the orders are listed:\n{s}");

    standby.pause_replay().await;
    let mut conn = primary.conn().await;
    sqlx::raw_sql("CREATE TABLE lag_probe (n int)").execute(&mut conn).await.expect("a write on the primary");
    c.wait_for("(replay paused)", T).await;
    c.wait_for("STANDBY LAG", T).await;
    let s = c.wait_for(": reads on primary", T).await;
    assert!(s.contains("> 2.0 s"), "the limit is said:\n{s}");

    println!("replica e2e: paused and past the limit at {:?}", t0.elapsed());
    standby.resume_replay().await;
    c.wait_until("the lag back to nothing", T, |s| s.contains("standby lag 0.0 s") && !s.contains("STANDBY")).await;

    standby.kill9();
    let killed = std::time::Instant::now();
    let s = c.wait_for("STANDBY UNREACHABLE: reads on primary", Duration::from_secs(10)).await;
    println!("replica e2e: killed standby said in the header after {:?}", killed.elapsed());
    assert!(!s.contains(standby.password()), "the password never reaches the screen:\n{s}");
    // The console goes on: the list is still there, and it quits cleanly.
    assert!(s.contains("executed"), "{s}");
    let _ = sqlx::Connection::close(conn).await;
    c.keys(&["q"]);
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
}
