//! The deployed service rolled back and proved: the configured commands run (directly, or
//! by `sh -c` only when the config asks), each in a process group of its own with stdin
//! closed and its output captured, killed with everything it started at its timeout; the
//! version polled until it is the expected one or `settle` has passed; the probe run; the
//! verdict by `core::service::judge`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::core::error::{Error, Result};
use crate::core::service::{
    CommandRun, CommandSpec, Observed, Redactor, ServiceConfig, ServiceRollback, VersionRead, check_version, judge,
    shown_output,
};

/// How much of each stream is kept in memory; the rest is read and counted, so a chatty
/// command never blocks on a full pipe.
const CAPTURE: usize = 64 * 1024;
/// How often the version is read while waiting for the expected one.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long the output is still read after the command exited (a process it left behind
/// may hold the pipe open).
const DRAIN: Duration = Duration::from_secs(1);

/// Ends the command's whole process group if it is dropped before the command was waited
/// for (a cancelled rollback must not leave the command running).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the process group the command
            // leads; it has not been reaped yet, so the group id still names it.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a stream to its end, keeping the first `CAPTURE` bytes; returns them and how many
/// more there were.
async fn capture(stream: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, usize) {
    let Some(mut s) = stream else { return (Vec::new(), 0) };
    let mut kept = Vec::new();
    let mut dropped = 0;
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = CAPTURE.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += n - room;
            }
        }
    }
    (kept, dropped)
}

/// Runs one command to its end or its timeout. Never fails: a command that cannot start,
/// exits non-zero or times out is a `CommandRun` that says so. Returns the run and its raw
/// stdout (for the version).
pub async fn run_command(
    role: &str,
    spec: &CommandSpec,
    version: Option<&str>,
    redactor: &Redactor,
) -> (CommandRun, Vec<u8>) {
    let (program, args) = spec.invocation(version);
    let mut run = CommandRun {
        role: role.to_string(),
        argv_shown: spec.shown(version, redactor),
        exit_code: None,
        timed_out: false,
        timeout_ms: u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
        error: None,
        output: String::new(),
        elapsed_ms: 0,
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // A group of its own: at the timeout everything it started is killed with it.
        .process_group(0);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("could not start {}: {e}", redactor.shown_line(&program)));
            return (run, Vec::new());
        }
    };
    let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let out = tokio::spawn(capture(child.stdout.take()));
    let err = tokio::spawn(capture(child.stderr.take()));
    match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(Ok(status)) => {
            guard.0 = None;
            run.exit_code = status.code();
            if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
                run.error = Some(format!("was ended by signal {sig}"));
            }
        }
        Ok(Err(e)) => {
            guard.kill();
            run.error = Some(format!("could not be waited for: {e}"));
            let _ = child.wait().await;
        }
        Err(_) => {
            guard.kill();
            let _ = child.kill().await;
            run.timed_out = true;
        }
    }
    run.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let drained = |task: tokio::task::JoinHandle<(Vec<u8>, usize)>| {
        let abort = task.abort_handle();
        async move {
            match tokio::time::timeout(DRAIN, task).await {
                Ok(Ok(v)) => (v, false),
                Ok(Err(_)) => ((Vec::new(), 0), false),
                Err(_) => {
                    abort.abort();
                    ((Vec::new(), 0), true)
                }
            }
        }
    };
    let ((stdout, d1), open1) = drained(out).await;
    let ((stderr, d2), open2) = drained(err).await;
    run.output = shown_output(&stdout, &stderr, d1 + d2, redactor);
    if open1 || open2 {
        run.output.push_str("\n… (a process it started still holds its output open; not waited for)");
    }
    (run, stdout)
}

/// The version a successful version command printed: its stdout, trimmed; none when it
/// failed or printed nothing.
fn version_of(run: &CommandRun, stdout: &[u8]) -> Option<String> {
    let v = String::from_utf8_lossy(stdout).trim().to_string();
    (run.succeeded() && !v.is_empty()).then_some(v)
}

/// Reads the running version with the configured command.
pub async fn read_version(cfg: &ServiceConfig) -> Result<VersionRead> {
    let redactor = Redactor::new(&cfg.redact);
    let (run, stdout) = run_command("version", &cfg.version, None, &redactor).await;
    let version = version_of(&run, &stdout).map(|v| redactor.shown_line(&v));
    Ok(VersionRead { run, version })
}

/// Rolls the service back to `to_version` and judges it: the version before, the rollback
/// command, the version polled every half second until it is `to_version` or `settle` has
/// passed, then the probe (only once the version is right). `progress` hears each step.
/// An error only for a version that cannot be asked for; everything else is the verdict.
pub async fn rollback_service(
    cfg: &ServiceConfig,
    to_version: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ServiceRollback> {
    let expected = check_version(to_version).map_err(|e| Error::BadInput(format!("--to: {e}")))?.to_string();
    let redactor = Redactor::new(&cfg.redact);
    let shown = |v: &str| redactor.shown_line(v);
    let started = Instant::now();
    let mut commands = Vec::new();

    progress(&format!("Reading the version: {}", cfg.version.shown(Some(&expected), &redactor)));
    let (run, stdout) = run_command("version", &cfg.version, Some(&expected), &redactor).await;
    let before = version_of(&run, &stdout);
    progress(&format!("  {} ({})", before.as_deref().map_or("not read".into(), shown), run.ending()));
    commands.push(run);

    progress(&format!("Rolling back: {}", cfg.rollback.shown(Some(&expected), &redactor)));
    let (rollback, _) = run_command("rollback", &cfg.rollback, Some(&expected), &redactor).await;
    progress(&format!("  {} in {} ms", rollback.ending(), rollback.elapsed_ms));
    let rollback_ok = rollback.succeeded();
    commands.push(rollback);

    // Poll for the expected version; after a failed rollback command, read it once.
    if rollback_ok {
        progress(&format!(
            "Waiting for \"{}\" (up to {})",
            shown(&expected),
            crate::core::service::seconds(cfg.settle)
        ));
    }
    let poll_start = Instant::now();
    let mut reads = 0u32;
    let (after, after_run) = loop {
        let (run, stdout) = run_command("version", &cfg.version, Some(&expected), &redactor).await;
        reads += 1;
        let v = version_of(&run, &stdout);
        let done = v.as_deref() == Some(expected.as_str());
        let elapsed = poll_start.elapsed();
        if done || !rollback_ok || elapsed >= cfg.settle {
            break (v, run);
        }
        tokio::time::sleep(POLL_EVERY.min(cfg.settle - elapsed)).await;
    };
    let waited = poll_start.elapsed();
    progress(&format!("  the version is {}", after.as_deref().map_or("not read".into(), shown)));
    commands.push(after_run);

    let mut probe = None;
    if let (Some(spec), true) = (&cfg.probe, after.as_deref() == Some(expected.as_str())) {
        progress(&format!("Probing: {}", spec.shown(Some(&expected), &redactor)));
        let (run, _) = run_command("probe", spec, Some(&expected), &redactor).await;
        progress(&format!("  {}", run.ending()));
        probe = Some(run);
    }

    let observed = Observed {
        expected: &expected,
        before: before.as_deref(),
        rollback: &commands[1],
        after: after.as_deref(),
        after_read: commands.last(),
        waited,
        probe: probe.as_ref(),
        probe_configured: cfg.probe.is_some(),
    };
    let (passed, verdict) = judge(&observed, &redactor);
    Ok(ServiceRollback {
        from_version: before.as_deref().map(shown),
        to_version_expected: shown(&expected),
        version_after: after.as_deref().map(shown),
        version_reads: reads,
        commands,
        probe,
        passed,
        verdict,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
