//! Interoperability: checkpoints and inclusion proofs the crate makes verify with Sigstore's
//! JavaScript verifier (`@sigstore/verify` from npm, in `tests/interop`), an implementation of the
//! signed-note checkpoint and RFC 6962 formats that shares no code with ours; what we alter, it
//! rejects. The operators' BLS line rides along: a standard client must ignore it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha256};
use tlog::bundle;

use crate::support::{EXECUTION, ORIGIN, Ran, World};

fn npm_ci(dir: &Path) {
    if dir
        .join("node_modules/@sigstore/verify/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("running npm ci (is Node.js installed?)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[test]
fn sigstores_verifier_accepts_our_checkpoints_and_proofs_and_rejects_altered_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    npm_ci(&dir);

    let world = World::new(Ran::Attested);
    let (size, cosigned) = world.checkpoint(&[0, 1, 2]);
    let b = bundle::build(
        world.log.keyspaces(),
        &world.store,
        EXECUTION,
        &cosigned,
        size,
    )
    .unwrap();
    let (_, log_only) = world.checkpoint(&[]);
    let note = String::from_utf8(cosigned).unwrap();
    assert!(note.contains(&format!("— {ORIGIN}/operators ")), "{note}");

    let vkey = world.key.verifier().key();
    let raw = STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    assert_eq!(raw[0], 1, "Ed25519");
    let leaf = |body: &str| STANDARD.encode(Sha256::digest(body.as_bytes()));

    let mut cases = Vec::new();
    for (i, e) in b.events.iter().enumerate() {
        cases.push(
            json!({"name": format!("event{i}"), "note": note, "leaf": leaf(&e.body),
            "index": e.index, "hashes": e.proof}),
        );
    }
    let first = &b.events[0];
    cases.push(
        json!({"name": "log-only", "note": String::from_utf8(log_only).unwrap(),
        "leaf": leaf(&first.body), "index": first.index, "hashes": first.proof}),
    );
    let altered = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    cases.push(
        json!({"name": "altered-size", "note": altered, "leaf": leaf(&first.body),
        "index": first.index, "hashes": first.proof}),
    );
    let mut body = first.body.clone();
    body.push(' ');
    cases.push(
        json!({"name": "altered-leaf", "note": note, "leaf": leaf(&body),
        "index": first.index, "hashes": first.proof}),
    );
    cases.push(
        json!({"name": "other-index", "note": note, "leaf": leaf(&first.body),
        "index": first.index + 1, "hashes": first.proof}),
    );
    let other_key = tlog::LogKey::generate(ORIGIN).unwrap();
    let forged = String::from_utf8(other_key.sign(size, tlog::EMPTY_HASH).unwrap()).unwrap();
    cases.push(
        json!({"name": "other-key", "note": forged, "leaf": leaf(&first.body),
        "index": first.index, "hashes": first.proof}),
    );

    let input = json!({"origin": ORIGIN, "publicKey": STANDARD.encode(&raw[1..]), "cases": cases});
    let mut child = Command::new("node")
        .arg(dir.join("verify.js"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no result for {name}:\n{stdout}"))
            .to_owned()
    };
    for i in 0..b.events.len() {
        assert_eq!(
            line(&format!("event{i}")),
            format!("event{i} ok size={size}")
        );
    }
    assert_eq!(line("log-only"), format!("log-only ok size={size}"));
    for name in ["altered-size", "altered-leaf", "other-index", "other-key"] {
        assert!(
            line(name).starts_with(&format!("{name} rejected")),
            "{stdout}"
        );
    }
}
