//! An incident's evidence bundle: the files it holds, a manifest of their SHA-256 checksums
//! (with the manifest's own checksum beside it), optionally signed with ed25519, and the
//! offline check that names the first file that does not match. Pure: the files are bytes
//! here; `store::bundle` writes and reads the archive, `ops::bundle` gathers them.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::journal::event::Event;

use crate::core::journal::sha256_hex;

/// The manifest's name in the bundle.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's own SHA-256, so a change to it is caught without a signature.
pub const MANIFEST_SUM: &str = "manifest.sha256";
/// The ed25519 signature of the manifest, when signed.
pub const SIGNATURE: &str = "manifest.sig";

/// One file of the bundle as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Its path inside the bundle.
    pub path: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// What the bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The bundle format (1).
    pub format: u32,
    /// The incident.
    pub incident: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// The tool and its version that wrote it.
    pub tool: String,
    /// Every file but the manifest, its checksum and its signature, in order.
    pub files: Vec<ManifestFile>,
}

/// The signature file: the public key it verifies with, and the signature of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    /// Always "ed25519".
    pub algorithm: String,
    /// The public key, hex (32 bytes).
    pub public_key: String,
    /// The signature of the manifest's bytes, hex (64 bytes).
    pub signature: String,
}

/// The manifest of `files`.
pub fn manifest(incident: &str, created_at: DateTime<Utc>, tool: &str, files: &[(String, Vec<u8>)]) -> Manifest {
    Manifest {
        format: 1,
        incident: incident.to_string(),
        created_at,
        tool: tool.to_string(),
        files: files
            .iter()
            .map(|(path, bytes)| ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
    }
}

/// The files that seal a bundle: the manifest, its checksum, and (with a key) its
/// signature. `files` are the bundle's other files.
pub fn seal(m: &Manifest, key: Option<&SigningKey>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut bytes = serde_json::to_vec_pretty(m).map_err(|e| format!("the manifest: {e}"))?;
    bytes.push(b'\n');
    let mut out = vec![(MANIFEST_SUM.to_string(), format!("{}  {MANIFEST}\n", sha256_hex(&bytes)).into_bytes())];
    if let Some(key) = key {
        let sig = SignatureFile {
            algorithm: "ed25519".into(),
            public_key: hex(key.verifying_key().as_bytes()),
            signature: hex(&key.sign(&bytes).to_bytes()),
        };
        let mut s = serde_json::to_vec_pretty(&sig).map_err(|e| format!("the signature: {e}"))?;
        s.push(b'\n');
        out.push((SIGNATURE.to_string(), s));
    }
    out.insert(0, (MANIFEST.to_string(), bytes));
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lower-case hex of exactly `n` bytes: one spelling per value, so that a
/// changed letter's case in a bundle is a changed value (callers lower-case what a person
/// typed).
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A signing key from its file's text: the 32-byte seed in hex.
pub fn signing_key(text: &str) -> Option<SigningKey> {
    from_hex::<32>(&text.to_ascii_lowercase()).map(|seed| SigningKey::from_bytes(&seed))
}

/// The public key of a signing key, hex.
pub fn public_key_hex(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

/// The operations, orders and users an incident's rollbacks touched, as its journal says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Operation ids (the audit rows' `batch_id`).
    pub operations: Vec<Uuid>,
    /// Orders named by pre-checks and single rollbacks.
    pub orders: Vec<Uuid>,
    /// Users of the rollbacks.
    pub users: Vec<Uuid>,
    /// Approval requests the journal names (filed, decided, used).
    pub approvals: Vec<Uuid>,
}

/// The operations, orders and users the journal says the incident's rollbacks touched.
pub fn touched<'a>(events: impl Iterator<Item = &'a Event>) -> Touched {
    let (mut ops, mut orders, mut users) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut approvals = BTreeSet::new();
    for event in events {
        match event {
            Event::RollbackIntended(d) => {
                ops.insert(d.operation);
                orders.extend(d.order);
                users.extend(d.user);
            }
            Event::Rollback(d) => {
                ops.extend(d.operation);
                orders.extend(d.order);
                users.extend(d.user);
                users.extend(d.user_ids.iter().copied());
            }
            Event::RollbackSettled(d) => {
                ops.insert(d.operation);
                users.extend(d.user_ids.iter().copied());
            }
            Event::Precheck(d) => {
                orders.insert(d.order);
                users.insert(d.user);
            }
            Event::Approval(d) => {
                approvals.insert(d.id);
            }
            _ => {}
        }
    }
    Touched {
        operations: ops.into_iter().collect(),
        orders: orders.into_iter().collect(),
        users: users.into_iter().collect(),
        approvals: approvals.into_iter().collect(),
    }
}

/// What the offline check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleCheck {
    /// The incident the manifest names.
    pub incident: Option<String>,
    /// Files whose checksum and size were compared and matched.
    pub files_checked: usize,
    /// The first problem, naming its file; none: the bundle is intact.
    pub problem: Option<String>,
    /// Signed: the public key it verified with.
    pub signed_by: Option<String>,
}

impl BundleCheck {
    /// No problem.
    pub fn intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks a bundle's files (path, bytes) against its manifest, offline: the manifest against
/// its checksum (and its signature, when there is one, against `public_key` when given),
/// then every listed file in order, then files the manifest does not list.
pub fn check(files: &[(String, Vec<u8>)], public_key: Option<&[u8; 32]>) -> BundleCheck {
    let mut out = BundleCheck { incident: None, files_checked: 0, problem: None, signed_by: None };
    let get = |name: &str| files.iter().find(|(p, _)| p == name).map(|(_, b)| b);
    let fail = |mut out: BundleCheck, why: String| {
        out.problem = Some(why);
        out
    };
    let Some(manifest_bytes) = get(MANIFEST) else { return fail(out, format!("{MANIFEST}: missing")) };
    let Some(sum) = get(MANIFEST_SUM) else { return fail(out, format!("{MANIFEST_SUM}: missing")) };
    // Byte for byte as the tool writes it: a changed byte anywhere in either file is caught,
    // not only one that changes what a lenient reader would make of it.
    if sum.as_slice() != format!("{}  {MANIFEST}\n", sha256_hex(manifest_bytes)).as_bytes() {
        return fail(
            out,
            format!("{MANIFEST} does not match {MANIFEST_SUM}: one of them was changed since the bundle was written"),
        );
    }
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => return fail(out, format!("{MANIFEST}: not a manifest ({e})")),
    };
    // A format this version does not know may mean something else by the same fields.
    if manifest.format != 1 {
        return fail(out, format!("{MANIFEST}: format {} is not one this version reads (1)", manifest.format));
    }
    out.incident = Some(manifest.incident.clone());
    match (get(SIGNATURE), public_key) {
        (Some(sig), pinned) => match verify_signature(sig, manifest_bytes, pinned) {
            Ok(key) => out.signed_by = Some(key),
            Err(why) => return fail(out, format!("{SIGNATURE}: {why}")),
        },
        (None, Some(_)) => return fail(out, format!("{SIGNATURE}: missing, but a public key was given")),
        (None, None) => {}
    }
    for (i, f) in manifest.files.iter().enumerate() {
        // Listed twice, it is counted twice: a manifest we write never does that.
        if manifest.files[..i].iter().any(|g| g.path == f.path) {
            return fail(out, format!("{}: listed twice in {MANIFEST}", f.path));
        }
        let Some(bytes) = get(&f.path) else { return fail(out, format!("{}: missing", f.path)) };
        if bytes.len() as u64 != f.bytes || sha256_hex(bytes) != f.sha256 {
            return fail(
                out,
                format!(
                    "{}: its SHA-256 is {} ({} bytes); the manifest says {} ({} bytes)",
                    f.path,
                    sha256_hex(bytes),
                    bytes.len(),
                    f.sha256,
                    f.bytes
                ),
            );
        }
        out.files_checked += 1;
    }
    let sealed = [MANIFEST, MANIFEST_SUM, SIGNATURE];
    if let Some((extra, _)) =
        files.iter().find(|(p, _)| !sealed.contains(&p.as_str()) && !manifest.files.iter().any(|f| &f.path == p))
    {
        return fail(out, format!("{extra}: not in the manifest (added after the bundle was written)"));
    }
    out
}

fn verify_signature(sig: &[u8], manifest: &[u8], pinned: Option<&[u8; 32]>) -> Result<String, String> {
    let s: SignatureFile = serde_json::from_slice(sig).map_err(|e| format!("not a signature file ({e})"))?;
    // Byte for byte as the tool writes it (hex in lower case, its layout): the same key and
    // signature spelt otherwise (upper-case hex, other spacing) is still a changed file.
    let mut canonical = serde_json::to_vec_pretty(&s).map_err(|e| format!("not a signature file ({e})"))?;
    canonical.push(b'\n');
    if canonical != sig {
        return Err("changed since the bundle was written (not as incident-console writes it)".into());
    }
    if s.algorithm != "ed25519" {
        return Err(format!("unknown algorithm {:?}", crate::core::sanitize::line(&s.algorithm)));
    }
    let key_bytes = from_hex::<32>(&s.public_key).ok_or("the public key is not 32 bytes of hex")?;
    // Shown as the bytes read, in canonical hex: the file's text may wrap them in
    // whitespace (a carriage return, a NEL) that a terminal would act on.
    let shown = hex(&key_bytes);
    if let Some(p) = pinned
        && p != &key_bytes
    {
        return Err(format!("signed by {shown}, not by the public key given"));
    }
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|e| format!("not a public key ({e})"))?;
    let sig_bytes = from_hex::<64>(&s.signature).ok_or("the signature is not 64 bytes of hex")?;
    key.verify(manifest, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "the signature does not verify: the manifest was changed, or signed by another key".to_string())?;
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![("journal.jsonl".into(), b"{\"a\":1}\n".to_vec()), ("reports/r.md".into(), b"# report\n".to_vec())]
    }

    fn bundle(key: Option<&SigningKey>) -> Vec<(String, Vec<u8>)> {
        let f = files();
        let m = manifest("INC-1", Utc::now(), "incident-console 0.1.0", &f);
        let mut all = f;
        all.extend(seal(&m, key).unwrap_or_default());
        all
    }

    #[test]
    fn an_intact_bundle_checks_and_one_changed_byte_names_its_file() {
        let key = SigningKey::from_bytes(&[7; 32]);
        for signed in [false, true] {
            let all = bundle(signed.then_some(&key));
            let ok = check(&all, None);
            assert!(ok.intact(), "{ok:?}");
            assert_eq!(ok.files_checked, 2);
            assert_eq!(ok.signed_by.is_some(), signed);
            // Every byte of every file, flipped two ways (0x20 turns hex a-f into A-F, which a
            // lenient reader would take for the same value).
            for i in 0..all.len() {
                for at in 0..all[i].1.len() {
                    for bit in [0x01, 0x20] {
                        let mut changed = all.clone();
                        let name = changed[i].0.clone();
                        changed[i].1[at] ^= bit;
                        let c = check(&changed, None);
                        let problem = c.problem.unwrap_or_default();
                        assert!(problem.contains(&name), "{name} byte {at} ^ {bit:#x}: {problem}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_pinned_key_and_extra_files_are_checked() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let all = bundle(Some(&key));
        assert!(check(&all, Some(key.verifying_key().as_bytes())).intact());
        let c = check(&all, Some(other.verifying_key().as_bytes()));
        assert!(c.problem.is_some_and(|p| p.contains("not by the public key given")));
        let mut extra = all.clone();
        extra.push(("planted.txt".into(), b"x".to_vec()));
        assert!(check(&extra, None).problem.is_some_and(|p| p.starts_with("planted.txt")));
        let unsigned = bundle(None);
        assert!(check(&unsigned, Some(key.verifying_key().as_bytes())).problem.is_some_and(|p| p.contains("missing")));
        assert_eq!(signing_key(&"07".repeat(32)).map(|k| public_key_hex(&k)), Some(public_key_hex(&key)));
        assert!(signing_key("zz").is_none());
    }

    /// The bundle with `path`'s bytes replaced, the manifest and its checksum rewritten to
    /// match, and (with `key`) signed again: what someone holding the archive can do.
    fn forged(key: Option<&SigningKey>, path: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut f = files();
        for (p, b) in f.iter_mut() {
            if p == path {
                *b = bytes.to_vec();
            }
        }
        let m = manifest("INC-1", Utc::now(), "incident-console 0.1.0", &f);
        f.extend(seal(&m, key).unwrap_or_default());
        f
    }

    #[test]
    fn a_rewritten_bundle_is_caught_only_by_a_pinned_key() {
        let ours = SigningKey::from_bytes(&[7; 32]);
        let theirs = SigningKey::from_bytes(&[9; 32]);
        let pin = ours.verifying_key().to_bytes();
        // Unsigned, rewritten whole: the checksums agree; nothing says who wrote it.
        let c = check(&forged(None, "journal.jsonl", b"{\"forged\":1}\n"), None);
        assert!(c.intact() && c.signed_by.is_none(), "{c:?}");
        // Re-signed with another key: verifies against the key it carries, not against ours.
        let resigned = forged(Some(&theirs), "journal.jsonl", b"{\"forged\":1}\n");
        let c = check(&resigned, None);
        assert_eq!(c.signed_by, Some(public_key_hex(&theirs)));
        let c = check(&resigned, Some(&pin));
        assert!(c.problem.as_deref().is_some_and(|p| p.starts_with(SIGNATURE) && p.contains("not by the public key")));
        // Our signature kept, a file and the manifest changed: the signature no longer verifies.
        let mut spliced = forged(None, "journal.jsonl", b"{\"forged\":1}\n");
        spliced.extend(bundle(Some(&ours)).into_iter().filter(|(p, _)| p == SIGNATURE));
        let c = check(&spliced, Some(&pin));
        assert!(c.problem.as_deref().is_some_and(|p| p.contains("does not verify")), "{c:?}");
        // The signature stripped (a downgrade to unsigned): only the pinned key notices.
        let stripped: Vec<_> = bundle(Some(&ours)).into_iter().filter(|(p, _)| p != SIGNATURE).collect();
        assert!(check(&stripped, None).intact());
        assert!(check(&stripped, Some(&pin)).problem.is_some_and(|p| p.contains("missing")));
    }

    #[test]
    fn a_manifest_that_lists_oddly_is_refused_and_names_the_file() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let with = |edit: &dyn Fn(&mut Manifest), extra: &[(&str, &[u8])]| {
            let mut f = files();
            let mut m = manifest("INC-1", Utc::now(), "t", &f);
            edit(&mut m);
            f.extend(extra.iter().map(|(p, b)| (p.to_string(), b.to_vec())));
            f.extend(seal(&m, Some(&key)).unwrap_or_default());
            check(&f, Some(key.verifying_key().as_bytes())).problem.unwrap_or_default()
        };
        let twice = |m: &mut Manifest| {
            let first = m.files[0].clone();
            m.files.push(first);
        };
        assert!(with(&twice, &[]).contains("journal.jsonl: listed twice"));
        let up = |m: &mut Manifest| m.files[0].path = "../journal.jsonl".into();
        let p = with(&up, &[]);
        assert!(p.starts_with("../journal.jsonl: missing"), "{p}");
        let omit = |m: &mut Manifest| {
            m.files.remove(1);
        };
        assert!(with(&omit, &[]).starts_with("reports/r.md: not in the manifest"));
        // A case twin (one file on macOS or Windows when extracted) is a file it does not list.
        let none = |_: &mut Manifest| {};
        assert!(with(&none, &[("JOURNAL.jsonl", b"x")]).starts_with("JOURNAL.jsonl: not in the manifest"));
        let newer = |m: &mut Manifest| m.format = 2;
        assert!(with(&newer, &[]).contains("format 2"));
        let empty = |m: &mut Manifest| m.files.clear();
        assert!(with(&empty, &[]).starts_with("journal.jsonl: not in the manifest"));
    }

    #[test]
    fn a_signature_file_spelt_otherwise_is_a_changed_file() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut all = bundle(Some(&key));
        for (p, b) in all.iter_mut() {
            if p == SIGNATURE {
                let mut s: SignatureFile = serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}"));
                s.public_key = format!("\r\u{85}{}\u{2028}\x0b", s.public_key);
                *b = serde_json::to_vec(&s).unwrap_or_default();
            }
        }
        // A signature file spelt otherwise than the tool writes it is a changed file, and
        // what is said of it carries none of the characters planted in it.
        for pinned in [None, Some(*SigningKey::from_bytes(&[8; 32]).verifying_key().as_bytes())] {
            let c = check(&all, pinned.as_ref());
            let p = c.problem.unwrap_or_default();
            assert!(p.starts_with(SIGNATURE) && p.contains("changed"), "{p}");
            assert!(!p.chars().any(|ch| ch.is_control() || ch == '\u{2028}'), "{p:?}");
            assert_eq!(c.signed_by, None);
        }
    }
}
