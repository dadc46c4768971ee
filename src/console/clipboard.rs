//! Putting text where the person pastes from, and saying where it went: inside tmux, tmux's
//! paste buffer (and from it the outer terminal's clipboard), which tmux confirms; when that
//! fails, OSC 52 plain and wrapped for tmux's passthrough, which may or may not arrive.
//! Outside tmux, OSC 52, which the terminal may or may not honour.

use crate::core::comms;

/// Where a copy's terminal sequence goes (the terminal, or a test's buffer).
pub type ClipboardSink = Box<dyn FnMut(&str) + Send>;

/// Copies `text`; `sink` takes the OSC 52 sequences. Returns where it went, for the footer.
pub fn put(text: &str, in_tmux: bool, sink: &mut ClipboardSink) -> String {
    if !in_tmux {
        sink(&comms::osc52(text));
        return "clipboard (OSC 52)".into();
    }
    match crate::store::clipboard::tmux_load_buffer(text) {
        Ok(()) => "tmux paste buffer (prefix ] pastes it)".into(),
        Err(why) => {
            sink(&comms::osc52(text));
            sink(&comms::osc52_tmux(text));
            format!("OSC 52 only, tmux's buffer refused it ({why})")
        }
    }
}

/// The sink that writes the sequences to this process's terminal.
pub fn terminal_sink() -> ClipboardSink {
    Box::new(|sequence: &str| {
        let mut out = std::io::stdout();
        let _ = std::io::Write::write_all(&mut out, sequence.as_bytes());
        let _ = std::io::Write::flush(&mut out);
    })
}

/// Whether this process runs inside tmux.
pub fn in_tmux() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}
