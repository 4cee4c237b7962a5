//! Revoked API keys.
//!
//! Keys (keyspace `access`): `revoked:<jti>` → revocation time (ms, u64 BE).

use events::event::Event;
use events::{Envelope, Tx, fjall::Keyspace};

use crate::Projection;

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "access";

pub fn revoked_key(jti: &str) -> Vec<u8> {
    format!("revoked:{jti}").into_bytes()
}

#[derive(Clone)]
pub struct Access {
    keyspace: Keyspace,
}

impl Access {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }
}

impl Projection for Access {
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
        if let Event::ApiKeyRevoked(e) = &env.event {
            tx.insert(
                &self.keyspace,
                revoked_key(&e.jti),
                env.recorded_at.to_be_bytes(),
            );
        }
        Ok(())
    }
}
