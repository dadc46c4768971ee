//! The message templates: the ones shipped in the binary, overridden by a user's files of
//! the same name; their headers (title, audience, required fields); strict rendering.
//!
//! A template starts with a header comment:
//!
//! ```text
//! {#-
//! title: Customer notice
//! audience: customer
//! required: customer_impact, customer_resolution
//! -#}
//! ```
//!
//! Required fields are values a person types; templates use them as `fields.NAME`. An
//! empty one renders as `[to fill: NAME]` in the preview, a waived one as `[waived]`, and
//! copying is refused until each is filled or waived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value as JinjaValue};
use serde_json::{Map, Value};

use super::header::{header_info, short_name};
use super::leak::{Leak, scan_leaks};
use super::{CommsError, Result};

/// What a waived field renders as: visible, so nobody mistakes it for an omission.
pub const WAIVED_MARKER: &str = "[waived]";
/// What an empty required field renders as in a preview, followed by its name and `]`.
pub const TO_FILL_PREFIX: &str = "[to fill: ";

/// The templates shipped in the binary, in the order the console offers them.
const SHIPPED: &[(&str, &str)] = &[
    ("internal_alert.md.j2", include_str!("../../../templates/internal_alert.md.j2")),
    ("status_update.md.j2", include_str!("../../../templates/status_update.md.j2")),
    ("customer_notice.md.j2", include_str!("../../../templates/customer_notice.md.j2")),
    ("resolution_notice.md.j2", include_str!("../../../templates/resolution_notice.md.j2")),
    ("post_incident_report.md.j2", include_str!("../../../templates/post_incident_report.md.j2")),
];

/// Who reads a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The response team and management: internal details allowed.
    Internal,
    /// Customers: checked for internal details before it can be copied.
    Customer,
}

impl Audience {
    /// "internal" or "customer".
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Internal => "internal",
            Audience::Customer => "customer",
        }
    }
}

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// Built into the binary.
    Shipped,
    /// A user's file.
    User(PathBuf),
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateSource::Shipped => f.write_str("shipped"),
            TemplateSource::User(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What `template list` shows about a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Short name, e.g. `customer_notice`.
    pub name: String,
    /// File name, e.g. `customer_notice.md.j2`.
    pub file: String,
    /// Title from the header.
    pub title: String,
    /// Audience from the header (a user's override of a customer template stays customer).
    pub audience: Audience,
    /// Fields a person must fill or waive, in the header's order.
    pub required: Vec<String>,
    /// Shipped or a user's file.
    pub source: TemplateSource,
    /// Why it cannot be rendered (bad header, unreadable file), if so.
    pub problem: Option<String>,
}

/// A filled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Short name.
    pub name: String,
    /// Title.
    pub title: String,
    /// Audience.
    pub audience: Audience,
    /// The text, control characters made visible.
    pub text: String,
    /// Required fields neither filled nor waived.
    pub missing: Vec<String>,
    /// Fields waived.
    pub waived: Vec<String>,
    /// Internal details found (customer audience only).
    pub leaks: Vec<Leak>,
}

impl Rendered {
    /// Required fields still to fill in `text` (this message, perhaps edited): in the text as
    /// filled, every field the incident lacks; in an edited one, those whose placeholder the
    /// person left in it.
    pub fn unfilled_in(&self, text: &str) -> Vec<String> {
        self.missing.iter().filter(|f| text == self.text || text.contains(&placeholder(f))).cloned().collect()
    }
}

/// The line of a filled message that an empty field's placeholder stands in (trimmed): the
/// sentence the field goes into, shown while the person fills it.
pub fn sentence_of(text: &str, field: &str) -> Option<String> {
    let mark = placeholder(field);
    text.lines().find(|l| l.contains(&mark)).map(|l| l.trim().to_string())
}

/// A field's name as people read it: `estimated_resolution` is "estimated resolution".
pub fn field_words(field: &str) -> String {
    field.split(['_', '-']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// What an empty required field shows until it is filled: `[to fill: NAME]`.
pub fn placeholder(field: &str) -> String {
    format!("{TO_FILL_PREFIX}{field}]")
}

/// What stops a message from going out as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blockers {
    /// Required fields neither filled nor waived.
    pub unfilled: Vec<String>,
    /// Internal details in a customer message.
    pub leaks: Vec<Leak>,
}

impl Blockers {
    /// Nothing stops it.
    pub fn is_clear(&self) -> bool {
        self.unfilled.is_empty() && self.leaks.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    info: TemplateInfo,
}

/// A user's template file as read from the config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTemplate {
    /// Its file name (`customer_notice.md.j2`).
    pub file: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its text, or why it could not be read.
    pub text: std::result::Result<String, String>,
}

/// The templates available: shipped ones, overridden or extended by a user's directory.
#[derive(Debug, Clone)]
pub struct TemplateStore {
    entries: Vec<Entry>,
    /// File name -> source, shared with the minijinja loader (for `include`).
    sources: Arc<BTreeMap<String, String>>,
    public_domains: Vec<String>,
}

impl Default for TemplateStore {
    fn default() -> Self {
        Self::shipped()
    }
}

impl TemplateStore {
    /// Only the templates built into the binary.
    pub fn shipped() -> Self {
        let mut entries = Vec::new();
        let mut sources = BTreeMap::new();
        for (file, src) in SHIPPED {
            let mut info = header_info(file, src, TemplateSource::Shipped, None);
            // A broken shipped header is a bug in this crate; say so instead of panicking.
            if let Some(p) = &mut info.problem {
                *p = format!("shipped template: {p}");
            }
            entries.push(Entry { info });
            sources.insert(file.to_string(), src.to_string());
        }
        TemplateStore { entries, sources: Arc::new(sources), public_domains: Vec::new() }
    }

    /// The shipped templates, overridden by the user's files with the same name and
    /// extended by the others. Each file is its name, where it is, and its text or why it
    /// could not be read (`store::config` reads the directory).
    pub fn with_user_files(files: Vec<UserTemplate>) -> Self {
        let mut store = Self::shipped();
        let mut files = files;
        files.sort_by(|a, b| a.file.cmp(&b.file));
        let sources = Arc::make_mut(&mut store.sources);
        for UserTemplate { file, path, text } in files {
            let (src, read_problem) = match text {
                Ok(s) => (s, None),
                Err(e) => (String::new(), Some(e)),
            };
            let name = short_name(&file);
            let shipped = store.entries.iter().position(|e| e.info.name == name);
            let mut info =
                header_info(&file, &src, TemplateSource::User(path.clone()), shipped.map(|i| &store.entries[i].info));
            if read_problem.is_some() {
                info.problem = read_problem;
            }
            sources.insert(file.clone(), src);
            match shipped {
                Some(i) if store.entries[i].info.source == TemplateSource::Shipped => {
                    // The override keeps the shipped file name under its own, so both resolve.
                    store.entries[i] = Entry { info };
                }
                Some(_) => {
                    // Two user files with one short name (x.md.j2 and x.txt.j2).
                    info.problem = Some(format!("another user template is also named {name:?}"));
                    info.name = file.trim_end_matches(".j2").to_string();
                    store.entries.push(Entry { info });
                }
                None => store.entries.push(Entry { info }),
            }
        }
        store
    }

    /// Host names allowed in customer text (the company's public domains); subdomains too.
    pub fn with_public_domains(mut self, domains: Vec<String>) -> Self {
        self.public_domains = domains;
        self
    }

    /// Every template, shipped order first, then the user's own.
    pub fn list(&self) -> Vec<TemplateInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }

    /// One template's description, by short name or file name.
    pub fn info(&self, name: &str) -> Result<&TemplateInfo> {
        self.entries.iter().map(|e| &e.info).find(|i| i.name == name || i.file == name).ok_or_else(|| {
            CommsError::UnknownTemplate {
                name: name.to_string(),
                known: self.entries.iter().map(|e| e.info.name.as_str()).collect::<Vec<_>>().join(", "),
            }
        })
    }

    /// A template's source text.
    pub fn source(&self, name: &str) -> Result<&str> {
        let info = self.info(name)?;
        Ok(self.sources.get(&info.file).map(String::as_str).unwrap_or_default())
    }

    /// A field as a dialog names it: its words, capitalised, and the messages that require
    /// it (a field is the incident's: filling it changes each): "Estimated resolution
    /// (internal alert)".
    pub fn field_title(&self, field: &str) -> String {
        let words = field_words(field);
        let mut chars = words.chars();
        let name: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
        let users: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.info.required.iter().any(|r| r == field))
            .map(|e| {
                let mut t = e.info.title.chars();
                t.next().map(|c| c.to_lowercase().chain(t).collect()).unwrap_or_default()
            })
            .collect();
        if users.is_empty() { name } else { format!("{name} ({})", users.join(", ")) }
    }

    /// Required fields of `name` that `ctx` neither fills nor waives, in the header's order.
    pub fn missing_fields(&self, name: &str, ctx: &Value) -> Result<Vec<String>> {
        let info = self.info(name)?;
        let (fields, waived) = person_fields(ctx)?;
        Ok(info.required.iter().filter(|f| !fields.contains_key(*f) && !waived.contains(*f)).cloned().collect())
    }

    /// Fills `name` from `ctx` (a JSON object, e.g. [`super::MessageContext::to_value`]).
    /// Strict: a variable the template uses and the context lacks is
    /// [`CommsError::MissingVariable`] naming it. Empty required fields show as
    /// `[to fill: NAME]` and are listed in [`Rendered::missing`]; for customer templates the
    /// text is scanned for internal details (those of `ctx.internal` and of its rollbacks).
    pub fn render(&self, name: &str, ctx: &Value) -> Result<Rendered> {
        self.render_with(name, ctx, &[])
    }

    /// Fills `name` for copying: refused with [`CommsError::FieldsMissing`] while required
    /// fields are empty, and for customer templates with [`CommsError::Leak`] when the text
    /// contains a UUID, a host name or IP address, or one of `internal` (order ids, user ids,
    /// database hosts) or of the context's own internal ids.
    pub fn render_for_copy(&self, name: &str, ctx: &Value, internal: &[String]) -> Result<Rendered> {
        let rendered = self.render_with(name, ctx, internal)?;
        let mut values = context_internal_values(ctx);
        values.extend(internal.iter().cloned());
        let Blockers { unfilled, leaks } = self.blockers(&rendered, &rendered.text, &values);
        if !unfilled.is_empty() {
            return Err(CommsError::FieldsMissing { template: rendered.name, fields: unfilled });
        }
        if !leaks.is_empty() {
            return Err(CommsError::Leak { template: rendered.name, leaks });
        }
        Ok(rendered)
    }

    /// The one rule for letting a message out (copying it, writing the report, `template
    /// render`): every required field filled or waived, and no internal detail (one of
    /// `internal`, an id, a host name other than the public domains) in a customer message.
    /// `text` is what would go out: the filled text, or the person's edit of it.
    pub fn blockers(&self, rendered: &Rendered, text: &str, internal: &[String]) -> Blockers {
        let leaks = if rendered.audience == Audience::Customer {
            scan_leaks(text, internal, &self.public_domains)
        } else {
            Vec::new()
        };
        Blockers { unfilled: rendered.unfilled_in(text), leaks }
    }

    fn render_with(&self, name: &str, ctx: &Value, internal: &[String]) -> Result<Rendered> {
        let info = self.info(name)?.clone();
        if let Some(problem) = &info.problem {
            return Err(CommsError::BadTemplate { template: info.file.clone(), message: problem.clone() });
        }
        let Value::Object(root) = ctx else {
            return Err(CommsError::BadContext("the context must be a JSON object".into()));
        };
        let (fields, waived) = person_fields(ctx)?;
        let mut effective: Map<String, Value> =
            fields.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        let mut missing = Vec::new();
        for f in &info.required {
            if !fields.contains_key(f) {
                if waived.contains(f) {
                    effective.insert(f.clone(), Value::from(WAIVED_MARKER));
                } else {
                    effective.insert(f.clone(), Value::from(placeholder(f)));
                    missing.push(f.clone());
                }
            }
        }
        // Waived optional fields show the marker too, so `is defined` sees them.
        for w in &waived {
            effective.entry(w.clone()).or_insert_with(|| Value::from(WAIVED_MARKER));
        }
        let mut root = root.clone();
        root.insert("fields".into(), Value::Object(effective));

        let env = self.environment()?;
        let bad = |e: minijinja::Error| to_comms_error(&info.file, e);
        let template = env.get_template(&info.file).map_err(bad)?;
        let raw = template.render(JinjaValue::from(minijinja::value::Serde(&Value::Object(root)))).map_err(bad)?;
        // Pasted text can carry CR LF and terminal escapes; neither belongs in a message.
        let text = crate::core::sanitize::multiline(&raw.replace("\r\n", "\n"));

        let leaks = if info.audience == Audience::Customer {
            let mut values = context_internal_values(ctx);
            values.extend(internal.iter().cloned());
            scan_leaks(&text, &values, &self.public_domains)
        } else {
            Vec::new()
        };
        let mut waived_list: Vec<String> = waived.into_iter().filter(|w| !fields.contains_key(w)).collect();
        waived_list.sort();
        Ok(Rendered {
            name: info.name,
            title: info.title,
            audience: info.audience,
            text,
            missing,
            waived: waived_list,
            leaks,
        })
    }

    fn environment(&self) -> Result<Environment<'static>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Debug mode is what makes an undefined-value error name the variable; release
        // builds turn it off by default.
        env.set_debug(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| CommsError::BadTemplate { template: "(syntax)".into(), message: e.to_string() })?;
        env.set_syntax(syntax);
        let sources = Arc::clone(&self.sources);
        env.set_loader(move |name| Ok(sources.get(name).cloned()));
        Ok(env)
    }
}

/// The person-filled fields (non-blank values) and the waived names of a context.
fn person_fields(ctx: &Value) -> Result<(BTreeMap<String, String>, std::collections::BTreeSet<String>)> {
    let mut fields = BTreeMap::new();
    match ctx.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    _ => return Err(CommsError::BadContext(format!("field {k:?} must be text"))),
                };
                if !text.trim().is_empty() {
                    fields.insert(k.clone(), text);
                }
            }
        }
        Some(_) => return Err(CommsError::BadContext("`fields` must be an object of texts".into())),
    }
    let mut waived = std::collections::BTreeSet::new();
    match ctx.get("waived") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => {
                        waived.insert(s.clone());
                    }
                    _ => return Err(CommsError::BadContext("`waived` must be a list of field names".into())),
                }
            }
        }
        Some(_) => return Err(CommsError::BadContext("`waived` must be a list of field names".into())),
    }
    Ok((fields, waived))
}

/// Internal ids in the context itself: every string under `internal`, and the order and
/// user ids of its rollbacks.
fn context_internal_values(ctx: &Value) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(i) = ctx.get("internal") {
        strings(i, &mut out);
    }
    if let Some(Value::Array(items)) = ctx.pointer("/rollbacks/items") {
        for r in items {
            for key in ["order_id", "user_id"] {
                if let Some(Value::String(s)) = r.get(key) {
                    out.push(s.clone());
                }
            }
        }
    }
    out
}

fn to_comms_error(file: &str, e: minijinja::Error) -> CommsError {
    let line = e.line();
    if e.kind() == ErrorKind::UndefinedError {
        // The detail reads "`incident.title` is undefined"; the name is between the backticks.
        let detail = e.detail().unwrap_or_default();
        let variable = detail.split('`').nth(1).filter(|v| !v.is_empty()).unwrap_or(detail);
        let variable = if variable.is_empty() { "(unknown)" } else { variable };
        let template = e.name().unwrap_or(file).to_string();
        return CommsError::MissingVariable { template, variable: variable.to_string(), line };
    }
    CommsError::BadTemplate { template: file.to_string(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_is_named_in_words_with_the_messages_that_need_it() {
        let store = TemplateStore::shipped();
        assert_eq!(store.field_title("estimated_resolution"), "Estimated resolution (internal alert)");
        assert_eq!(store.field_title("customer_resolution"), "Customer resolution (customer notice)");
        assert_eq!(store.field_title("no_such_field"), "No such field");
        assert_eq!(field_words("root_cause"), "root cause");
    }

    #[test]
    fn shipped_headers_parse() {
        let store = TemplateStore::shipped();
        let list = store.list();
        let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["internal_alert", "status_update", "customer_notice", "resolution_notice", "post_incident_report"]
        );
        for i in &list {
            assert_eq!(i.problem, None, "{}", i.name);
            assert!(!i.required.is_empty(), "{} declares required fields", i.name);
        }
        assert_eq!(store.info("customer_notice.md.j2").map(|i| i.audience).ok(), Some(Audience::Customer));
        assert_eq!(store.info("internal_alert").map(|i| i.audience).ok(), Some(Audience::Internal));
    }

    #[test]
    fn strict_mode_names_the_variable() {
        let mut store = TemplateStore::shipped();
        let src = "{# title: t\naudience: internal #}\nHello {{ incident.nope }}\n".to_string();
        Arc::make_mut(&mut store.sources).insert("x.md.j2".into(), src.clone());
        store.entries.push(Entry { info: header_info("x.md.j2", &src, TemplateSource::Shipped, None) });
        let err = store.render("x", &json!({"incident": {}})).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "template x.md.j2: missing variable `incident.nope` (line 3)");
    }

    #[test]
    fn fields_and_waived_must_be_shaped() {
        let store = TemplateStore::shipped();
        assert!(matches!(
            store.missing_fields("internal_alert", &json!({"fields": []})),
            Err(CommsError::BadContext(_))
        ));
        assert!(matches!(
            store.missing_fields("internal_alert", &json!({"waived": "x"})),
            Err(CommsError::BadContext(_))
        ));
        assert!(matches!(store.render("internal_alert", &json!([])), Err(CommsError::BadContext(_))));
        let missing = store
            .missing_fields("internal_alert", &json!({"fields": {"impact": "  "}, "waived": ["estimated_resolution"]}));
        assert_eq!(missing.ok(), Some(vec!["impact".to_string()]));
    }

    #[test]
    fn unknown_template_lists_the_known_ones() {
        let err = TemplateStore::shipped().render("nope", &json!({})).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("no template named \"nope\" (known: internal_alert, status_update,"), "{err}");
    }
}
