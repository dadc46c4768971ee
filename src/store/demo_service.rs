//! The sandbox's deployed service: a small local HTTP process whose version a rollback
//! switches, so the service rollback is drilled and tested against something real.
//! `sandbox service run` serves it; `sandbox service version|deploy|probe` talk to it.
//!
//! Its state directory holds `address` (where it listens, written once it does),
//! `version` (the running version) and `broken` (versions whose probe fails, one a line).
//! `GET /version` answers the version, `POST /deploy?version=X` switches it, `GET /probe`
//! answers 200 "ok X", or 500 when X is listed in `broken`. HTTP/1.1 by hand, one request
//! per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::error::{Error, Result};
use crate::core::service::{CommandSpec, ServiceConfig};

/// The file in the state directory with the address the service listens on.
pub const ADDRESS_FILE: &str = "address";
/// The file in the state directory with the running version.
pub const VERSION_FILE: &str = "version";
/// The file in the state directory listing versions whose probe fails.
pub const BROKEN_FILE: &str = "broken";
/// How long one connection may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A request line or header longer than this is refused.
const LINE_MAX: usize = 8 * 1024;

/// The commands that roll the demo service back, read its version and probe it: this
/// binary's `sandbox service deploy|version|probe` on `state_dir`.
pub fn demo_service_config(exe: &Path, state_dir: &Path) -> ServiceConfig {
    let base = |action: &str| {
        vec![
            exe.display().to_string(),
            "sandbox".into(),
            "service".into(),
            action.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
        ]
    };
    let mut rollback = base("deploy");
    rollback.extend(["--version".to_string(), crate::core::service::PLACEHOLDER.to_string()]);
    // A local process answers at once: a short limit keeps a hung one from stalling a drill.
    let spec = |argv| CommandSpec { argv, shell: false, timeout: Duration::from_secs(20) };
    ServiceConfig {
        rollback: spec(rollback),
        version: spec(base("version")),
        probe: Some(spec(base("probe"))),
        settle: Duration::from_secs(10),
        redact: Vec::new(),
    }
}

/// Serves the demo service from `state_dir` on `listen` until the process ends. With
/// `version`, that version is deployed first; otherwise the state directory's is kept.
pub fn serve(state_dir: &Path, listen: &str, version: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(state_dir).map_err(|e| Error::file("create", state_dir, e))?;
    if let Some(v) = version {
        let v = crate::core::service::check_version(v).map_err(|e| Error::BadInput(format!("--version: {e}")))?;
        write_atomically(&state_dir.join(VERSION_FILE), &format!("{v}\n"))?;
    }
    let listener = TcpListener::bind(listen).map_err(|e| Error::BadInput(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::BadInput(format!("cannot listen on {listen}: {e}")))?;
    write_atomically(&state_dir.join(ADDRESS_FILE), &format!("{addr}\n"))?;
    eprintln!("demo service listening on http://{addr} (state in {})", state_dir.display());
    let dir = state_dir.to_path_buf();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let dir = dir.clone();
        // One thread per connection: a slow client cannot hold up the others.
        std::thread::spawn(move || {
            let _ = handle(stream, &dir);
        });
    }
    Ok(())
}

/// Writes a file whole or not at all (a reader never sees half a version).
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| Error::file("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file("write", path, e))
}

fn current_version(dir: &Path) -> Option<String> {
    let v = std::fs::read_to_string(dir.join(VERSION_FILE)).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn is_broken(dir: &Path, version: &str) -> bool {
    std::fs::read_to_string(dir.join(BROKEN_FILE)).is_ok_and(|t| t.lines().any(|l| l.trim() == version))
}

/// Reads one line of at most `LINE_MAX` bytes, without its line break.
fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut buf = Vec::new();
    r.take(LINE_MAX as u64 + 1).read_until(b'\n', &mut buf)?;
    if buf.len() > LINE_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn handle(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = read_line(&mut reader)?;
    // Headers are read and ignored; a body is not expected (Content-Length 0).
    for _ in 0..100 {
        if read_line(&mut reader)?.is_empty() {
            break;
        }
    }
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body) = match (method, path) {
        ("GET", "/version") => match current_version(dir) {
            Some(v) => (200, v),
            None => (500, "no version deployed".to_string()),
        },
        ("GET", "/probe") => match current_version(dir) {
            Some(v) if is_broken(dir, &v) => (500, format!("broken {v}")),
            Some(v) => (200, format!("ok {v}")),
            None => (500, "no version deployed".to_string()),
        },
        ("POST", "/deploy") => {
            let wanted = query.split('&').find_map(|kv| kv.strip_prefix("version=")).map(percent_decode);
            match wanted.as_deref().map(crate::core::service::check_version) {
                Some(Ok(v)) => match write_atomically(&dir.join(VERSION_FILE), &format!("{v}\n")) {
                    Ok(()) => (200, format!("deployed {v}")),
                    Err(e) => (500, e.to_string()),
                },
                Some(Err(e)) => (400, e),
                None => (400, "missing ?version=".to_string()),
            }
        }
        (_, "/version" | "/probe" | "/deploy") => (405, "method not allowed".to_string()),
        _ => (404, "not found".to_string()),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let body = format!("{body}\n");
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the demo service answered: its status code and body (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, trimmed.
    pub body: String,
}

/// Asks the demo service in `state_dir` (at the address it wrote) one request.
pub fn request(state_dir: &Path, method: &str, path: &str) -> Result<Answer> {
    let address_file: PathBuf = state_dir.join(ADDRESS_FILE);
    let text = std::fs::read_to_string(&address_file).map_err(|e| Error::file("read", &address_file, e))?;
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        Error::BadInput(format!("{} does not hold an address: is the demo service running?", address_file.display()))
    })?;
    let unreachable =
        |e: std::io::Error| Error::CheckFailed(format!("the demo service at {addr} does not answer: {e}"));
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(unreachable)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(unreachable)?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(unreachable)?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| {
            Error::CheckFailed(format!("the demo service at {addr} answered something that is not HTTP"))
        })?;
    Ok(Answer { status, body: body.trim().to_string() })
}

/// `POST /deploy?version=…` of the demo service.
pub fn deploy(state_dir: &Path, version: &str) -> Result<Answer> {
    request(state_dir, "POST", &format!("/deploy?version={}", percent_encode(version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_survive_the_query_string() {
        for v in ["v41", "app:1.2.3@sha256:ab", "a/b+c%d&e=f", "ünï"] {
            assert_eq!(percent_decode(&percent_encode(v)), v);
        }
    }

    #[test]
    fn the_demo_config_names_this_binary_and_the_directory() {
        let c = demo_service_config(Path::new("/bin/ic"), Path::new("/tmp/svc"));
        assert_eq!(c.rollback.argv.last().map(String::as_str), Some("{version}"));
        assert_eq!(c.version.argv[..4], ["/bin/ic", "sandbox", "service", "version"]);
        assert!(c.probe.is_some_and(|p| p.argv.contains(&"/tmp/svc".to_string())));
    }
}
