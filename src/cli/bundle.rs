//! `incident bundle [--out FILE] [--key FILE] | verify FILE [--public-key HEX] | keygen --out FILE`.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::json;

use super::args::{BundleAction, BundleArgs, GlobalArgs};
use super::print_json;
use crate::core::bundle;
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize::line;
use crate::ops::incident::open;

/// `incident bundle …`
pub(super) async fn bundle_command(g: &GlobalArgs, id: Option<&str>, a: BundleArgs, op: &str) -> Result<i32> {
    match a.action {
        Some(BundleAction::Verify { file, public_key }) => verify(g, &file, public_key.as_deref()),
        Some(BundleAction::Keygen { out }) => keygen(g, &out),
        None => write(g, id, a.out, a.key, op).await,
    }
}

async fn write(g: &GlobalArgs, id: Option<&str>, out: Option<PathBuf>, key: Option<PathBuf>, op: &str) -> Result<i32> {
    let config = crate::store::config::ConsoleConfig::load()?;
    let key_path = key.or(config.bundle_signing_key.clone());
    let key = key_path.as_deref().map(crate::store::bundle::signing_key_file).transpose()?;
    let config_text = crate::store::config::config_text();
    let mut inc = open(id)?;
    let settings = crate::store::target::at_hand(g.database_url(), &g.session()).await;
    let database = settings.as_ref().map(|s| s.url.clone()).unwrap_or_default();
    let now = Utc::now();
    // The database at hand (a URL given, or the sandbox already running), within 5 s; the
    // bundle is written without its database part otherwise, and says so.
    let pool = match &settings {
        Some(s) => tokio::time::timeout(std::time::Duration::from_secs(5), s.pool(2)).await.ok().and_then(|r| r.ok()),
        None => None,
    };
    let written = match pool {
        Some(pool) => {
            let w =
                crate::ops::bundle::write(&mut inc, Some(&pool), &database, config_text, out, key.as_ref(), op, now)
                    .await;
            pool.close().await;
            w?
        }
        None => crate::ops::bundle::write(&mut inc, None, &database, config_text, out, key.as_ref(), op, now).await?,
    };
    if g.json {
        print_json(&written)?;
    } else {
        println!("Evidence bundle written: {} ({} files)", written.path.display(), written.files);
        println!("Manifest SHA-256: {}", written.manifest_sha256);
        match &written.signed_by {
            Some(k) => println!("Signed (ed25519), public key {k}"),
            None => println!("Not signed (give --key FILE or set [bundle] signing_key)"),
        }
        if let Some(why) = &written.database_missing {
            println!("Without the database's part: {}", line(why));
        }
        println!("Check it offline: incident-console incident bundle verify {}", written.path.display());
    }
    Ok(EXIT_OK)
}

fn verify(g: &GlobalArgs, file: &Path, public_key: Option<&str>) -> Result<i32> {
    let pinned = match public_key {
        Some(k) => Some(
            bundle::from_hex::<32>(&k.to_ascii_lowercase())
                .ok_or_else(|| Error::BadInput("--public-key: 64 hex digits (32 bytes) are expected".into()))?,
        ),
        None => None,
    };
    let files = crate::store::bundle::read(file)?;
    let c = bundle::check(&files, pinned.as_ref());
    // What "intact" is worth: checksums alone catch accidental change only (whoever changes
    // a file can rewrite the manifest and its checksum too), and a signature checked with
    // the key the bundle itself carries proves only that someone signed it.
    let assurance = match (&c.signed_by, &pinned) {
        (Some(_), Some(_)) => "signed_by_the_key_given",
        (Some(_), None) => "signed_by_an_unpinned_key",
        (None, _) => "accidental_change_only",
    };
    if g.json {
        print_json(&json!({ "bundle": file, "intact": c.intact(), "assurance": assurance, "check": c }))?;
    } else {
        match &c.problem {
            None => {
                println!(
                    "Bundle intact: {} file(s) match the manifest of {}.",
                    c.files_checked,
                    line(c.incident.as_deref().unwrap_or("?"))
                );
                match (&c.signed_by, &pinned) {
                    (Some(k), Some(_)) => println!("Signature verifies (ed25519) with the public key given, {k}."),
                    (Some(k), None) => {
                        println!(
                            "Signature verifies (ed25519), but with the public key the bundle itself carries, {k}:"
                        );
                        println!(
                            "anyone can re-sign a changed bundle with a key of their own; it proves who wrote it only \
                             when checked with --public-key KEY (the key you were given)."
                        );
                    }
                    (None, _) => {
                        println!(
                            "Not signed: the checksums catch accidental change only; whoever changes a file can \
                             rewrite the manifest and its checksum to match. Only a signed bundle checked with \
                             --public-key KEY proves it is the one written."
                        );
                    }
                }
            }
            Some(p) => println!("Bundle DOES NOT MATCH: {}", line(p)),
        }
    }
    Ok(if c.intact() { EXIT_OK } else { EXIT_CHECK_FAILED })
}

fn keygen(g: &GlobalArgs, out: &Path) -> Result<i32> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::file("create (it must not exist)", out, e))?;
    f.write_all(format!("{hex}\n").as_bytes()).map_err(|e| Error::file("write", out, e))?;
    let public = bundle::public_key_hex(&key);
    if g.json {
        print_json(&json!({ "key": out, "public_key": public }))?;
    } else {
        println!("Signing key written to {} (mode 0600). Public key: {public}", out.display());
        println!("Give the public key to whoever checks bundles: incident bundle verify FILE --public-key {public}");
    }
    Ok(EXIT_OK)
}
