//! The evidence bundle (issue 12): written by the real binary after a real batch, checked
//! offline with no database, and any one byte changed in any file of it names that file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::*;

struct World {
    dir: tempfile::TempDir,
    url: String,
}

impl World {
    async fn run(&self, args: &[&str]) -> Out {
        let mut c = console_in(self.dir.path(), "bundle-test");
        c.env("INCIDENT_CONSOLE_SANDBOX_DIR", self.dir.path().join("sandbox")).args(args);
        run_cmd(c, None).await
    }

    async fn db(&self, args: &[&str]) -> Out {
        let mut all = vec!["--database-url", self.url.as_str()];
        all.extend_from_slice(args);
        self.run(&all).await
    }
}

/// Each file of the archive: its name and where its bytes start and end.
fn entries(tar_path: &Path) -> Vec<(String, u64, u64)> {
    let file = std::fs::File::open(tar_path).expect("open the bundle");
    let mut archive = tar::Archive::new(file);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            (name, e.raw_file_position(), e.size())
        })
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open rw");
    f.seek(SeekFrom::Start(at)).expect("seek");
    let mut b = [0u8; 1];
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[b[0] ^ 0x20]).expect("write");
}

#[tokio::test]
async fn a_bundle_verifies_offline_and_one_changed_byte_names_its_file() {
    let t = seeded().await;
    let w = World { dir: tempfile::tempdir().expect("dir"), url: t.url.clone() };
    w.run(&["incident", "new", "--title", "Duplicate GBPUSD fills", "--level", "2"]).await.code(0);
    w.db(&["maintenance", "on", "--reason", "stop new orders"]).await.code(0);
    w.db(&[
        "rollback",
        "--symbol",
        "GBPUSD",
        "--from",
        "13:02",
        "--to",
        "13:06",
        "--reason",
        "duplicate executions",
        "--yes",
    ])
    .await
    .code(0);
    let key = w.dir.path().join("bundle.key");
    let out = w.run(&["--json", "incident", "bundle", "keygen", "--out", key.to_str().expect("utf-8")]).await;
    let public = out.code(0).json()["public_key"].as_str().expect("public key").to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).expect("key").permissions());
    assert_eq!(mode & 0o777, 0o600, "the key is the owner's only");

    let out = w.db(&["--json", "incident", "bundle", "--key", key.to_str().expect("utf-8")]).await;
    let written = out.code(0).clean().json();
    let path = PathBuf::from(written["path"].as_str().expect("path"));
    assert!(written["database_missing"].is_null(), "{written}");
    assert_eq!(written["signed_by"], public.as_str());

    // What it holds, from the archive itself: the batch's audit rows as the database has them.
    let dir = tempfile::tempdir().expect("extract dir");
    let status = std::process::Command::new("tar").arg("xf").arg(&path).arg("-C").arg(dir.path()).status();
    assert!(status.is_ok_and(|s| s.success()));
    let inner = std::fs::read_dir(dir.path()).expect("dir").flatten().next().expect("one directory").path();
    let audit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inner.join("database/audit_log.json")).expect("audit")).expect("json");
    let rows = count(&t, "SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back'").await;
    assert_eq!(audit.as_array().map(Vec::len), Some(rows as usize), "every audit row of the batch");
    assert_eq!(rows, 60);
    let events = std::fs::read_to_string(inner.join("events.json")).expect("events");
    for kind in ["maintenance", "rollback_intended", "\"rollback\"", "audit"] {
        assert!(events.contains(kind), "{kind} in events.json");
    }

    // Offline: no database URL, no sandbox.
    let verify = |p: &Path, extra: &[&str]| {
        let mut args = vec!["incident".to_string(), "bundle".into(), "verify".into(), p.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let args = verify(&path, &["--public-key", &public]);
    let out = w.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    out.code(0).says("Bundle intact").says("Signature verifies");
    let other = "11".repeat(32);
    let args = verify(&path, &["--public-key", &other]);
    w.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await.code(1).says("not by the public key given");

    // One byte of any file changed: the check names that file.
    let files = entries(&path);
    assert!(files.len() >= 9, "{files:?}");
    for (name, start, size) in &files {
        let copy = w.dir.path().join("tampered.tar");
        std::fs::copy(&path, &copy).expect("copy");
        flip_byte(&copy, start + size / 2);
        let args = verify(&copy, &[]);
        let out = w.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let short = name.split_once('/').map_or(name.as_str(), |x| x.1);
        out.code(1).says("DOES NOT MATCH").says(short);
    }

    // The journal says it was written, and the checklist's item is ticked (at Level 2 too:
    // only the console can know it was written).
    let journal =
        std::fs::read_to_string(path.parent().and_then(Path::parent).expect("incident dir").join("journal.jsonl"))
            .expect("journal");
    assert!(journal.contains("\"bundle_written\""), "{journal}");
    assert!(journal.contains("\"item\":\"evidence_bundle\""), "{journal}");
}
