//! The deployed service's rollback against a real local process: the sandbox's demo
//! service (this binary's `sandbox service run`, an HTTP server whose version a deploy
//! switches) rolled back through `service rollback`, and configured commands that fail in
//! every way a real one can: a version that does not change, a hang, a failing probe, shell
//! syntax in arguments, secrets and control characters in their output.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cli::{BIN, Out, console_in, run_cmd};

/// A demo service process and its state directory; killed when dropped.
struct Demo {
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Demo {
    /// Starts the real demo service running `version` and waits until it answers.
    async fn start(version: &str) -> Demo {
        let dir = tempfile::tempdir().expect("state dir");
        let state = dir.path().join("svc");
        let child = tokio::process::Command::new(BIN)
            .args(["sandbox", "service", "run", "--state-dir"])
            .arg(&state)
            .args(["--version", version])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the demo service");
        let started = Instant::now();
        loop {
            let up = incident_console::store::demo_service::request(&state, "GET", "/version");
            if up.is_ok_and(|a| a.status == 200) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the demo service did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Demo { dir, _child: child }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("svc")
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    /// The binary's own command on this service, as TOML list items.
    fn demo_cmd(&self, action: &str) -> String {
        list(&[BIN, "sandbox", "service", action, "--state-dir", &self.state().display().to_string()])
    }

    /// What the service answers on GET /version now.
    fn version_now(&self) -> String {
        incident_console::store::demo_service::request(&self.state(), "GET", "/version")
            .map(|a| a.body)
            .unwrap_or_default()
    }
}

/// A TOML list of strings.
fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", quoted.join(", "))
}

/// Runs the binary with `home` as its config and data directory.
async fn run(home: &Path, args: &[&str]) -> Out {
    let mut c = console_in(home, "svc-tester");
    c.args(args);
    run_cmd(c, None).await
}

fn write_config(home: &Path, service: &str) {
    std::fs::write(home.join("config.toml"), format!("[service]\n{service}\n")).expect("write config.toml");
}

#[tokio::test]
async fn a_rollback_that_switches_the_version_passes_and_the_service_answers_it() {
    let demo = Demo::start("v42").await;
    let state = demo.state().display().to_string();
    let before = run(demo.home(), &["service", "--demo", &state, "status"]).await;
    before.code(0).clean().says("Running version: v42");

    let out = run(demo.home(), &["service", "rollback", "--demo", &state, "--to", "v41", "--json"]).await;
    let j = out.code(0).clean().json();
    assert_eq!(j["passed"], true, "{j:#}");
    assert_eq!(j["from_version"], "v42");
    assert_eq!(j["version_after"], "v41");
    assert_eq!(j["commands"][1]["role"], "rollback");
    assert_eq!(j["commands"][1]["exit_code"], 0);
    assert!(j["commands"][1]["output"].as_str().is_some_and(|o| o.contains("deployed v41")), "{j:#}");
    assert_eq!(j["probe"]["exit_code"], 0);
    assert_eq!(j["probe"]["output"], "ok v41");
    assert!(j["verdict"].as_str().is_some_and(|v| v.contains("it was \"v42\" before") && v.contains("probe passed")));

    // The service itself says so, asked over HTTP and through the CLI.
    assert_eq!(demo.version_now(), "v41");
    run(demo.home(), &["sandbox", "service", "version", "--state-dir", &state]).await.code(0).says("v41");

    // And in words: each command, how it ended, the verdict.
    let out = run(demo.home(), &["service", "rollback", "--demo", &state, "--to", "v40"]).await;
    out.code(0).clean().says("[rollback] $ ").says("exited 0").says("| deployed v40").says("PASSED: rolled back");
    assert!(out.stderr.contains("Rolling back:"), "progress on stderr: {}", out.stderr);
}

#[tokio::test]
async fn a_rollback_command_that_changes_nothing_fails_honestly() {
    let demo = Demo::start("v42").await;
    write_config(
        demo.home(),
        &format!("rollback = [\"true\"]\nversion = {}\nsettle = \"1s\"\n", demo.demo_cmd("version")),
    );
    let out = run(demo.home(), &["service", "rollback", "--to", "v41"]).await;
    out.code(1).clean().says("FAILED: the version is still \"v42\" after").says("(expected \"v41\")");

    let j = run(demo.home(), &["service", "rollback", "--to", "v41", "--json"]).await.code(1).json();
    assert_eq!(j["passed"], false);
    assert_eq!(j["commands"][1]["exit_code"], 0, "the rollback command itself exited 0");
    assert_eq!(j["version_after"], "v42");
    assert!(j["version_reads"].as_u64().is_some_and(|n| n >= 2), "polled for the settle time: {j:#}");
    assert_eq!(j["probe"], Value::Null);
    assert_eq!(demo.version_now(), "v42");
}

#[tokio::test]
async fn a_hung_rollback_is_killed_at_its_timeout_with_what_it_started() {
    let demo = Demo::start("v42").await;
    let pid_file = demo.home().join("bg.pid");
    // The command starts a background sleep of its own: the timeout must end both.
    let script = format!("sleep 30 & echo $! > '{}'; echo started; wait", pid_file.display());
    write_config(
        demo.home(),
        &format!(
            "rollback = {{ argv = {}, timeout = \"1s\" }}\nversion = {}\nsettle = \"1s\"\n",
            list(&["sh", "-c", &script]),
            demo.demo_cmd("version")
        ),
    );
    let started = Instant::now();
    let j = run(demo.home(), &["service", "rollback", "--to", "v41", "--json"]).await.code(1).json();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let rb = &j["commands"][1];
    assert_eq!(rb["timed_out"], true, "{j:#}");
    assert_eq!(rb["exit_code"], Value::Null);
    assert!(rb["elapsed_ms"].as_u64().is_some_and(|ms| (1000..5000).contains(&ms)), "{rb:#}");
    assert!(rb["output"].as_str().is_some_and(|o| o.contains("started")), "output before the kill is kept: {rb:#}");
    let verdict = j["verdict"].as_str().unwrap_or_default();
    assert!(verdict.starts_with("the rollback command timed out after 1 s and was killed"), "{verdict}");
    assert!(verdict.contains("\"v42\""), "{verdict}");

    // The background sleep went with it (its process group was killed).
    assert_gone(&pid_file).await;
}

/// The process whose pid `pid_file` holds ends (or is a zombie) within 5 s.
async fn assert_gone(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).expect("the script wrote its child's pid");
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(5);
    let gone = loop {
        let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
        let alive = status.lines().any(|l| l.starts_with("State:") && !l.contains("Z"));
        if !alive || Instant::now() > deadline {
            break !alive;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(gone, "the command's background process {} survived", pid.trim());
}

#[tokio::test]
async fn ctrl_c_stops_the_rollback_and_kills_its_command() {
    let demo = Demo::start("v42").await;
    let pid_file = demo.home().join("bg.pid");
    let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
    write_config(
        demo.home(),
        &format!("rollback = {}\nversion = {}\n", list(&["sh", "-c", &script]), demo.demo_cmd("version")),
    );
    let mut c = console_in(demo.home(), "svc-tester");
    c.args(["service", "rollback", "--to", "v41"]);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("start the rollback");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the rollback command did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().expect("pid") as libc::pid_t;
    // SAFETY: signals a child this test started and has not waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the rollback ended after Ctrl-C")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Ctrl-C: the service rollback was stopped"), "{stderr}");
    assert_gone(&pid_file).await;
    assert_eq!(demo.version_now(), "v42");
}

#[tokio::test]
async fn a_failing_probe_fails_the_rollback() {
    let demo = Demo::start("v42").await;
    std::fs::write(demo.state().join("broken"), "v41\n").expect("write broken");
    let state = demo.state().display().to_string();
    let out = run(demo.home(), &["service", "rollback", "--demo", &state, "--to", "v41", "--json"]).await;
    let j = out.code(1).clean().json();
    assert_eq!(j["passed"], false);
    assert_eq!(j["version_after"], "v41", "the version did change");
    assert_eq!(j["probe"]["exit_code"], 1);
    assert!(j["probe"]["output"].as_str().is_some_and(|o| o.contains("broken v41")), "{j:#}");
    let verdict = j["verdict"].as_str().unwrap_or_default();
    assert!(verdict.contains("the version is \"v41\" as expected") && verdict.ends_with("but the probe exited 1"));
}

#[tokio::test]
async fn arguments_reach_no_shell_unless_the_config_asks() {
    let demo = Demo::start("v42").await;
    let m = |n: &str| demo.home().join(n);
    let (m1, m2, m3) = (m("m1").display().to_string(), m("m2").display().to_string(), m("m3").display().to_string());
    let semicolon = format!("done; touch {m1}");
    let subst = format!("$(touch {m2})");
    let backticks = format!("`touch {m3}`");
    write_config(
        demo.home(),
        &format!(
            "rollback = {}\nversion = [\"echo\", \"v41\"]\nsettle = 0\n",
            list(&["echo", &semicolon, &subst, &backticks])
        ),
    );
    let j = run(demo.home(), &["service", "rollback", "--to", "v41", "--json"]).await.code(0).json();
    for marker in [&m1, &m2, &m3] {
        assert!(!Path::new(marker).exists(), "{marker} was created: a shell saw the arguments");
    }
    let output = j["commands"][1]["output"].as_str().unwrap_or_default();
    assert_eq!(output, format!("{semicolon} {subst} {backticks}"), "echo printed its arguments as given");

    // With shell = true the same text is shell syntax.
    write_config(
        demo.home(),
        &format!(
            "rollback = {}\nversion = [\"echo\", \"v41\"]\nsettle = 0\nshell = true\n",
            list(&["echo", &semicolon, &subst, &backticks])
        ),
    );
    run(demo.home(), &["service", "rollback", "--to", "v41"]).await.code(0);
    for marker in [&m1, &m2, &m3] {
        assert!(Path::new(marker).exists(), "{marker} was not created with shell = true");
    }

    // The version is one word to the shell, whatever it holds.
    let m4 = m("m4").display().to_string();
    let version = "v41$(touch${IFS}m4)";
    let home = demo.home().display().to_string();
    write_config(
        demo.home(),
        &format!(
            "rollback = {{ argv = [\"cd\", {}, \"&&\", \"echo\", \"{{version}}\"], shell = true }}\n\
             version = [\"echo\", \"{{version}}\"]\nsettle = 0\n",
            serde_json::to_string(&home).unwrap_or_default()
        ),
    );
    let j = run(demo.home(), &["service", "rollback", "--to", version, "--json"]).await.code(0).json();
    assert!(!Path::new(&m4).exists(), "the version was run as shell syntax");
    assert_eq!(j["commands"][1]["output"], version);
}

#[tokio::test]
async fn secrets_in_commands_and_their_output_are_never_shown() {
    let demo = Demo::start("v42").await;
    let noisy = "echo v41; echo postgres://svc:hunter2@db/orders >&2; echo password=hunter3 >&2; \
                 echo 'Authorization: Bearer hunter4' >&2; echo lit-hunter5 >&2";
    write_config(
        demo.home(),
        &format!(
            "rollback = {}\nversion = {}\nsettle = 0\nredact = [\"lit-hunter5\"]\n",
            list(&["echo", "--token", "hunter6", "https://deployer:hunter7@ci.internal/hook"]),
            list(&["sh", "-c", noisy])
        ),
    );
    for args in [&["service", "rollback", "--to", "v41"][..], &["service", "rollback", "--to", "v41", "--json"]] {
        let out = run(demo.home(), args).await;
        out.code(0);
        for secret in ["hunter2", "hunter3", "hunter4", "hunter5", "hunter6", "hunter7"] {
            assert!(!out.stdout.contains(secret), "{args:?} printed {secret}:\n{}", out.stdout);
            assert!(!out.stderr.contains(secret), "{args:?} printed {secret} on stderr:\n{}", out.stderr);
        }
        assert!(out.stdout.contains("postgres://svc:***@db/orders"), "{}", out.stdout);
        assert!(out.stdout.contains("Bearer ***"), "{}", out.stdout);
    }
    let out = run(demo.home(), &["service", "status"]).await;
    out.code(0).says("Running version: v41");
    assert!(!out.stdout.contains("hunter"), "{}", out.stdout);
}

#[tokio::test]
async fn control_characters_in_output_are_shown_escaped() {
    let demo = Demo::start("v42").await;
    write_config(
        demo.home(),
        &format!(
            "rollback = [\"printf\", \"a\\\\033[2Jb\\\\007\\\\rz\\\\n\"]\nversion = {}\nsettle = 0\n",
            list(&["printf", "v41\\033]0;title\\007"])
        ),
    );
    let out = run(demo.home(), &["service", "rollback", "--to", "v41"]).await;
    // The version printed holds an escape sequence, so it is not "v41".
    out.code(1);
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\x07'), "raw control characters printed");
    out.says("| a\\x1b[2Jb\\x07\\rz").says("v41\\x1b]0;title\\x07");
    let j = run(demo.home(), &["service", "rollback", "--to", "v41", "--json"]).await.code(1).json();
    assert_eq!(j["commands"][1]["output"], "a\\x1b[2Jb\\x07\\rz");
}

#[tokio::test]
async fn missing_config_and_programs_are_said() {
    let dir = tempfile::tempdir().expect("dir");
    run(dir.path(), &["service", "status"]).await.code(2).complains("has no [service] table");
    run(dir.path(), &["service", "rollback", "--to", "v 41", "--demo", "/nonexistent"]).await.code(2).complains("--to");
    write_config(dir.path(), "rollback = [\"true\"]\nversion = [\"/nonexistent/kubectl\"]\n");
    let out = run(dir.path(), &["service", "status"]).await;
    out.code(1).says("could not start /nonexistent/kubectl").says("could not be read");
    write_config(dir.path(), "rollback = \"kubectl rollout undo\"\nversion = [\"v\"]\n");
    run(dir.path(), &["service", "status"]).await.code(2).complains("[service] rollback: a list of arguments");
}
