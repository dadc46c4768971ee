//! A template's header comment: its title, audience and required fields, read before the
//! template is ever rendered, so a bad header is reported as the template's problem.

use super::templates::{Audience, TemplateInfo, TemplateSource};

/// `customer_notice.md.j2` -> `customer_notice`.
pub(super) fn short_name(file: &str) -> String {
    let base = file.strip_suffix(".j2").unwrap_or(file);
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()) => stem.to_string(),
        _ => base.to_string(),
    }
}

/// The header's fields, or for a file without one: those of the shipped template it
/// overrides, else its name, customer audience (the safe side: it gets leak-checked), and
/// no required fields.
pub(super) fn header_info(
    file: &str,
    src: &str,
    source: TemplateSource,
    shipped: Option<&TemplateInfo>,
) -> TemplateInfo {
    let name = short_name(file);
    let mut info = TemplateInfo {
        name: name.clone(),
        file: file.to_string(),
        title: shipped.map_or_else(|| name.replace('_', " "), |s| s.title.clone()),
        audience: shipped.map_or(Audience::Customer, |s| s.audience),
        required: shipped.map(|s| s.required.clone()).unwrap_or_default(),
        source,
        problem: None,
    };
    match parse_header(src) {
        Ok(None) => {}
        Ok(Some(h)) => {
            if let Some(t) = h.title {
                info.title = t;
            }
            if let Some(a) = h.audience {
                info.audience = a;
            }
            info.required = h.required;
        }
        Err(problem) => info.problem = Some(problem),
    }
    // A customer message stays one whatever an override's header says.
    if shipped.is_some_and(|s| s.audience == Audience::Customer) {
        info.audience = Audience::Customer;
    }
    info
}

struct Header {
    title: Option<String>,
    audience: Option<Audience>,
    required: Vec<String>,
}

/// Parses the leading `{# ... #}` comment. `Ok(None)`: no header (no comment first, or a
/// comment without any of the keys).
fn parse_header(src: &str) -> std::result::Result<Option<Header>, String> {
    let Some(rest) = src.trim_start().strip_prefix("{#") else { return Ok(None) };
    let Some(end) = rest.find("#}") else { return Err("header: the comment is not closed with #}".into()) };
    let body = rest[..end].trim_start_matches('-').trim_end_matches('-');
    let mut header = Header { title: None, audience: None, required: Vec::new() };
    let mut any = false;
    for line in body.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "title" => {
                any = true;
                if value.is_empty() {
                    return Err("header: title is empty".into());
                }
                header.title = Some(value.to_string());
            }
            "audience" => {
                any = true;
                header.audience = Some(match value.to_ascii_lowercase().as_str() {
                    "internal" => Audience::Internal,
                    "customer" => Audience::Customer,
                    other => return Err(format!("header: audience must be internal or customer, not {other:?}")),
                });
            }
            "required" => {
                any = true;
                for f in value.split([',', ' ']).map(str::trim).filter(|f| !f.is_empty()) {
                    if !is_identifier(f) {
                        return Err(format!("header: required field {f:?} is not a name (letters, digits, _)"));
                    }
                    if !header.required.iter().any(|r| r == f) {
                        header.required.push(f.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(any.then_some(header))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        let h = parse_header("{#-\ntitle: X\naudience: internal\nrequired: a, b c,a\n-#}\nbody").ok().flatten();
        let h = h.map(|h| (h.title, h.audience, h.required));
        assert_eq!(h, Some((Some("X".into()), Some(Audience::Internal), vec!["a".into(), "b".into(), "c".into()])));
        assert!(parse_header("no header").is_ok_and(|h| h.is_none()));
        assert!(parse_header("{# just a comment #}x").is_ok_and(|h| h.is_none()));
        assert!(parse_header("{# audience: extrnal #}").is_err());
        assert!(parse_header("{# required: a-b #}").is_err());
        assert!(parse_header("{# title: x").is_err());
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("customer_notice.md.j2"), "customer_notice");
        assert_eq!(short_name("x.j2"), "x");
        assert_eq!(short_name(".md.j2"), ".md");
    }
}
