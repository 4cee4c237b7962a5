//! Checkpoints: C2SP tlog-checkpoint texts (origin, size, base64 root, no extension lines)
//! signed as C2SP signed notes with the aggregator's Ed25519 log key.
//!
//! ```text
//! ava-aggregator.example/31337
//! 1504
//! sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=
//!
//! — ava-aggregator.example/31337 hI2DJw...
//! — ava-aggregator.example/31337/operators 3t8kAgAB...
//! ```
//!
//! The key's name is the origin. Its secret is the standard text form
//! `PRIVATE+KEY+<name>+<key id>+<base64>`; its verifier key, what auditors are given,
//! `<name>+<key id>+<base64(0x01 ‖ 32-byte Ed25519 public key)>`. The second signature line, when
//! there is one, is the operators' BLS cosignature (see `cosign`); clients that do not know it
//! ignore it, as the signed-note specification requires.

use signed_note::{Note, NoteError, Signer, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::cosign::{self, Cosignature};
use crate::error::{Error, Result};

/// The aggregator's checkpoint signing key.
pub struct LogKey {
    signer: StandardSigner,
    secret: String,
    verifier: LogVerifier,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("verifier", &self.verifier.key)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A fresh key for the log named `origin`.
    pub fn generate(origin: &str) -> Result<Self> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(Error::Key(format!(
                "{origin:?} cannot name a log: it must be non-empty, without spaces or '+'"
            )));
        }
        let (secret, _) = signed_note::generate_key(&mut rand_core::OsRng, origin);
        Self::from_secret(&secret)
    }

    /// Reads the secret text (`PRIVATE+KEY+...`), as the keys directory holds it.
    pub fn from_secret(text: &str) -> Result<Self> {
        let text = text.trim();
        let signer = StandardSigner::new(text)
            .map_err(|e| Error::Key(format!("not a signed-note private key: {e}")))?;
        let name = signer.name().to_owned();
        // PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>: the public half derives from the seed.
        // (base64 has '+' in its alphabet: split off the four fields before it.)
        let encoded = text.splitn(5, '+').nth(4).unwrap_or_default();
        let bytes = base64_decode(encoded)
            .ok_or_else(|| Error::Key("the private key is not base64".into()))?;
        let seed: [u8; 32] = bytes
            .get(1..)
            .and_then(|s| s.try_into().ok())
            .filter(|_| bytes.first() == Some(&1))
            .ok_or_else(|| Error::Key("not an Ed25519 private key".into()))?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let verifier = LogVerifier::new(&signed_note::new_ed25519_verifier_key(&name, &public))?;
        Ok(Self {
            signer,
            secret: text.to_owned(),
            verifier,
        })
    }

    /// The secret text, for the key file (mode 0600).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    pub fn verifier(&self) -> &LogVerifier {
        &self.verifier
    }

    /// The signed checkpoint of a tree: the note's bytes.
    pub fn sign(&self, size: u64, root: Hash) -> Result<Vec<u8>> {
        let checkpoint = Checkpoint::new(self.origin(), size, root, "")
            .map_err(|e| Error::Checkpoint(e.to_string()))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[]).map_err(note_error)?;
        note.add_sigs(&[&self.signer]).map_err(note_error)?;
        Ok(note.to_bytes())
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn note_error(e: NoteError) -> Error {
    Error::Checkpoint(e.to_string())
}

/// Checks checkpoints against a log's verifier key.
#[derive(Clone)]
pub struct LogVerifier {
    verifier: StandardVerifier,
    key: String,
    origin: String,
}

impl std::fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

impl LogVerifier {
    /// From the verifier key text `<name>+<key id>+<base64>` (`aggregator log-key` prints it).
    pub fn new(key: &str) -> Result<Self> {
        let key = key.trim();
        let verifier = StandardVerifier::new(key)
            .map_err(|e| Error::Key(format!("{key:?} is not a log verifier key: {e}")))?;
        let origin = key.split('+').next().unwrap_or_default().to_owned();
        Ok(Self {
            verifier,
            key: key.to_owned(),
            origin,
        })
    }

    /// The verifier key text.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The origin the key signs for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key id (the first four bytes of the signature lines it makes).
    pub fn key_id(&self) -> u32 {
        signed_note::Verifier::key_id(&self.verifier)
    }

    /// Parses a signed checkpoint and checks the log's signature; reads the operators'
    /// cosignature line if there is one (checking it needs the operator set: `cosign`).
    pub fn open(&self, note: &[u8]) -> Result<SignedCheckpoint> {
        let parsed = Note::from_bytes(note)
            .map_err(|e| Error::Checkpoint(format!("not a signed note: {e}")))?;
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        let (_, unverified) = parsed.verify(&known).map_err(|e| match e {
            NoteError::UnverifiedNote => Error::Checkpoint(format!(
                "the checkpoint is not signed by the log key {}",
                self.key
            )),
            NoteError::InvalidSignature { .. } => Error::Checkpoint(
                "the log key's signature does not verify: the checkpoint was altered".into(),
            ),
            other => Error::Checkpoint(other.to_string()),
        })?;
        let checkpoint = Checkpoint::from_bytes(parsed.text())
            .map_err(|_| Error::Checkpoint("the note is not a checkpoint".into()))?;
        if checkpoint.origin() != self.origin {
            return Err(Error::Checkpoint(format!(
                "the checkpoint is of log {:?}, the key signs for {:?}",
                checkpoint.origin(),
                self.origin
            )));
        }
        let name = cosign::key_name(&self.origin);
        let id = cosign::key_id(&self.origin);
        let mut lines = unverified
            .iter()
            .filter(|s| s.name() == name && s.id() == id);
        let cosignature = lines
            .next()
            .map(|s| Cosignature::decode(s.signature()))
            .transpose()?;
        if lines.next().is_some() {
            return Err(Error::Checkpoint(
                "the checkpoint carries two operator cosignatures".into(),
            ));
        }
        Ok(SignedCheckpoint {
            origin: checkpoint.origin().to_owned(),
            size: checkpoint.size(),
            root: *checkpoint.hash(),
            text: parsed.text().to_vec(),
            note: note.to_vec(),
            cosignature,
        })
    }
}

/// A checkpoint whose log signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The note text every signature covers.
    pub text: Vec<u8>,
    /// The whole signed note.
    pub note: Vec<u8>,
    /// The operators' cosignature line, not yet checked.
    pub cosignature: Option<Cosignature>,
}

/// A signature computed elsewhere (the operators' aggregate), added as a note line.
struct Precomputed {
    name: String,
    id: u32,
    bytes: Vec<u8>,
}

impl Signer for Precomputed {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, _msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.bytes.clone())
    }
}

/// The note with `cosignature` as its operators' line (replacing an older one).
pub fn with_cosignature(note: &[u8], origin: &str, cosignature: &Cosignature) -> Result<Vec<u8>> {
    let mut parsed = Note::from_bytes(note).map_err(note_error)?;
    let line = Precomputed {
        name: cosign::key_name(origin),
        id: cosign::key_id(origin),
        bytes: cosignature.encode(),
    };
    parsed.add_sigs(&[&line]).map_err(note_error)?;
    Ok(parsed.to_bytes())
}

/// The origin, size and root of a checkpoint note, no signature checked (for an auditor who
/// kept a checkpoint and has no key at hand: said so wherever it is used).
pub fn read_unverified(note: &[u8]) -> Result<(String, u64, Hash)> {
    let text = note_text(note)?;
    let checkpoint = Checkpoint::from_bytes(&text)
        .map_err(|_| Error::Checkpoint("the note is not a checkpoint".into()))?;
    Ok((
        checkpoint.origin().to_owned(),
        checkpoint.size(),
        *checkpoint.hash(),
    ))
}

/// The text of a checkpoint note without checking any signature (an operator reads the text it
/// is asked to cosign, then checks it against its pinned log key).
pub fn note_text(note: &[u8]) -> Result<Vec<u8>> {
    Ok(Note::from_bytes(note)
        .map_err(|e| Error::Checkpoint(format!("not a signed note: {e}")))?
        .text()
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_signed_by_the_log_key_opens_and_an_altered_one_does_not() {
        let key = LogKey::generate("example.test/log").unwrap();
        let root = tlog_tiles::record_hash(b"x");
        let note = key.sign(42, root).unwrap();
        let verifier = LogVerifier::new(key.verifier().key()).unwrap();
        let opened = verifier.open(&note).unwrap();
        assert_eq!((opened.size, opened.root), (42, root));
        assert!(opened.cosignature.is_none());

        let text = String::from_utf8(note.clone()).unwrap();
        let altered = text.replacen("\n42\n", "\n43\n", 1);
        let err = verifier.open(altered.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("altered"), "{err}");

        let other = LogKey::generate("example.test/log").unwrap();
        let err = LogVerifier::new(other.verifier().key())
            .unwrap()
            .open(&note)
            .unwrap_err();
        assert!(
            err.to_string().contains("not signed by the log key"),
            "{err}"
        );

        let reloaded = LogKey::from_secret(key.secret()).unwrap();
        assert_eq!(reloaded.verifier().key(), key.verifier().key());
    }

    #[test]
    fn a_bad_origin_or_key_text_is_refused() {
        assert!(LogKey::generate("has space").is_err());
        assert!(LogKey::generate("has+plus").is_err());
        assert!(LogKey::from_secret("PRIVATE+KEY+x+00000000+AAAA").is_err());
        assert!(LogVerifier::new("example+00000000+AQ==").is_err());
    }
}
