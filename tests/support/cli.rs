//! Running the real `incident-console` binary: a builder with a predictable environment,
//! and what one run left behind (exit code, stdout, stderr) with the checks the tests make.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The test database's password: no output may ever show it.
pub const PASSWORD: &str = "s3cretpw";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_incident-console");

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Out {
    /// Its exit code.
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
    /// The arguments, for messages.
    pub what: String,
}

impl Out {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code of `{}`\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout of `{}` is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    /// No panic report, backtrace hint or password anywhere in the output.
    pub fn clean(&self) -> &Self {
        for text in [&self.stdout, &self.stderr] {
            for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "Location:", PASSWORD] {
                assert!(!text.contains(bad), "`{}` printed {bad:?}:\n{text}", self.what);
            }
        }
        self
    }

    /// Stdout contains `needle`.
    pub fn says(&self, needle: &str) -> &Self {
        assert!(self.stdout.contains(needle), "stdout of `{}` lacks {needle:?}:\n{}", self.what, self.stdout);
        self
    }

    /// Stderr contains `needle`.
    pub fn complains(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "stderr of `{}` lacks {needle:?}:\n{}", self.what, self.stderr);
        self
    }
}

/// The binary with a predictable environment: no DATABASE_URL, no server binaries or
/// sandbox of the user's, its incidents and config under `dir` (a config file that does
/// not exist, so its `templates/` hold overrides), a fixed operator name.
pub fn console_in(dir: &Path, operator: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env("INCIDENT_CONSOLE_DATA_DIR", dir)
        .env("INCIDENT_CONSOLE_CONFIG", dir.join("config.toml"))
        .env_remove("DATABASE_URL")
        .env_remove("INCIDENT_PG_BINDIR")
        .env_remove("INCIDENT_CONSOLE_SANDBOX_DIR")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("INCIDENT_OPERATOR", operator)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    c
}

/// Runs `cmd` to its end, with `input` on stdin (else none).
pub async fn run_cmd(mut cmd: tokio::process::Command, input: Option<&str>) -> Out {
    let what = format!("{:?}", cmd.as_std().get_args().collect::<Vec<_>>());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn incident-console");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write stdin");
        drop(stdin);
    }
    let out = child.wait_with_output().await.expect("wait for incident-console");
    Out {
        code: out.status.code().expect("exited (not killed by a signal)"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}
