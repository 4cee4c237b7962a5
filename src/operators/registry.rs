//! The operator set: read from the config, or from a registry contract (`OperatorRegistry`)
//! when the config names one; every registration's proofs checked; changes recorded as events
//! (`OperatorRegistered`, `OperatorDeregistered`), so that the log holds what each attestation
//! is verified against.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use events::event::{OperatorDeregistered, OperatorRegistered};
use events::{Command, Expected};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::SharedApp;
use crate::chain::Chain;
use crate::config::{Config, OperatorsConfig};
use crate::store::Store;

alloy::sol! {
    #[sol(rpc)]
    interface IOperatorRegistry {
        function operators() external view returns (address[] memory);
        function operatorInfo(address operator) external view returns (bytes memory blsPublicKey, bytes memory proofOfPossession, uint256 weight, bool active);
    }
}

/// One operator as the registry says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub registration: attest::Registration,
    pub weight: u64,
}

fn hex_bytes(field: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(text.trim().trim_start_matches("0x"))
        .map_err(|_| anyhow::anyhow!("{field} {text:?} is not hex"))
}

/// The members the config lists.
pub fn from_config(config: &OperatorsConfig) -> anyhow::Result<Vec<Member>> {
    config
        .members
        .iter()
        .map(|m| {
            Ok(Member {
                registration: attest::Registration {
                    address: m.address.parse().map_err(|_| {
                        anyhow::anyhow!("operator address {:?} is not an address", m.address)
                    })?,
                    bls_public_key: hex_bytes("bls_public_key", &m.bls_public_key)?,
                    proof_of_possession: hex_bytes("proof_of_possession", &m.proof_of_possession)?,
                    ecdsa_binding: hex_bytes("ecdsa_binding", &m.ecdsa_binding)?,
                },
                weight: m.weight,
            })
        })
        .collect()
}

/// The active members a registry contract lists. The contract stores the BLS key and its proof
/// of possession; the ECDSA binding comes from the config's member of the same address, if any,
/// else the registration by the contract's owner stands in for it (the contract checks the
/// caller), and only the proof of possession is checked.
pub async fn from_contract(
    chain: &Chain,
    contract: Address,
    config: &OperatorsConfig,
) -> anyhow::Result<Vec<Member>> {
    let registry = IOperatorRegistry::new(contract, &chain.provider);
    let addresses = registry.operators().call().await?;
    let bindings: BTreeMap<Address, Vec<u8>> = from_config(config)?
        .into_iter()
        .map(|m| (m.registration.address, m.registration.ecdsa_binding))
        .collect();
    let mut members = Vec::new();
    for address in addresses {
        let info = registry.operatorInfo(address).call().await?;
        if !info.active {
            continue;
        }
        let bytes = |b: Bytes| b.to_vec();
        members.push(Member {
            registration: attest::Registration {
                address,
                bls_public_key: bytes(info.blsPublicKey),
                proof_of_possession: bytes(info.proofOfPossession),
                ecdsa_binding: bindings.get(&address).cloned().unwrap_or_default(),
            },
            weight: u64::try_from(info.weight).unwrap_or(u64::MAX),
        });
    }
    Ok(members)
}

/// The operator set the config names (its members, or its registry contract), checked.
pub async fn load(config: &Config, chain: Option<&Chain>) -> anyhow::Result<Vec<Member>> {
    let members = match (&config.operators.registry_contract, chain) {
        (Some(contract), Some(chain)) => {
            let contract = contract.parse().map_err(|_| {
                anyhow::anyhow!("operators.registry_contract {contract:?} is not an address")
            })?;
            from_contract(chain, contract, &config.operators).await?
        }
        (Some(_), None) => anyhow::bail!("operators.registry_contract needs ethereum.rpc_url"),
        (None, _) => from_config(&config.operators)?,
    };
    Ok(checked(members, config.chain_id))
}

/// With a registry contract: re-reads it every `registry_refresh` until `stop`, records what
/// changed and hands the new set to the pool (which moves the tasks of operators that left).
pub fn spawn_refresh(app: SharedApp, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    app.config.operators.registry_contract.as_ref()?;
    let every = app
        .config
        .operators
        .registry_refresh
        .max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let refreshed = async {
                // The log's writer records the registry's changes; every replica's pool
                // takes the recorded set.
                if app.leads() {
                    let members = load(&app.config, app.chain.as_ref()).await?;
                    record(&app.store, &members).await?;
                }
                app.pool.refresh_members()?;
                app.pool.nudge();
                anyhow::Ok(())
            };
            if let Err(e) = refreshed.await {
                tracing::warn!(error = %e, "re-reading the operator registry failed; keeping the set");
            }
        }
    }))
}

/// Checks every member's proofs; a member that fails them is left out, with the reason logged.
pub fn checked(members: Vec<Member>, chain_id: u64) -> Vec<Member> {
    members
        .into_iter()
        .filter(|m| {
            match m.registration.check(chain_id) {
                Ok(_) if m.weight > 0 => true,
                Ok(_) => {
                    tracing::warn!(operator = %m.registration.address, "operator left out: weight 0");
                    false
                }
                Err(e) => {
                    tracing::warn!(operator = %m.registration.address, error = %e, "operator left out: its registration does not verify");
                    false
                }
            }
        })
        .collect()
}

/// Records the differences between `members` and the registered operators as events.
pub async fn record(store: &Store, members: &[Member]) -> anyhow::Result<()> {
    let registered: BTreeMap<String, projections::operators::OperatorRow> = store
        .views
        .operators()?
        .into_iter()
        .map(|row| (row.address.clone(), row))
        .collect();
    let mut wanted = BTreeMap::new();
    for m in members {
        let address = format!("{:#x}", m.registration.address);
        let event = OperatorRegistered {
            address: address.clone(),
            bls_public_key: hex::encode(&m.registration.bls_public_key),
            bls_proof_of_possession: hex::encode(&m.registration.proof_of_possession),
            ecdsa_binding: hex::encode(&m.registration.ecdsa_binding),
            weight: m.weight,
        };
        let same = registered.get(&address).is_some_and(|row| {
            row.active
                && row.bls_public_key == event.bls_public_key
                && row.bls_proof_of_possession == event.bls_proof_of_possession
                && row.ecdsa_binding == event.ecdsa_binding
                && row.weight == event.weight
        });
        if !same {
            let command = Command::new("system", events::now_ms()).append(
                events::stream::operator(&address),
                Expected::Any,
                [event.into()],
            );
            store.log.append(command).await?;
            tracing::info!(operator = %address, weight = m.weight, "operator registered");
        }
        wanted.insert(address, ());
    }
    for (address, row) in registered {
        if row.active && !wanted.contains_key(&address) {
            let command = Command::new("system", events::now_ms()).append(
                events::stream::operator(&address),
                Expected::Any,
                [OperatorDeregistered {
                    address: address.clone(),
                }
                .into()],
            );
            store.log.append(command).await?;
            tracing::info!(operator = %address, "operator deregistered");
        }
    }
    Ok(())
}
