//! The folders under `src/` are layers, and each may only use the ones below it:
//! `console` and `cli` over `ops` over `store` over `core`. This test reads every source
//! file and fails on a path that points upward (or sideways, between the front ends), and
//! on a crate a layer must not touch (the domain knows no database, terminal or runtime).

use std::path::{Path, PathBuf};

/// A layer: its folder, the layers it may use, and crates it must not.
struct Layer {
    name: &'static str,
    may_use: &'static [&'static str],
    forbidden_crates: &'static [&'static str],
}

const LAYERS: [Layer; 5] = [
    Layer {
        name: "core",
        may_use: &["core"],
        forbidden_crates: &[
            "sqlx",
            "tokio",
            "ratatui",
            "ratatui_textarea",
            "crossterm",
            "clap",
            "indicatif",
            "directories",
            "tracing",
            "std::fs",
            "std::process",
            "std::net",
        ],
    },
    Layer {
        name: "store",
        may_use: &["core", "store"],
        forbidden_crates: &["ratatui", "ratatui_textarea", "crossterm", "clap", "indicatif"],
    },
    Layer {
        name: "ops",
        may_use: &["core", "store", "ops"],
        forbidden_crates: &["ratatui", "ratatui_textarea", "crossterm", "clap", "indicatif"],
    },
    Layer { name: "cli", may_use: &["core", "store", "ops", "cli"], forbidden_crates: &["ratatui", "crossterm"] },
    Layer { name: "console", may_use: &["core", "store", "ops", "console"], forbidden_crates: &["clap", "indicatif"] },
];

/// Every way a file names something of another layer or a crate: `crate::x`, `use x::`,
/// and paths in expressions (`x::f()`), ignoring comments.
fn violations(layer: &Layer, source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, raw) in source.lines().enumerate() {
        let code = raw.split("//").next().unwrap_or("");
        for other in LAYERS.iter().map(|l| l.name).filter(|o| !layer.may_use.contains(o)) {
            if contains_path(code, &format!("crate::{other}")) {
                found.push(format!("line {}: uses crate::{other}: {}", n + 1, raw.trim()));
            }
        }
        for krate in layer.forbidden_crates {
            if contains_path(code, &format!("{krate}::")) || code.trim_start().starts_with(&format!("use {krate};")) {
                found.push(format!("line {}: uses {krate}: {}", n + 1, raw.trim()));
            }
        }
    }
    found
}

/// Whether `path` occurs in `code` as a path of its own (not the tail of a longer name).
fn contains_path(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + path.len()..].chars().next();
        let starts = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let ends = path.ends_with("::") || after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        starts && ends
    })
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut files = 0;
    for layer in &LAYERS {
        for f in rust_files(&src.join(layer.name)) {
            files += 1;
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for v in violations(layer, &text) {
                problems.push(format!("{}: {v}", f.strip_prefix(&src).unwrap_or(&f).display()));
            }
        }
    }
    assert!(files > 40, "the layer folders hold {files} files: is the layout still src/<layer>/?");
    assert!(problems.is_empty(), "imports against the layering:\n{}", problems.join("\n"));
}

#[test]
fn only_the_layer_folders_hold_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let loose: Vec<String> = std::fs::read_dir(&src)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs") && n != "lib.rs" && n != "main.rs")
        .collect();
    assert!(loose.is_empty(), "files outside the layer folders: {loose:?}");
    let folders: Vec<String> = std::fs::read_dir(&src)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !LAYERS.iter().any(|l| l.name == n))
        .collect();
    assert!(folders.is_empty(), "folders that are not layers: {folders:?}");
}

#[test]
fn the_check_sees_an_upward_import() {
    let store = &LAYERS[1];
    assert_eq!(store.name, "store");
    let planted = "use crate::core::error::Result;\nuse crate::console::app::App;\n";
    let v = violations(store, planted);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("crate::console"), "{v:?}");
    // In an expression too, and a front end reaching into the other one.
    let cli = &LAYERS[3];
    assert_eq!(violations(cli, "    let a = crate::console::app::App::new();").len(), 1);
    // A crate the domain must not touch; a comment naming it is fine.
    let core = &LAYERS[0];
    assert_eq!(violations(core, "use sqlx::PgPool;\n// sqlx::query is for store").len(), 1);
    assert!(violations(core, "use crate::core::error::Error; // not crate::store").is_empty());
    // A longer name that merely ends like a layer is not one.
    assert!(violations(core, "use my_crate::console_like::x;").is_empty());
}
