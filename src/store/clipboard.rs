//! Putting a copied message where a person pastes from, inside tmux: tmux's own paste
//! buffer, loaded with `tmux load-buffer -w -`, which also hands it to the outer
//! terminal's clipboard when tmux's `set-clipboard` allows. An application's OSC 52 is
//! dropped by tmux's default (`set-clipboard external`), and a passthrough-wrapped one
//! unless `allow-passthrough` is on; this path works with tmux as installed, and its exit
//! status says whether it did.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long tmux may take: a copy must never hang the console.
const LIMIT: Duration = Duration::from_secs(2);

/// Loads `text` into the paste buffer of the tmux server this process runs under (found by
/// tmux from `$TMUX`). `-w` (tmux 3.2+) also sets the outer terminal's clipboard; an older
/// tmux that refuses it is asked again without. The error says what tmux said.
pub fn tmux_load_buffer(text: &str) -> Result<(), String> {
    match load(text, true) {
        Err(e) if e.contains("unknown flag") || e.contains("usage") => load(text, false),
        other => other,
    }
}

fn load(text: &str, to_outer_terminal: bool) -> Result<(), String> {
    let mut cmd = Command::new("tmux");
    cmd.arg("load-buffer");
    if to_outer_terminal {
        cmd.arg("-w");
    }
    let mut child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tmux could not be started: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Dropped at the end of this block: tmux sees the end of the text.
        stdin.write_all(text.as_bytes()).map_err(|e| format!("tmux did not take the text: {e}"))?;
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut said = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut said);
                }
                let said = crate::core::sanitize::line(said.trim()).into_owned();
                return Err(if said.is_empty() { format!("tmux load-buffer ended with {status}") } else { said });
            }
            Ok(None) if started.elapsed() < LIMIT => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("tmux load-buffer gave no answer within {} s", LIMIT.as_secs()));
            }
            Err(e) => return Err(format!("tmux load-buffer: {e}")),
        }
    }
}
