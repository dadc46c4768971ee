//! The user's config directory: `config.toml` (key bindings, the intervals and thresholds
//! of the dashboard, contacts), `checklists.toml` and `templates/`. Everything has a
//! default; a file that does not parse is an error that says where.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::comms::{TemplateStore, UserTemplate};
use crate::core::contacts::{Contact, ESCALATIONS};
use crate::core::error::{Error, Result};
use crate::core::keys::{KeyAction, KeyError, KeyMap};
use crate::core::metrics::Thresholds;
use crate::core::service::{CommandSpec, ServiceConfig};
use crate::core::workflow::checklist::Checklist;
pub use crate::store::connect::SecretUrl;

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// A hot standby the reads that decide nothing go to (see `core::replica`).
    replica_url: Option<String>,
    /// How far behind the standby may be before those reads go back to the primary.
    replica_max_lag: Option<toml::Value>,
    #[serde(default)]
    keys: BTreeMap<KeyAction, Vec<String>>,
    #[serde(default)]
    dashboard: DashboardFile,
    #[serde(default)]
    contact: Vec<Contact>,
    #[serde(default)]
    messages: MessagesFile,
    service: Option<ServiceFile>,
    #[serde(default)]
    bundle: BundleFile,
}

/// `[bundle]`: the evidence bundle's signing key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    signing_key: Option<PathBuf>,
}

/// `[service]`: commands are read by hand (`service_config`) so a wrong shape gets a
/// message that names the setting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    rollback: Option<toml::Value>,
    version: Option<toml::Value>,
    probe: Option<toml::Value>,
    timeout: Option<toml::Value>,
    settle: Option<toml::Value>,
    shell: Option<bool>,
    #[serde(default)]
    redact: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesFile {
    #[serde(default)]
    public_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardFile {
    refresh_seconds: Option<u64>,
    audit_seconds: Option<u64>,
    metrics_window_hours: Option<u64>,
    burst_count: Option<u64>,
    burst_window_minutes: Option<i64>,
    long_rollback_minutes: Option<i64>,
}

/// Why a config file cannot be used; the message names the table and the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML of the expected shape (the parser's message, sanitized).
    #[error("{0}")]
    Syntax(String),
    /// A `[keys]` entry that cannot be used.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A `[dashboard]` setting out of its range.
    #[error("[dashboard] {setting} must be {rule}")]
    Dashboard {
        /// The setting.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// A contact for a role that does not exist (shown sanitized).
    #[error(
        "[[contact]] role \"{0}\": one of incident_commander, technical_lead, database_admin, \
         security_lead, communications_lead, documentation_lead, cto, ceo, legal, compliance"
    )]
    ContactRole(String),
    /// A contact without a name.
    #[error("[[contact]] {0}: the name is empty")]
    ContactName(String),
    /// Not a domain name (shown sanitized).
    #[error("[messages] public_domains: \"{0}\" is not a domain name (like example.com)")]
    Domain(String),
    /// A replica setting (`replica_url`, `replica_max_lag`) that cannot be used.
    #[error("{setting}: {problem}")]
    Replica {
        /// The setting.
        setting: &'static str,
        /// What is wrong, and what it must be.
        problem: String,
    },
    /// A `[service]` setting that cannot be used.
    #[error("[service] {setting}: {problem}")]
    Service {
        /// The setting.
        setting: &'static str,
        /// What is wrong, and what it must be.
        problem: String,
    },
}

/// The console's settings, defaults filled in.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Key bindings.
    pub keymap: KeyMap,
    /// How often the dashboard is refreshed when no notification arrives.
    pub refresh: Duration,
    /// How often the ledger audit runs in the background.
    pub audit: Duration,
    /// How far back the metrics count.
    pub metrics_window: chrono::Duration,
    /// Alert thresholds.
    pub thresholds: Thresholds,
    /// The response team's and the escalation contacts' names, phones and e-mails.
    pub contacts: Vec<Contact>,
    /// Host names customer messages may name (the company's public domains, lowercase);
    /// any other host name in a customer message is an internal detail.
    pub public_domains: Vec<String>,
    /// How the deployed service is rolled back, read and probed (`[service]`), if set.
    pub service: Option<ServiceConfig>,
    /// The file holding the ed25519 key that signs evidence bundles (`[bundle] signing_key`).
    pub bundle_signing_key: Option<PathBuf>,
    /// A hot standby for the reads that decide nothing (`replica_url`, or `--replica-url`,
    /// which wins); its password is never shown, not even by `Debug`.
    pub replica_url: Option<SecretUrl>,
    /// How far behind the standby may be before those reads go back to the primary.
    pub replica_max_lag: Duration,
}

/// How far behind a standby may be by default before reads go back to the primary.
pub const DEFAULT_REPLICA_MAX_LAG: Duration = Duration::from_secs(5);

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            keymap: KeyMap::default(),
            refresh: Duration::from_secs(10),
            audit: Duration::from_secs(60),
            metrics_window: chrono::Duration::hours(24),
            thresholds: Thresholds::default(),
            contacts: Vec::new(),
            public_domains: Vec::new(),
            service: None,
            bundle_signing_key: None,
            replica_url: None,
            replica_max_lag: DEFAULT_REPLICA_MAX_LAG,
        }
    }
}

/// Where the configuration file lives (it need not exist).
pub fn config_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("INCIDENT_CONSOLE_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "incident-console")
        .map(|d| d.config_dir().join("config.toml"))
        .ok_or(Error::NoHome("config"))
}

/// The configuration file's text as it is on disk (none: there is none, or it cannot be
/// read), for the evidence bundle, which redacts it.
pub fn config_text() -> Option<String> {
    config_path().ok().and_then(|p| std::fs::read_to_string(p).ok())
}

/// Where the console writes its log file.
pub fn log_dir() -> Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "incident-console").ok_or(Error::NoHome("state"))?;
    Ok(dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir()).join("logs"))
}

impl ConsoleConfig {
    /// Reads the file at `config_path()`; a missing file gives the defaults.
    pub fn load() -> Result<Self> {
        let path = config_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|e| Error::BadInput(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::BadInput(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Parses a configuration text.
    pub fn parse(text: &str) -> std::result::Result<Self, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(crate::core::sanitize::multiline(&e.to_string())))?;
        let d = ConsoleConfig::default();
        let positive = |v: Option<u64>, setting: &'static str, default: Duration| match v {
            Some(0) => Err(ConfigError::Dashboard { setting, rule: "at least 1" }),
            Some(s) => Ok(Duration::from_secs(s)),
            None => Ok(default),
        };
        // Minutes from 1 to ten years: beyond that, date arithmetic would overflow.
        let minutes = |v: Option<i64>, setting: &'static str, default: chrono::Duration| match v {
            Some(m) if (1..=10 * 365 * 24 * 60).contains(&m) => Ok(chrono::Duration::minutes(m)),
            Some(_) => Err(ConfigError::Dashboard { setting, rule: "from 1 to 5256000 (ten years)" }),
            None => Ok(default),
        };
        let t = Thresholds {
            burst_count: match file.dashboard.burst_count {
                Some(0) => return Err(ConfigError::Dashboard { setting: "burst_count", rule: "at least 1" }),
                n => n.unwrap_or(d.thresholds.burst_count),
            },
            burst_window: minutes(
                file.dashboard.burst_window_minutes,
                "burst_window_minutes",
                d.thresholds.burst_window,
            )?,
            long_rollback: minutes(
                file.dashboard.long_rollback_minutes,
                "long_rollback_minutes",
                d.thresholds.long_rollback,
            )?,
        };
        for c in &file.contact {
            let known = crate::core::workflow::incident::Role::parse(&c.role).is_some()
                || ESCALATIONS.iter().any(|(k, _)| *k == c.role);
            if !known {
                return Err(ConfigError::ContactRole(crate::core::sanitize::line(&c.role).into_owned()));
            }
            if c.name.trim().is_empty() {
                return Err(ConfigError::ContactName(c.role.clone()));
            }
        }
        let mut public_domains = Vec::new();
        for d in &file.messages.public_domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let label_ok = |l: &str| {
                !l.is_empty() && !l.starts_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            };
            if !d.contains('.') || !d.split('.').all(label_ok) {
                return Err(ConfigError::Domain(crate::core::sanitize::line(&d).into_owned()));
            }
            public_domains.push(d);
        }
        let service = file.service.map(service_config).transpose()?;
        let (replica_url, replica_max_lag) = replica_settings(file.replica_url, file.replica_max_lag.as_ref())?;
        Ok(ConsoleConfig {
            replica_url,
            replica_max_lag: replica_max_lag.unwrap_or(d.replica_max_lag),
            service,
            bundle_signing_key: file.bundle.signing_key,
            public_domains,
            contacts: file.contact,
            keymap: KeyMap::with_overrides(&file.keys)?,
            refresh: positive(file.dashboard.refresh_seconds, "refresh_seconds", d.refresh)?,
            audit: positive(file.dashboard.audit_seconds, "audit_seconds", d.audit)?,
            metrics_window: file
                .dashboard
                .metrics_window_hours
                .map(|h| chrono::Duration::hours(h.min(24 * 365) as i64))
                .unwrap_or(d.metrics_window),
            thresholds: t,
        })
    }
}

/// The replica's URL (blank: none) and lag limit (more than 0, at most an hour), checked.
fn replica_settings(
    url: Option<String>,
    max_lag: Option<&toml::Value>,
) -> std::result::Result<(Option<SecretUrl>, Option<Duration>), ConfigError> {
    let url = url.filter(|u| !u.trim().is_empty()).map(SecretUrl);
    let bad = |problem: String| ConfigError::Replica { setting: "replica_max_lag", problem };
    let lag = match max_lag {
        None => None,
        Some(v) => {
            let d = match v {
                toml::Value::Integer(n) => {
                    u64::try_from(*n).map(Duration::from_secs).map_err(|_| bad("negative".into()))
                }
                toml::Value::Float(_) => Err(bad("a duration, like \"500ms\" or \"5s\"".into())),
                toml::Value::String(s) => humantime::parse_duration(s.trim())
                    .map_err(|e| bad(format!("\"{}\" is not a duration ({e})", crate::core::sanitize::line(s)))),
                other => Err(bad(format!("a {} is not a duration", other.type_str()))),
            }?;
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(bad("must be longer than 0 and at most 1h".into()));
            }
            Some(d)
        }
    };
    Ok((url, lag))
}

/// The replica settings of the config file alone (`replica_url`, `replica_max_lag`), for
/// the headless commands: the rest of the file is not read, so a setting of the console's
/// that does not parse does not stop them. No file: none.
pub fn replica_from_file() -> Result<(Option<SecretUrl>, Option<Duration>)> {
    #[derive(Deserialize)]
    struct Only {
        replica_url: Option<String>,
        replica_max_lag: Option<toml::Value>,
    }
    let path = config_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(Error::BadInput(format!("cannot read {}: {e}", path.display()))),
    };
    let only: Only = toml::from_str(&text).map_err(|e| {
        Error::BadInput(format!("{}: {}", path.display(), crate::core::sanitize::multiline(&e.to_string())))
    })?;
    replica_settings(only.replica_url, only.replica_max_lag.as_ref())
        .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))
}

/// `[service]`, defaults filled in: `rollback` and `version` are required, each a list of
/// arguments or a table `{ argv = [...], shell = true, timeout = "2m" }` overriding the
/// table's `shell` and `timeout` for that command.
fn service_config(f: ServiceFile) -> std::result::Result<ServiceConfig, ConfigError> {
    let timeout = match &f.timeout {
        Some(v) => command_timeout("timeout", v)?,
        None => crate::core::service::DEFAULT_TIMEOUT,
    };
    let settle = match &f.settle {
        Some(v) => {
            let d = duration("settle", v)?;
            if d > Duration::from_secs(3600) {
                return Err(ConfigError::Service { setting: "settle", problem: "at most 1h".into() });
            }
            d
        }
        None => crate::core::service::DEFAULT_SETTLE,
    };
    let base = CommandSpec { argv: Vec::new(), shell: f.shell.unwrap_or(false), timeout };
    let command = |setting: &'static str, v: Option<&toml::Value>| match v {
        Some(v) => command_spec(setting, v, &base).map(Some),
        None => Ok(None),
    };
    let missing = |setting: &'static str| ConfigError::Service {
        setting,
        problem: "missing: a list of arguments, like [\"kubectl\", \"rollout\", \"undo\", …]".into(),
    };
    if let Some(i) = f.redact.iter().position(|s| s.is_empty()) {
        return Err(ConfigError::Service { setting: "redact", problem: format!("entry {} is empty", i + 1) });
    }
    Ok(ServiceConfig {
        rollback: command("rollback", f.rollback.as_ref())?.ok_or_else(|| missing("rollback"))?,
        version: command("version", f.version.as_ref())?.ok_or_else(|| missing("version"))?,
        probe: command("probe", f.probe.as_ref())?,
        settle,
        redact: f.redact,
    })
}

/// One command: a list of strings, or a table with `argv` and optionally `shell`, `timeout`.
fn command_spec(
    setting: &'static str,
    v: &toml::Value,
    base: &CommandSpec,
) -> std::result::Result<CommandSpec, ConfigError> {
    let bad = |problem: String| ConfigError::Service { setting, problem };
    let shape = "a list of arguments, like [\"kubectl\", \"rollout\", \"undo\", …], or a table \
                 { argv = [...], shell = false, timeout = \"60s\" }";
    let (argv, shell, timeout) = match v {
        toml::Value::Array(a) => (a, base.shell, base.timeout),
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| !["argv", "shell", "timeout"].contains(&k.as_str())) {
                return Err(bad(format!("unknown key \"{}\"; {shape}", crate::core::sanitize::line(k))));
            }
            let Some(toml::Value::Array(a)) = t.get("argv") else { return Err(bad(format!("argv missing; {shape}"))) };
            let shell = match t.get("shell") {
                None => base.shell,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => return Err(bad("shell must be true or false".into())),
            };
            let timeout = match t.get("timeout") {
                None => base.timeout,
                Some(v) => command_timeout(setting, v)?,
            };
            (a, shell, timeout)
        }
        _ => return Err(bad(shape.into())),
    };
    let mut args = Vec::with_capacity(argv.len());
    for a in argv {
        match a {
            toml::Value::String(s) => args.push(s.clone()),
            other => return Err(bad(format!("every argument must be a string (found {})", other.type_str()))),
        }
    }
    match args.first() {
        None => return Err(bad("the list is empty: it needs at least the program".into())),
        Some(p) if p.trim().is_empty() => return Err(bad("the program (the first argument) is empty".into())),
        Some(_) => {}
    }
    Ok(CommandSpec { argv: args, shell, timeout })
}

/// A command's time limit: longer than 0, at most a day.
fn command_timeout(setting: &'static str, v: &toml::Value) -> std::result::Result<Duration, ConfigError> {
    let d = duration(setting, v)?;
    if d.is_zero() || d > Duration::from_secs(24 * 3600) {
        return Err(ConfigError::Service {
            setting,
            problem: "a timeout must be longer than 0 and at most 24h".into(),
        });
    }
    Ok(d)
}

/// "30s", "2m", "500ms", or a whole number of seconds.
fn duration(setting: &'static str, v: &toml::Value) -> std::result::Result<Duration, ConfigError> {
    let bad = |why: String| ConfigError::Service { setting, problem: format!("{why}; try \"30s\", \"2m\" or 30") };
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).map(Duration::from_secs).map_err(|_| bad("negative".into())),
        toml::Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| bad(format!("\"{}\" is not a duration ({e})", crate::core::sanitize::line(s)))),
        other => Err(bad(format!("a {} is not a duration", other.type_str()))),
    }
}

/// An example file, printed by `config example`.
pub const EXAMPLE: &str = r#"# incident-console configuration
# A hot standby of the database (streaming replication): the orders list, the dashboard,
# the blast radius and `audit --full` read from it while it is at most replica_max_lag
# behind; pre-checks, rollbacks, post-checks and every write always go to the primary.
# --replica-url wins over this. The password is never shown.
# replica_url = "postgres://reader:secret@standby.internal:5432/incident"
replica_max_lag = "5s"

[keys]
# action = ["key", ...]; keys: q, G, ?, enter, esc, tab, shift-tab, space, ctrl-c, alt-x, f5, pgdn
quit = ["q", "ctrl-c"]
precheck = ["p", "enter"]
# in dialogs and text inputs (a table of their own: enter accepts there, y answers yes):
# accept, dismiss, yes, no, unsure, back, refill
accept = ["enter"]
dismiss = ["esc"]

[dashboard]
refresh_seconds = 10        # fallback when no notification arrives
audit_seconds = 60          # background ledger audit
metrics_window_hours = 24
burst_count = 5             # this many rollbacks ...
burst_window_minutes = 10   # ... within this window raise an alert
long_rollback_minutes = 30

# The response team and the escalation contacts, shown in the Team pane.
[[contact]]
role = "incident_commander"   # also technical_lead, database_admin, security_lead,
name = "Alex Example"         # communications_lead, documentation_lead, cto, ceo, legal, compliance
phone = "+1 555 0100"
email = "alex@example.com"

# Host names customer messages may name; any other host name is refused as internal.
[messages]
public_domains = ["example.com"]

# The deployed service, for `service status` and `service rollback --to VERSION`.
# Each command is a list of arguments run directly (no shell) with {version} replaced
# inside an argument; or a table { argv = [...], shell = true, timeout = "2m" }.
[service]
rollback = ["kubectl", "rollout", "undo", "deployment/execute-order", "--to-revision={version}"]
version = ["kubectl", "get", "deployment/execute-order", "-o", "jsonpath={.metadata.labels.version}"]
probe = ["curl", "-fsS", "https://orders.internal/health"]
timeout = "60s"     # per command; killed with what it started after that
settle = "30s"      # how long the version is polled for the expected one
shell = false       # true: the arguments joined are run by sh -c
redact = []         # literal secrets never shown (URL passwords, password=, token=, Authorization: always are)
"#;

/// The directory of the config file: user checklists and templates live beside it.
pub fn config_dir() -> Result<PathBuf> {
    let path = config_path()?;
    Ok(path.parent().map(PathBuf::from).unwrap_or_default())
}

/// The checklist in effect: `checklists.toml` in the config directory, else the shipped one.
pub fn checklist() -> Result<Checklist> {
    load_checklist(&config_dir()?.join("checklists.toml"))
}

/// A checklist file if it exists, else the shipped one.
pub fn load_checklist(user_file: &Path) -> Result<Checklist> {
    match std::fs::read_to_string(user_file) {
        Ok(text) => Checklist::parse(&text).map_err(|e| Error::BadInput(format!("{}: {e}", user_file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checklist::shipped()),
        Err(e) => Err(Error::BadInput(format!("cannot read {}: {e}", user_file.display()))),
    }
}

/// The templates in effect: the user's in `templates/` of the config directory over the
/// shipped ones, with the config file's public domains. A config file that does not parse
/// (a bad key binding, say) must not stop a report from being written: its public domains
/// are then none, and every host name in a customer message counts as internal, the
/// stricter reading. The commands that use the rest of the file report the error.
pub fn templates() -> Result<TemplateStore> {
    templates_with(&ConsoleConfig::load().unwrap_or_default())
}

/// The templates in effect, with the public domains of a config already read.
pub fn templates_with(config: &ConsoleConfig) -> Result<TemplateStore> {
    let dir = config_dir()?.join("templates");
    Ok(load_templates(dir.is_dir().then_some(dir.as_path()))?.with_public_domains(config.public_domains.clone()))
}

/// A user template larger than this is refused rather than read (it is not a message).
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

/// The shipped templates, overridden by `*.j2` files in `user_dir` with the same name
/// and extended by the others. A missing directory is not an error.
pub fn load_templates(user_dir: Option<&Path>) -> Result<TemplateStore> {
    let Some(dir) = user_dir else { return Ok(TemplateStore::shipped()) };
    let io = |e: std::io::Error| Error::file("read", dir, e);
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TemplateStore::shipped()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(io)?;
        let Ok(file) = entry.file_name().into_string() else { continue };
        if file.ends_with(".j2") && !file.starts_with('.') {
            let path = entry.path();
            let text = read_user_file(&path);
            files.push(UserTemplate { file, path, text });
        }
    }
    Ok(TemplateStore::with_user_files(files))
}

fn read_user_file(path: &Path) -> std::result::Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let c = ConsoleConfig::parse(EXAMPLE).map_err(|e| e.to_string());
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn public_domains_are_read_and_checked() {
        let c = ConsoleConfig::parse("[messages]\npublic_domains = [\"Status.Example.com.\"]\n").unwrap_or_default();
        assert_eq!(c.public_domains, vec!["status.example.com".to_string()]);
        for bad in ["\"exa mple.com\"", "\"localhost\"", "\"-x.com\"", "\"a..b\""] {
            let e = ConsoleConfig::parse(&format!("[messages]\npublic_domains = [{bad}]\n"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("not a domain name"), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e =
            ConsoleConfig::parse("[keys]\nquit = [\"ctrl-shift-\"]\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("quit"), "{e}");
        let e = ConsoleConfig::parse("[keys]\nfly = [\"f\"]\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("fly"), "{e}");
        let e =
            ConsoleConfig::parse("[dashboard]\nrefresh_seconds = 0\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("refresh_seconds"), "{e}");
        let e = ConsoleConfig::parse("colour = 1\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("colour"), "{e}");
        // Windows that would overflow date arithmetic (or panic building the duration).
        for v in ["0", "-5", "9999999999999999", "200000000000"] {
            let e = ConsoleConfig::parse(&format!("[dashboard]\nburst_window_minutes = {v}\n"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("burst_window_minutes"), "{v}: {e}");
        }
        let e = ConsoleConfig::parse("[dashboard]\nburst_count = 0\n").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("burst_count"), "{e}");
        let ok = ConsoleConfig::parse("[dashboard]\nlong_rollback_minutes = 45\n");
        assert!(ok.is_ok_and(|c| c.thresholds.long_rollback == chrono::Duration::minutes(45)));
    }

    fn service_error(text: &str) -> String {
        ConsoleConfig::parse(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_service_table_is_read_with_its_defaults() {
        let c = ConsoleConfig::parse(EXAMPLE).ok().and_then(|c| c.service);
        let Some(s) = c else { panic!("the example's [service] is read") };
        assert_eq!(s.rollback.argv[..3], ["kubectl", "rollout", "undo"]);
        assert_eq!(s.rollback.timeout, Duration::from_secs(60));
        assert_eq!(s.settle, Duration::from_secs(30));
        assert!(!s.rollback.shell && s.probe.is_some());
        assert!(ConsoleConfig::parse("").is_ok_and(|c| c.service.is_none()));

        let c = ConsoleConfig::parse(
            "[service]\nrollback = { argv = [\"deploy\", \"{version}\"], shell = true, timeout = \"2m\" }\n\
             version = [\"cat\", \"/v\"]\ntimeout = 5\nsettle = \"0s\"\nredact = [\"s3cr3t\"]\n",
        )
        .ok()
        .and_then(|c| c.service);
        let Some(s) = c else { panic!("a table command is read") };
        assert!(s.rollback.shell);
        assert_eq!(s.rollback.timeout, Duration::from_secs(120));
        assert_eq!(s.version.timeout, Duration::from_secs(5), "the table's timeout is the default");
        assert!(!s.version.shell && s.probe.is_none());
        assert_eq!(s.settle, Duration::ZERO);
        assert_eq!(s.redact, vec!["s3cr3t".to_string()]);
    }

    #[test]
    fn a_bad_service_table_says_which_setting() {
        let v = "version = [\"v\"]\n";
        let cases = [
            (format!("[service]\n{v}"), "[service] rollback: missing"),
            ("[service]\nrollback = [\"r\"]\n".to_string(), "[service] version: missing"),
            (format!("[service]\n{v}rollback = []\n"), "[service] rollback: the list is empty"),
            (format!("[service]\n{v}rollback = [\"\"]\n"), "[service] rollback: the program"),
            (format!("[service]\n{v}rollback = \"kubectl rollout undo\"\n"), "[service] rollback: a list of arguments"),
            (format!("[service]\n{v}rollback = [\"r\", 3]\n"), "[service] rollback: every argument must be a string"),
            (format!("[service]\n{v}rollback = {{ argv = [\"r\"], sh = true }}\n"), "unknown key \"sh\""),
            (format!("[service]\n{v}rollback = {{ shell = true }}\n"), "[service] rollback: argv missing"),
            (format!("[service]\n{v}rollback = [\"r\"]\ntimeout = \"soon\"\n"), "[service] timeout: \"soon\" is not"),
            (format!("[service]\n{v}rollback = [\"r\"]\ntimeout = 0\n"), "[service] timeout: a timeout must be"),
            (format!("[service]\n{v}rollback = [\"r\"]\nsettle = -1\n"), "[service] settle: negative"),
            (format!("[service]\n{v}rollback = [\"r\"]\nsettle = \"2h\"\n"), "[service] settle: at most 1h"),
            (format!("[service]\n{v}rollback = [\"r\"]\nredact = [\"\"]\n"), "[service] redact: entry 1 is empty"),
            (format!("[service]\n{v}rollback = [\"r\"]\nshel = true\n"), "shel"),
        ];
        for (text, want) in cases {
            let e = service_error(&text);
            assert!(e.contains(want), "{text}\n→ {e}");
        }
    }
}
