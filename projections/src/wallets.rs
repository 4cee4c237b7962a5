//! Smart wallets each owner registered.
//!
//! Keys (keyspace `wallets`): `w:<owner>:<wallet>` → `WalletRow` (JSON).

use events::event::Event;
use events::{Envelope, Tx, fjall::Keyspace};
use serde::{Deserialize, Serialize};

use crate::{Projection, get_json, put_json};

/// The keyspace, and the projection's name in `projection_meta`.
pub const NAME: &str = "wallets";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRow {
    pub owner: String,
    pub address: String,
    /// Decimal string.
    pub salt: String,
    pub factory: String,
    pub hidden: bool,
    pub created_at: i64,
}

pub fn wallet_key(owner: &str, address: &str) -> Vec<u8> {
    format!("w:{owner}:{address}").into_bytes()
}

pub fn owner_prefix(owner: &str) -> Vec<u8> {
    format!("w:{owner}:").into_bytes()
}

#[derive(Clone)]
pub struct Wallets {
    keyspace: Keyspace,
}

impl Wallets {
    pub fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    fn set_hidden(
        &self,
        tx: &mut Tx,
        owner: &str,
        address: &str,
        hidden: bool,
    ) -> events::Result<()> {
        let key = wallet_key(owner, address);
        if let Some(mut row) = get_json::<WalletRow>(tx, &self.keyspace, &key, self.name())? {
            row.hidden = hidden;
            put_json(tx, &self.keyspace, key, &row, self.name())?;
        }
        Ok(())
    }
}

impl Projection for Wallets {
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
        match &env.event {
            Event::WalletRegistered(e) => {
                let row = WalletRow {
                    owner: e.owner.clone(),
                    address: e.address.clone(),
                    salt: e.salt.clone(),
                    factory: e.factory.clone(),
                    hidden: false,
                    created_at: i64::try_from(env.recorded_at).unwrap_or(i64::MAX),
                };
                put_json(
                    tx,
                    &self.keyspace,
                    wallet_key(&e.owner, &e.address),
                    &row,
                    self.name(),
                )
            }
            Event::WalletHidden(e) => self.set_hidden(tx, &e.owner, &e.address, true),
            Event::WalletUnhidden(e) => self.set_hidden(tx, &e.owner, &e.address, false),
            _ => Ok(()),
        }
    }
}
