//! `template list|render`: the message templates, and one filled from the incident.

use chrono::Utc;
use serde_json::{Value, json};

use super::args::{GlobalArgs, TemplateAction};
use super::print_json;
use crate::core::comms::{Blockers, Rendered};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize::line;
use crate::ops::incident::{message_context, open};
use crate::store::config::templates;

/// `template …`
pub(super) async fn template_command(g: &GlobalArgs, action: TemplateAction) -> Result<i32> {
    let store = templates()?;
    match action {
        TemplateAction::List => {
            let list = store.list();
            if g.json {
                let rows: Vec<Value> = list
                    .iter()
                    .map(|t| {
                        json!({ "name": t.name, "file": t.file, "title": t.title, "audience": t.audience.as_str(),
                                "required": t.required, "source": t.source.to_string(), "problem": t.problem })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                for t in list {
                    println!(
                        "{:<22} {:<9} {}{}",
                        line(&t.name),
                        t.audience.as_str(),
                        line(&t.title),
                        if t.required.is_empty() {
                            String::new()
                        } else {
                            format!("  (fill: {})", line(&t.required.join(", ")))
                        }
                    );
                    if let Some(p) = &t.problem {
                        println!("  PROBLEM: {}", line(p));
                    }
                }
            }
            Ok(EXIT_OK)
        }
        TemplateAction::Render { name, set, waive, incident } => {
            let inc = open(incident.as_deref())?;
            let entries = inc.entries()?;
            let mut ctx = message_context(&inc, &entries, None, Utc::now());
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| Error::BadInput(format!("--set takes KEY=VALUE, not \"{}\"", line(kv))))?;
                ctx.set_field(k.trim(), v);
            }
            for w in waive {
                ctx.waive(w);
            }
            let rendered = store.render(&name, &ctx.to_value())?;
            let blockers = store.blockers(&rendered, &rendered.text, &ctx.internal_values());
            print_rendered(g, &rendered, &blockers)?;
            Ok(if blockers.is_clear() { EXIT_OK } else { EXIT_CHECK_FAILED })
        }
    }
}

fn print_rendered(g: &GlobalArgs, r: &Rendered, blockers: &Blockers) -> Result<()> {
    if g.json {
        return print_json(&json!({ "name": r.name, "title": r.title, "audience": r.audience.as_str(), "text": r.text,
                                    "missing": blockers.unfilled, "waived": r.waived,
                                    "leaks": blockers.leaks.iter().map(|l| l.to_string()).collect::<Vec<_>>() }));
    }
    print!("{}", crate::core::sanitize::multiline(&r.text));
    if !r.text.ends_with('\n') {
        println!();
    }
    if !blockers.unfilled.is_empty() {
        eprintln!(
            "Required fields still empty: {} (fill with --set KEY=VALUE or `incident field`, or --waive KEY)",
            blockers.unfilled.join(", ")
        );
    }
    for l in &blockers.leaks {
        eprintln!("Internal detail in a customer message: {}", line(&l.to_string()));
    }
    Ok(())
}
