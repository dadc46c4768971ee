//! The evidence bundle attacked: by someone holding the archive (rewriting it, re-signing
//! it, stripping its signature, planting escape sequences for the auditor's terminal), by a
//! configuration full of secrets, and by faults (an output that cannot be written or that
//! names the journal, a key that cannot be read, a database without its schema, two bundles
//! within one second). Each runs the real binary; forgeries use the crate's own functions.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use incident_console::core::bundle::{self, MANIFEST, SIGNATURE};

use crate::support::cli::{Out, PASSWORD, console_in, run_cmd};
use crate::support::db::*;

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        World { dir: tempfile::tempdir().expect("dir") }
    }

    async fn run(&self, args: &[&str]) -> Out {
        let mut c = console_in(self.dir.path(), "bundle-adversary");
        c.env("INCIDENT_CONSOLE_SANDBOX_DIR", self.dir.path().join("sandbox")).args(args);
        run_cmd(c, None).await
    }

    async fn incident(&self) {
        self.run(&["incident", "new", "--title", "Bundle under attack", "--level", "2"]).await.code(0);
    }

    /// Writes a bundle (no database at hand unless `url`), returns its path.
    async fn bundle(&self, url: Option<&str>, extra: &[&str]) -> PathBuf {
        let mut args = Vec::new();
        if let Some(u) = url {
            args.extend(["--database-url", u]);
        }
        args.extend(["--json", "incident", "bundle"]);
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        PathBuf::from(out.code(0).clean().json()["path"].as_str().expect("path"))
    }

    async fn verify(&self, path: &Path, pin: Option<&str>) -> Out {
        let p = path.to_str().expect("utf-8");
        let mut args = vec!["incident", "bundle", "verify", p];
        if let Some(k) = pin {
            args.extend(["--public-key", k]);
        }
        self.run(&args).await
    }

    fn journal(&self) -> PathBuf {
        find(self.dir.path(), "journal.jsonl").expect("the incident's journal")
    }

    fn bundles_written(&self) -> usize {
        std::fs::read_to_string(self.journal()).expect("journal").matches("\"bundle_written\"").count()
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// The bundle at `path` with `edit` applied to its files (manifest and seal dropped), the
/// manifest rebuilt for `incident` and sealed with `key`: a forgery by whoever holds it.
fn forge(
    path: &Path,
    to: &Path,
    incident: &str,
    key: Option<&SigningKey>,
    edit: impl Fn(&mut Vec<(String, Vec<u8>)>),
) -> PathBuf {
    let mut files: Vec<(String, Vec<u8>)> = incident_console::store::bundle::read(path)
        .expect("read")
        .into_iter()
        .filter(|(p, _)| ![MANIFEST, bundle::MANIFEST_SUM, SIGNATURE].contains(&p.as_str()))
        .collect();
    edit(&mut files);
    let m = bundle::manifest(incident, chrono::Utc::now(), "incident-console 0.1.0", &files);
    files.extend(bundle::seal(&m, key).expect("seal"));
    incident_console::store::bundle::write(to, "forged-evidence", &files).expect("write the forgery");
    to.to_path_buf()
}

fn replace_journal(files: &mut [(String, Vec<u8>)]) {
    for (p, b) in files.iter_mut() {
        if p == "journal.jsonl" {
            *b = b"{\"seq\":1,\"forged\":true}\n".to_vec();
        }
    }
}

#[tokio::test]
async fn verify_says_what_intact_is_worth_and_only_a_pinned_key_catches_a_rewrite() {
    let w = World::new();
    w.incident().await;
    // Unsigned, rewritten whole (a file, the manifest, its checksum): intact, and it says
    // that this proves only the absence of accidental change.
    let plain = w.bundle(None, &[]).await;
    let forged = forge(&plain, &w.dir.path().join("f1.tar"), "INC-1", None, |f| replace_journal(f));
    let out = w.verify(&forged, None).await;
    out.code(0).says("Bundle intact").says("accidental change only").says("--public-key");
    let json = w.run(&["--json", "incident", "bundle", "verify", forged.to_str().expect("utf-8")]).await;
    assert_eq!(json.code(0).json()["assurance"], "accidental_change_only");

    // Signed by us; re-signed by someone else after a rewrite.
    let key = w.dir.path().join("k");
    let out = w.run(&["--json", "incident", "bundle", "keygen", "--out", key.to_str().expect("utf-8")]).await;
    let public = out.code(0).json()["public_key"].as_str().expect("public key").to_string();
    let signed = w.bundle(None, &["--key", key.to_str().expect("utf-8")]).await;
    w.verify(&signed, Some(&public)).await.code(0).says("with the public key given");
    let theirs = SigningKey::from_bytes(&[9; 32]);
    let resigned = forge(&signed, &w.dir.path().join("f2.tar"), "INC-1", Some(&theirs), |f| replace_journal(f));
    // Without a pin it verifies, but says whose key that is and that it proves nothing yet.
    let out = w.verify(&resigned, None).await;
    out.code(0).says(&bundle::public_key_hex(&theirs)).says("itself carries").says("--public-key");
    w.verify(&resigned, Some(&public))
        .await
        .code(1)
        .says("DOES NOT MATCH")
        .says(SIGNATURE)
        .says("not by the public key");

    // The signature stripped (a downgrade): unsigned without a pin, refused with one.
    let stripped = forge(&signed, &w.dir.path().join("f3.tar"), "INC-1", None, |_| {});
    w.verify(&stripped, None).await.code(0).says("Not signed");
    w.verify(&stripped, Some(&public)).await.code(1).says(SIGNATURE).says("missing");
}

#[tokio::test]
async fn escape_sequences_planted_in_a_bundle_never_reach_the_auditors_terminal() {
    let w = World::new();
    w.incident().await;
    let plain = w.bundle(None, &[]).await;
    let evil = "INC\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m";
    let named = forge(&plain, &w.dir.path().join("e1.tar"), evil, None, |_| {});
    let planted = w.dir.path().join("e2.tar");
    // A file the manifest does not list, its name an escape sequence.
    let mut files = incident_console::store::bundle::read(&plain).expect("read");
    files.push(("\u{1b}[1A\u{1b}[2KBundle intact.txt".into(), b"x".to_vec()));
    incident_console::store::bundle::write(&planted, "x-evidence", &files).expect("write");
    for (path, code) in [(named, 0), (planted, 1)] {
        let out = w.verify(&path, None).await;
        out.code(code);
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'), "{text:?}");
        }
    }
}

#[tokio::test]
async fn no_secret_of_the_config_or_the_database_url_is_in_the_bundle() {
    let t = seeded().await;
    let w = World::new();
    std::fs::write(
        w.dir.path().join("config.toml"),
        r#"# the old database password was hunter0
[service]
rollback = ["deploy", "--to={version}", "--password", "hunter1", "--db", "postgres://svc:hunter2@db/x"]
version = ["curl", "-H", "Authorization: Bearer hunter3", "https://h/v?token=hunter4"]
probe = ["sh", "-c", "PGPASSWORD=hunter5 psql -c 'select 1'"]
redact = ["hunter6"]
"#,
    )
    .expect("config");
    w.incident().await;
    // The test server trusts its socket, so a password in the URL is carried, not needed.
    let url = format!("{}&password={PASSWORD}", t.url);
    let path = w.bundle(Some(&url), &[]).await;
    let raw = String::from_utf8_lossy(&std::fs::read(&path).expect("bundle")).into_owned();
    for secret in [PASSWORD, "hunter0", "hunter1", "hunter2", "hunter3", "hunter4", "hunter5", "hunter6"] {
        assert!(!raw.contains(secret), "{secret} is in the bundle");
    }
    let files = incident_console::store::bundle::read(&path).expect("read");
    let get = |name: &str| {
        let b = files.iter().find(|(p, _)| p == name).map(|(_, b)| b.clone()).expect(name);
        String::from_utf8(b).expect("utf-8")
    };
    let versions: serde_json::Value = serde_json::from_str(&get("versions.json")).expect("json");
    let db = versions["database"].as_str().expect("database");
    assert!(db.contains("password=***"), "{db}");
    assert!(!versions["server"].is_null(), "the database's part is there: {versions}");
    let config = get("config.toml");
    assert!(config.contains("deploy") && config.contains("--password"), "{config}");
    w.verify(&path, None).await.code(0).says("Bundle intact");
}

#[tokio::test]
async fn a_database_without_its_schema_still_gives_a_bundle_that_says_so_and_verifies() {
    let t = blank_db().await;
    let w = World::new();
    w.incident().await;
    let out = w.run(&["--database-url", &t.url, "--json", "incident", "bundle"]).await;
    let written = out.code(0).clean().json();
    let missing = written["database_missing"].as_str().expect("the database's part is said to be missing");
    assert!(!missing.is_empty() && !missing.contains(PASSWORD), "{missing}");
    let path = PathBuf::from(written["path"].as_str().expect("path"));
    let files = incident_console::store::bundle::read(&path).expect("read");
    assert!(files.iter().all(|(p, _)| !p.starts_with("database/")), "no half of the database's part");
    let v = files.iter().find(|(p, _)| p == "journal-verification.json").expect("journal-verification.json");
    assert!(String::from_utf8_lossy(&v.1).contains("database_missing"));
    w.verify(&path, None).await.code(0).says("Bundle intact");
    assert_eq!(w.bundles_written(), 1);
}

#[tokio::test]
async fn an_output_that_cannot_be_written_or_names_the_journal_writes_and_journals_nothing() {
    let w = World::new();
    w.incident().await;
    let journal = w.journal();
    let before = std::fs::read(&journal).expect("journal");
    // --out the journal itself: refused, the journal untouched (it was replaced by a tar).
    let out = w.run(&["incident", "bundle", "--out", journal.to_str().expect("utf-8")]).await;
    out.code(2).clean().complains("already exists");
    assert_eq!(std::fs::read(&journal).expect("journal"), before);
    w.run(&["incident", "verify"]).await.code(0);
    // A directory that cannot be created (its parent is a file; the tests run as root, so
    // permissions would not stop it): an error, no file, nothing journaled.
    let blocker = w.dir.path().join("blocker");
    std::fs::write(&blocker, b"x").expect("blocker");
    let out = w.run(&["incident", "bundle", "--out", blocker.join("b.tar").to_str().expect("utf-8")]).await;
    assert_ne!(out.code, 0, "{out:?}");
    out.clean();
    assert!(out.stderr.contains("blocker"), "{}", out.stderr);
    let out = w.run(&["incident", "bundle", "--out", w.dir.path().to_str().expect("utf-8")]).await;
    out.code(2).clean().complains("already exists");
    // A key that cannot be read, or is not a key: an error before anything is written.
    let missing_key = w.dir.path().join("no-such.key");
    let out = w.run(&["incident", "bundle", "--key", missing_key.to_str().expect("utf-8")]).await;
    assert_ne!(out.code, 0);
    out.clean().complains("no-such.key");
    let bad_key = w.dir.path().join("bad.key");
    std::fs::write(&bad_key, "not hex at all\n").expect("bad key");
    let out = w.run(&["incident", "bundle", "--key", bad_key.to_str().expect("utf-8")]).await;
    out.code(2).clean().complains("not a signing key");
    assert_eq!(w.bundles_written(), 0, "nothing journaled");
    assert!(find(w.dir.path(), "bundles").is_none_or(|d| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0) == 0));
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // keygen never replaces a key.
    let key = w.dir.path().join("k");
    w.run(&["incident", "bundle", "keygen", "--out", key.to_str().expect("utf-8")]).await.code(0);
    let kept = std::fs::read(&key).expect("key");
    let out = w.run(&["incident", "bundle", "keygen", "--out", key.to_str().expect("utf-8")]).await;
    assert_ne!(out.code, 0);
    assert_eq!(std::fs::read(&key).expect("key"), kept);
}

#[tokio::test]
async fn two_bundles_within_one_second_are_two_files_both_journaled_and_both_verify() {
    let w = World::new();
    w.incident().await;
    let a = w.bundle(None, &[]).await;
    let b = w.bundle(None, &[]).await;
    assert_ne!(a, b, "the second must not replace the first");
    for p in [&a, &b] {
        w.verify(p, None).await.code(0).says("Bundle intact");
    }
    let journal = std::fs::read_to_string(w.journal()).expect("journal");
    for p in [&a, &b] {
        assert!(journal.contains(&serde_json::to_string(&p.display().to_string()).expect("json")), "{journal}");
    }
    assert_eq!(w.bundles_written(), 2);
    let dir = a.parent().expect("bundles/");
    let names: Vec<String> =
        std::fs::read_dir(dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "only the two bundles: {names:?}");
}
