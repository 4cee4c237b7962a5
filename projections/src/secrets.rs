//! Secrets, as ciphertext only: the clear value never reaches the log or this keyspace.
//!
//! Keys (keyspace `secrets`): `secret:<org|_>:<owner>:<workflow|_>:<name>` → `SecretRow` (JSON).

use events::event::{Event, SecretScope};
use events::{Envelope, Tx, fjall::Keyspace};
use serde::{Deserialize, Serialize};

use crate::{Projection, get_json, put_json};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "secrets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRow {
    pub scope: SecretScope,
    /// Hex of nonce || ciphertext || tag.
    pub ciphertext: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: String,
}

/// The key of a secret: the same text as its stream id.
pub fn secret_key(scope: &SecretScope) -> Vec<u8> {
    events::stream::secret(&scope.org_id, &scope.owner, &scope.workflow_id, &scope.name)
        .into_bytes()
}

/// All user- and workflow-scoped secrets of an owner (no organisation).
pub fn owner_prefix(owner: &str) -> Vec<u8> {
    format!("secret:_:{owner}:").into_bytes()
}

#[derive(Clone)]
pub struct Secrets {
    keyspace: Keyspace,
}

impl Secrets {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }
}

impl Projection for Secrets {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    fn apply(&self, env: &Envelope, tx: &mut Tx) -> events::Result<()> {
        let at = i64::try_from(env.recorded_at).unwrap_or(i64::MAX);
        match &env.event {
            Event::SecretCreated(e) => {
                let row = SecretRow {
                    scope: e.scope.clone(),
                    ciphertext: e.ciphertext.clone(),
                    description: e.description.clone(),
                    created_at: at,
                    updated_at: at,
                    created_by: env.actor.clone(),
                };
                put_json(tx, &self.keyspace, secret_key(&e.scope), &row, self.name())
            }
            Event::SecretUpdated(e) => {
                let key = secret_key(&e.scope);
                if let Some(mut row) = get_json::<SecretRow>(tx, &self.keyspace, &key, self.name())?
                {
                    row.ciphertext.clone_from(&e.ciphertext);
                    row.updated_at = at;
                    put_json(tx, &self.keyspace, key, &row, self.name())?;
                }
                Ok(())
            }
            Event::SecretDeleted(e) => {
                tx.remove(&self.keyspace, secret_key(&e.scope));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
