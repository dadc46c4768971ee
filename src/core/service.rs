//! The deployed service's rollback, as a rule: the commands that roll it back, read its
//! running version and probe it (whatever runs it: Kubernetes, systemd, a PaaS CLI); what
//! they may show (secrets redacted, control characters escaped, output capped); and the
//! verdict, which passes only when the version read afterwards is the expected one and the
//! probe passed. Running the commands is `ops::service`.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::core::sanitize;

/// A command's time limit when the config does not give one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the version is polled for the expected one when the config does not say.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(30);
/// The placeholder an argument may hold for the version rolled back to.
pub const PLACEHOLDER: &str = "{version}";
/// How much of a command's output is shown (after redaction and escaping).
pub const OUTPUT_SHOWN: usize = 8 * 1024;
/// The longest version accepted from a person (`--to`).
pub const VERSION_MAX: usize = 128;
/// What a secret is replaced with.
const MASK: &str = "***";

/// One configured command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program and its arguments. `{version}` inside an argument is replaced by the
    /// version rolled back to, as text of that one argument.
    pub argv: Vec<String>,
    /// False (the default): `argv[0]` is run directly, no shell sees the arguments. True:
    /// the arguments joined by spaces are run by `sh -c` (the version is quoted for it).
    pub shell: bool,
    /// Killed (with every process it started in its process group) after this long.
    pub timeout: Duration,
}

/// How the deployed service is rolled back, read and probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Rolls the service back to `{version}` (or to its previous release).
    pub rollback: CommandSpec,
    /// Prints the running version on stdout.
    pub version: CommandSpec,
    /// Exits 0 when the service works (optional).
    pub probe: Option<CommandSpec>,
    /// How long the version is polled for the expected one after the rollback command.
    pub settle: Duration,
    /// Literal secrets never shown, beside the passwords and tokens recognised by form.
    pub redact: Vec<String>,
}

impl CommandSpec {
    /// A command run directly with the default timeout.
    pub fn new(argv: Vec<String>) -> Self {
        CommandSpec { argv, shell: false, timeout: DEFAULT_TIMEOUT }
    }

    /// The argument list with `{version}` replaced (quoted for the shell when `shell`).
    pub fn resolved(&self, version: Option<&str>) -> Vec<String> {
        let Some(v) = version else { return self.argv.clone() };
        let with = if self.shell { sh_quote(v) } else { v.to_string() };
        self.argv.iter().map(|a| a.replace(PLACEHOLDER, &with)).collect()
    }

    /// The program to start and its arguments: `argv` itself, or `sh -c "argv joined"`.
    pub fn invocation(&self, version: Option<&str>) -> (String, Vec<String>) {
        let mut argv = self.resolved(version);
        if self.shell {
            return ("sh".into(), vec!["-c".into(), argv.join(" ")]);
        }
        let program = if argv.is_empty() { String::new() } else { argv.remove(0) };
        (program, argv)
    }

    /// The command as a person may read it: one line, arguments quoted where a shell would
    /// need it, secrets redacted (also the value after a `--password`/`--token` flag),
    /// control characters escaped.
    pub fn shown(&self, version: Option<&str>, redactor: &Redactor) -> String {
        let argv = self.resolved(version);
        let text = if self.shell {
            format!("sh -c {}", sh_quote(&argv.join(" ")))
        } else {
            let mut parts = Vec::with_capacity(argv.len());
            let mut hide_next = false;
            for a in &argv {
                if std::mem::take(&mut hide_next) {
                    parts.push(MASK.to_string());
                    continue;
                }
                hide_next = is_secret_flag(a);
                parts.push(if needs_quotes(a) { sh_quote(a) } else { a.clone() });
            }
            parts.join(" ")
        };
        sanitize::line(&redactor.redact(&text)).into_owned()
    }
}

/// A flag whose value is the next argument and a secret (`--password`, `--token`, ...).
fn is_secret_flag(a: &str) -> bool {
    let a = a.to_ascii_lowercase();
    a.starts_with('-') && !a.contains('=') && SECRET_KEYS.iter().any(|k| a.ends_with(k))
}

fn needs_quotes(a: &str) -> bool {
    a.is_empty() || a.chars().any(|c| !(c.is_alphanumeric() || "-_./:=@%+,{}".contains(c)))
}

/// `s` as one word for `sh`: single-quoted, a single quote written as `'\''`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A version a person asks for (`--to`): not empty, at most 128 characters, no spaces,
/// control or invisible characters. It reaches commands as one argument (or quoted for
/// the shell), so nothing else is forbidden.
pub fn check_version(v: &str) -> Result<&str, String> {
    let t = v.trim();
    if t.is_empty() {
        return Err("the version is empty".into());
    }
    if t.chars().count() > VERSION_MAX {
        return Err(format!("the version is longer than {VERSION_MAX} characters"));
    }
    if t.chars().any(char::is_whitespace) {
        return Err("the version holds a space: it is one word".into());
    }
    if let Some(c) = t.chars().find(|&c| c.is_control() || sanitize::is_invisible(c)) {
        return Err(format!("the version holds a control or invisible character ({})", sanitize::line(&c.to_string())));
    }
    Ok(t)
}

/// Key names whose value is a secret in `key=value`, `key: value` and `--key value`.
const SECRET_KEYS: [&str; 8] = ["password", "passwd", "pwd", "token", "secret", "api_key", "apikey", "api-key"];
/// Authorization schemes kept before the redacted credentials.
const AUTH_SCHEMES: [&str; 5] = ["bearer", "basic", "token", "digest", "negotiate"];

/// Hides secrets in text: the password of a URL (`scheme://user:PASS@host`), the value of
/// `password=`, `token=`, `secret=`, `api_key=` (also with `:` and as a suffix, like
/// `PGPASSWORD=`), an `Authorization:` header's credentials, a `Bearer` token, and every
/// configured literal.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    literals: Vec<String>,
}

impl Redactor {
    /// A redactor that also hides these literal strings (empty ones are ignored).
    pub fn new(literals: &[String]) -> Self {
        let mut literals: Vec<String> = literals.iter().filter(|l| !l.is_empty()).cloned().collect();
        // Longest first, so a secret that contains another is hidden whole.
        literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
        Redactor { literals }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut ranges = Vec::new();
        for lit in &self.literals {
            ranges.extend(text.match_indices(lit.as_str()).map(|(i, m)| (i, i + m.len())));
        }
        url_passwords(text, &mut ranges);
        // ASCII lowercasing keeps every byte offset.
        let lower = text.to_ascii_lowercase();
        key_values(text, &lower, &mut ranges);
        authorizations(text, &lower, &mut ranges);
        if ranges.is_empty() {
            return text.to_string();
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in ranges {
            if end <= at {
                continue;
            }
            if start > at {
                out.push_str(&text[at..start]);
            } else if start < at {
                // Overlaps the previous secret: extend it.
                at = end;
                continue;
            }
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Redacted, then made safe for a terminal; line breaks kept.
    pub fn shown(&self, text: &str) -> String {
        sanitize::multiline(&self.redact(text))
    }

    /// Redacted, then made safe for one line.
    pub fn shown_line(&self, text: &str) -> String {
        sanitize::line(&self.redact(text)).into_owned()
    }
}

fn url_passwords(text: &str, ranges: &mut Vec<(usize, usize)>) {
    for (i, _) in text.match_indices("://") {
        let start = i + 3;
        let rest = &text[start..];
        let end = rest.find(|c: char| c.is_whitespace() || "/?#\"'<>`".contains(c)).unwrap_or(rest.len());
        let authority = &rest[..end];
        // The last '@' ends the user information: a password may hold '@'.
        let Some(at) = authority.rfind('@') else { continue };
        let Some(colon) = authority[..at].find(':') else { continue };
        if colon + 1 < at {
            ranges.push((start + colon + 1, start + at));
        }
    }
}

/// Index just past spaces and tabs from `i`.
fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

/// Whether the key at `k..j` ends a word that starts with `-` and is followed by a space:
/// a flag whose value is the next word.
fn is_flag_end(bytes: &[u8], k: usize, j: usize) -> bool {
    let mut w = k;
    while w > 0 && (bytes[w - 1].is_ascii_alphanumeric() || bytes[w - 1] == b'_' || bytes[w - 1] == b'-') {
        w -= 1;
    }
    bytes.get(w) == Some(&b'-') && bytes.get(j) == Some(&b' ')
}

fn key_values(text: &str, lower: &str, ranges: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    for key in SECRET_KEYS {
        for (k, _) in lower.match_indices(key) {
            let mut j = k + key.len();
            if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
                j += 1;
            }
            if is_flag_end(bytes, k, j) {
                // `--password VALUE`: the next word.
                let v = skip_blanks(bytes, j);
                let e = (v..bytes.len()).find(|&e| bytes[e].is_ascii_whitespace()).unwrap_or(bytes.len());
                if e > v {
                    ranges.push((v, e));
                }
                continue;
            }
            j = skip_blanks(bytes, j);
            if j >= bytes.len() || !(bytes[j] == b'=' || bytes[j] == b':') {
                continue;
            }
            j = skip_blanks(bytes, j + 1);
            let quote = (j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'')).then(|| bytes[j]);
            if quote.is_some() {
                j += 1;
            }
            let mut e = j;
            while e < bytes.len() {
                let b = bytes[e];
                let stop = match quote {
                    Some(q) => b == q || b == b'\n',
                    None => b.is_ascii_whitespace() || b"&,;\"')}]".contains(&b),
                };
                if stop {
                    break;
                }
                e += 1;
            }
            if e > j {
                ranges.push((j, e));
            }
        }
    }
}

fn authorizations(text: &str, lower: &str, ranges: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let to_line_end = |from: usize| {
        let mut e = from;
        while e < bytes.len() && !matches!(bytes[e], b'\n' | b'\r' | b'"' | b'\'') {
            e += 1;
        }
        e
    };
    for (k, m) in lower.match_indices("authorization") {
        let mut j = k + m.len();
        if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
            j += 1;
        }
        j = skip_blanks(bytes, j);
        if j >= bytes.len() || !(bytes[j] == b':' || bytes[j] == b'=') {
            continue;
        }
        j = skip_blanks(bytes, j + 1);
        if let Some(scheme) = AUTH_SCHEMES.iter().find(|s| lower[j..].starts_with(*s)) {
            let after = j + scheme.len();
            if after < bytes.len() && bytes[after] == b' ' {
                j = skip_blanks(bytes, after);
            }
        }
        let e = to_line_end(j);
        if e > j {
            ranges.push((j, e));
        }
    }
    // A bearer token anywhere else (`-H "X-Auth: Bearer …"`).
    for (k, m) in lower.match_indices("bearer ") {
        let j = skip_blanks(bytes, k + m.len());
        let mut e = j;
        while e < bytes.len() && !bytes[e].is_ascii_whitespace() && !matches!(bytes[e], b'"' | b'\'') {
            e += 1;
        }
        if e > j {
            ranges.push((j, e));
        }
    }
}

/// What a command printed, as it may be shown: redacted, escaped, at most `OUTPUT_SHOWN`
/// bytes, saying when some was cut. `stdout` and `stderr` are as captured; `dropped` is
/// how many bytes were not even captured.
pub fn shown_output(stdout: &[u8], stderr: &[u8], dropped: usize, redactor: &Redactor) -> String {
    let out = String::from_utf8_lossy(stdout);
    let err = String::from_utf8_lossy(stderr);
    let mut text = redactor.shown(out.trim_end());
    let err = redactor.shown(err.trim_end());
    if !err.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("[stderr] ");
        text.push_str(&err);
    }
    let mut cut = dropped;
    if text.len() > OUTPUT_SHOWN {
        let mut end = OUTPUT_SHOWN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        cut += text.len() - end;
        text.truncate(end);
    }
    if cut > 0 {
        let _ = write!(text, "\n… (output cut: {cut} more bytes not shown)");
    }
    text
}

/// One command as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRun {
    /// What it was for: `version`, `rollback`, `probe`.
    pub role: String,
    /// The command, redacted and escaped.
    pub argv_shown: String,
    /// Its exit code; none when it was killed, timed out or never started.
    pub exit_code: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Its time limit.
    pub timeout_ms: u64,
    /// Why there is no exit code when it is not a timeout: it could not start, or a
    /// signal ended it.
    pub error: Option<String>,
    /// What it printed (stdout, then stderr marked `[stderr]`): redacted, escaped, capped.
    pub output: String,
    /// How long it ran.
    pub elapsed_ms: u64,
}

impl CommandRun {
    /// It ran to its end and exited 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }

    /// How it ended, in words: "exited 0", "timed out after 60 s and was killed", ...
    pub fn ending(&self) -> String {
        if self.timed_out {
            return format!("timed out after {} and was killed", seconds(Duration::from_millis(self.timeout_ms)));
        }
        match (&self.error, self.exit_code) {
            (Some(e), _) => e.clone(),
            (None, Some(c)) => format!("exited {c}"),
            (None, None) => "ended without an exit code".into(),
        }
    }
}

/// A version read: the command as it ran and what it printed, when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRead {
    /// The version command.
    pub run: CommandRun,
    /// Its stdout, trimmed, redacted and escaped; none when it failed or printed nothing.
    pub version: Option<String>,
}

/// The service's rollback and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRollback {
    /// The version running before (shown form); none when it could not be read.
    pub from_version: Option<String>,
    /// The version asked for.
    pub to_version_expected: String,
    /// The version read last (shown form); none when it could not be read.
    pub version_after: Option<String>,
    /// How many times the version was read after the rollback command.
    pub version_reads: u32,
    /// The commands in order: the version before, the rollback, the last version read.
    pub commands: Vec<CommandRun>,
    /// The probe, when one is configured and the version was the expected one.
    pub probe: Option<CommandRun>,
    /// The rollback command exited 0, the version is the expected one, the probe passed.
    pub passed: bool,
    /// What happened, in one sentence.
    pub verdict: String,
    /// From the first command to the verdict.
    pub elapsed_ms: u64,
}

/// What the rollback observed, for the verdict. Versions are as printed, trimmed.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The version asked for.
    pub expected: &'a str,
    /// The version before the rollback command, if read.
    pub before: Option<&'a str>,
    /// The rollback command.
    pub rollback: &'a CommandRun,
    /// The last version read afterwards, if it could be.
    pub after: Option<&'a str>,
    /// The last version command, if one ran after the rollback.
    pub after_read: Option<&'a CommandRun>,
    /// How long the version was polled for.
    pub waited: Duration,
    /// The probe, if it ran.
    pub probe: Option<&'a CommandRun>,
    /// Whether a probe is configured.
    pub probe_configured: bool,
}

/// Passed, and the sentence that says why or why not. Passed only when the rollback command
/// exited 0, the version afterwards equals the expected one and the probe (if configured)
/// exited 0.
pub fn judge(o: &Observed<'_>, redactor: &Redactor) -> (bool, String) {
    let v = |s: &str| format!("\"{}\"", redactor.shown_line(s));
    let expected = v(o.expected);
    let now = match (o.after, o.after_read) {
        (Some(a), _) => format!("the version is {}", v(a)),
        (None, Some(r)) => format!("the version could not be read (the version command {})", r.ending()),
        (None, None) => "the version was not read".into(),
    };
    if !o.rollback.succeeded() {
        return (false, format!("the rollback command {}; {now} (expected {expected})", o.rollback.ending()));
    }
    let matches = o.after.is_some_and(|a| a.trim() == o.expected.trim());
    if !matches {
        let waited = seconds(o.waited);
        let sentence = match (o.after, o.before) {
            (Some(a), Some(b)) if a == b => {
                format!("the version is still {} after {waited} (expected {expected})", v(a))
            }
            (Some(_), Some(b)) => format!("{now} after {waited} (expected {expected}; it was {} before)", v(b)),
            _ => format!("{now} after {waited} (expected {expected})"),
        };
        return (false, sentence);
    }
    let already = match o.before {
        Some(b) if b.trim() == o.expected.trim() => format!(" (it was already {expected} before the rollback)"),
        Some(b) => format!(" (it was {} before)", v(b)),
        None => " (the version before could not be read)".into(),
    };
    match (o.probe, o.probe_configured) {
        (Some(p), _) if !p.succeeded() => {
            (false, format!("the version is {expected} as expected{already}, but the probe {}", p.ending()))
        }
        (Some(_), _) => (true, format!("rolled back: the version is {expected}{already} and the probe passed")),
        (None, true) => (false, format!("the version is {expected}{already}, but the probe did not run")),
        (None, false) => (true, format!("rolled back: the version is {expected}{already}; no probe is configured")),
    }
}

/// A duration for a sentence: "30 s", "1.5 s", "250 ms".
pub fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 < 100 {
        format!("{} s", ms / 1000)
    } else {
        format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
    }
}

/// A TOML configuration as it may leave the machine (the evidence bundle). Parsed and written
/// again, so comments (which may hold anything, an old password too) are dropped; the value
/// of every key named like a secret, the `[service] redact` literals wherever they occur
/// (and the list itself), the argument after a secret flag in a command list
/// (`["psql", "--password", "…"]`, which the text rules cannot see across TOML's quotes and
/// commas), and everything `Redactor` recognises are replaced by `***`. Text that does not
/// parse is left out whole: it cannot be redacted by its structure.
pub fn redact_toml(text: &str, literals: &[String]) -> String {
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else {
        return "# config.toml did not parse: left out, so that nothing in it leaves the machine\n".into();
    };
    let mut all = literals.to_vec();
    if let Some(toml::Value::Array(list)) = table.get("service").and_then(|s| s.get("redact")) {
        all.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let redactor = Redactor::new(&all);
    redact_table(&mut table, &redactor);
    let body = toml::to_string_pretty(&table).unwrap_or_default();
    format!("# config.toml: secrets replaced by {MASK}, comments left out\n{}", redactor.redact(&body))
}

/// A key whose value is a secret: named like one, or the list of literals to hide.
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "redact" || k.contains("authorization") || SECRET_KEYS.iter().any(|s| k.contains(s))
}

fn redact_table(t: &mut toml::Table, r: &Redactor) {
    for (k, v) in t.iter_mut() {
        redact_value(v, r, is_secret_key(k));
    }
}

fn redact_value(v: &mut toml::Value, r: &Redactor, secret: bool) {
    match v {
        toml::Value::String(s) if secret => *s = MASK.into(),
        toml::Value::String(s) => *s = r.redact(s),
        toml::Value::Array(items) => {
            let mut hide_next = false;
            for item in items.iter_mut() {
                let hide = std::mem::take(&mut hide_next) || secret;
                hide_next = item.as_str().is_some_and(is_secret_flag);
                if hide && !matches!(item, toml::Value::Table(_) | toml::Value::Array(_)) {
                    *item = toml::Value::String(MASK.into());
                } else {
                    redact_value(item, r, secret);
                }
            }
        }
        toml::Value::Table(t) => redact_table(t, r),
        // A number or a date as a password is still a password.
        other if secret => *other = toml::Value::String(MASK.into()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(&["literal-secret".to_string()])
    }

    #[test]
    fn passwords_in_urls_are_hidden() {
        let t = r().redact("connect postgres://svc:hunter2@db.internal:5432/orders ok");
        assert_eq!(t, "connect postgres://svc:***@db.internal:5432/orders ok");
        // A password holding '@' and ':' is hidden whole; a URL without one is untouched.
        assert_eq!(r().redact("https://u:p@ss:w@h/x"), "https://u:***@h/x");
        assert_eq!(r().redact("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(r().redact("ssh://git@host:22/repo"), "ssh://git@host:22/repo");
    }

    #[test]
    fn keys_with_secret_values_are_hidden() {
        let cases = [
            ("password=hunter2 next", "password=*** next"),
            ("PGPASSWORD=hunter2", "PGPASSWORD=***"),
            ("?user=a&token=abc123&x=1", "?user=a&token=***&x=1"),
            ("{\"password\": \"hun ter2\", \"n\": 1}", "{\"password\": \"***\", \"n\": 1}"),
            ("access_token: eyJabc.def", "access_token: ***"),
            ("api_key='k-1'", "api_key='***'"),
            ("tokens: 5", "tokens: 5"),
            ("password_file=/etc/x", "password_file=/etc/x"),
            ("run --token abc123 --db-password  p4ss -v", "run --token *** --db-password  *** -v"),
            ("a token here", "a token here"),
        ];
        for (input, want) in cases {
            assert_eq!(r().redact(input), want, "{input}");
        }
    }

    #[test]
    fn authorization_and_bearer_tokens_are_hidden() {
        assert_eq!(r().redact("Authorization: Bearer abc.def\nnext"), "Authorization: Bearer ***\nnext");
        assert_eq!(r().redact("authorization=Basic dXNlcjpwdw=="), "authorization=Basic ***");
        assert_eq!(r().redact("-H 'X-Auth: Bearer tok123' -v"), "-H 'X-Auth: Bearer ***' -v");
    }

    #[test]
    fn literals_are_hidden_longest_first() {
        let red = Redactor::new(&["abc".into(), "abcdef".into(), String::new()]);
        assert_eq!(red.redact("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(r().redact("say literal-secret twice: literal-secret"), "say *** twice: ***");
        assert_eq!(Redactor::default().redact("nothing here"), "nothing here");
    }

    #[test]
    fn shown_text_is_redacted_then_escaped() {
        assert_eq!(r().shown("a\x1b[2Jb\npassword=x\ty"), "a\\x1b[2Jb\npassword=***\\ty");
        assert_eq!(r().shown_line("l1\nl2"), "l1\\nl2");
    }

    #[test]
    fn arguments_are_replaced_whole_and_quoted_only_for_the_shell() {
        let c = CommandSpec::new(vec!["kubectl".into(), "--to-revision={version}".into()]);
        assert_eq!(c.invocation(Some("v41;rm")), ("kubectl".into(), vec!["--to-revision=v41;rm".to_string()]));
        let s = CommandSpec { shell: true, ..c };
        assert_eq!(
            s.invocation(Some("it's")),
            ("sh".into(), vec!["-c".into(), "kubectl --to-revision='it'\\''s'".into()])
        );
        assert_eq!(s.shown(Some("v1"), &r()), "sh -c 'kubectl --to-revision='\\''v1'\\'''");
    }

    #[test]
    fn a_command_is_shown_without_its_secrets() {
        let c = CommandSpec::new(vec![
            "deploy".into(),
            "--password".into(),
            "hunter2".into(),
            "--url=postgres://u:pw@h/db".into(),
            "two words".into(),
            "literal-secret".into(),
        ]);
        assert_eq!(c.shown(None, &r()), "deploy --password *** --url=postgres://u:***@h/db 'two words' ***");
    }

    #[test]
    fn versions_a_person_gives_are_checked() {
        assert_eq!(check_version(" v41 "), Ok("v41"));
        assert_eq!(check_version("registry/app:1.2.3@sha256:ab"), Ok("registry/app:1.2.3@sha256:ab"));
        for bad in ["", "  ", "v 41", "v41\x1b", "v\u{202e}1"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        assert!(check_version(&"x".repeat(VERSION_MAX + 1)).is_err());
    }

    #[test]
    fn output_is_capped_and_says_so() {
        let big = "y".repeat(OUTPUT_SHOWN + 100);
        let shown = shown_output(big.as_bytes(), b"", 5, &r());
        assert!(shown.ends_with("(output cut: 105 more bytes not shown)"), "{}", &shown[shown.len() - 60..]);
        assert_eq!(shown_output(b"out\n", b"warn: token=abc\n", 0, &r()), "out\n[stderr] warn: token=***");
        assert_eq!(shown_output(b"\xff\x07", b"", 0, &r()), "\u{fffd}\\x07");
    }

    fn run(role: &str, exit: Option<i32>, timed_out: bool) -> CommandRun {
        CommandRun {
            role: role.into(),
            argv_shown: role.into(),
            exit_code: exit,
            timed_out,
            timeout_ms: 60_000,
            error: None,
            output: String::new(),
            elapsed_ms: 5,
        }
    }

    #[test]
    fn the_verdict_passes_only_on_the_expected_version_and_a_passing_probe() {
        let ok = run("rollback", Some(0), false);
        let read = run("version", Some(0), false);
        let probe = run("probe", Some(0), false);
        let base = Observed {
            expected: "v41",
            before: Some("v42"),
            rollback: &ok,
            after: Some("v41"),
            after_read: Some(&read),
            waited: Duration::from_millis(1500),
            probe: Some(&probe),
            probe_configured: true,
        };
        let (passed, v) = judge(&base, &r());
        assert!(passed, "{v}");
        assert_eq!(v, "rolled back: the version is \"v41\" (it was \"v42\" before) and the probe passed");

        let (passed, v) =
            judge(&Observed { after: Some("v42"), waited: Duration::from_secs(30), probe: None, ..base }, &r());
        assert!(!passed);
        assert_eq!(v, "the version is still \"v42\" after 30 s (expected \"v41\")");

        let (passed, v) = judge(&Observed { after: Some("v43"), probe: None, ..base }, &r());
        assert!(!passed);
        assert!(v.contains("\"v43\"") && v.contains("it was \"v42\" before"), "{v}");

        let hung = run("rollback", None, true);
        let (passed, v) = judge(&Observed { rollback: &hung, after: Some("v42"), ..base }, &r());
        assert!(!passed);
        assert_eq!(
            v,
            "the rollback command timed out after 60 s and was killed; the version is \"v42\" (expected \"v41\")"
        );

        let bad_probe = run("probe", Some(22), false);
        let (passed, v) = judge(&Observed { probe: Some(&bad_probe), ..base }, &r());
        assert!(!passed);
        assert!(v.ends_with("but the probe exited 22"), "{v}");

        let (passed, v) = judge(&Observed { probe: None, ..base }, &r());
        assert!(!passed, "a configured probe that did not run is no pass: {v}");
        let (passed, v) = judge(&Observed { probe: None, probe_configured: false, ..base }, &r());
        assert!(passed, "{v}");

        let failed_read = run("version", Some(1), false);
        let (passed, v) = judge(&Observed { after: None, after_read: Some(&failed_read), ..base }, &r());
        assert!(!passed);
        assert!(v.contains("could not be read (the version command exited 1)"), "{v}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(seconds(Duration::from_millis(250)), "250 ms");
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(2040)), "2 s");
    }

    #[test]
    fn a_config_leaves_the_machine_without_its_secrets() {
        let text = r#"
# old password: hunter0 (a comment is never kept)
[service]
rollback = ["deploy", "--to={version}", "--password", "hunter1", "--db", "postgres://svc:hunter2@db/x"]
version = { argv = ["curl", "-H", "Authorization: Bearer hunter3", "https://h/v?token=hunter4"], shell = false }
probe = ["sh", "-c", "PGPASSWORD=hunter5 psql -c 'select 1'"]
redact = ["hunter6", "literal7"]

[dashboard]
refresh_seconds = 5

[extra]
api_key = 12345678
db_password = "hunter8"
note = "uses hunter6 and literal7"
"#;
        let out = redact_toml(text, &["hunter9".into()]);
        for secret in [
            "hunter0", "hunter1", "hunter2", "hunter3", "hunter4", "hunter5", "hunter6", "literal7", "12345678",
            "hunter8",
        ] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
        for kept in ["deploy", "--password", "postgres://svc:***@db/x", "refresh_seconds = 5", "Bearer ***"] {
            assert!(out.contains(kept), "{kept} not in:\n{out}");
        }
        assert!(toml::from_str::<toml::Table>(&out).is_ok(), "still TOML:\n{out}");
        assert!(!redact_toml("password = \"unterminated", &[]).contains("unterminated"));
    }
}
