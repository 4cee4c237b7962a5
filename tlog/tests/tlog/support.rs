//! A real log (fjall, the events crate's writer) holding an operator-attested execution among
//! other events, its tree caught up, a checkpoint signed by a log key and cosigned by operators.

use std::collections::BTreeMap;

use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use blst::min_pk::SecretKey;
use events::event::*;
use events::execution::{ExecutionOutcome, Firing, FiringSource, OutputKind, Step, StepOutput};
use events::fjall::Database;
use events::task::TriggerKind;
use events::{Command, Expected, Log, LogOptions, Projector, Tx, Ulid};
use serde_json::json;
use tlog::cosign::{self, Cosignature, Member};
use tlog::{LogKey, OperatorSet, TileStore};

pub const CHAIN: u64 = 31337;
pub const TASK: &str = "01JG2F0000000000000000TASK";
pub const EXECUTION: &str = "01JG2G000000000000000000EX";
pub const ORIGIN: &str = "aggregator.test/31337";

struct NoProjections;

impl Projector for NoProjections {
    fn apply(&mut self, _: &events::Envelope, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Ulid, _: &mut Tx) -> events::Result<()> {
        Ok(())
    }
}

pub struct Operator {
    pub ecdsa: PrivateKeySigner,
    pub bls: SecretKey,
}

impl Operator {
    fn new(seed: u8) -> Self {
        Self {
            ecdsa: PrivateKeySigner::from_bytes(&alloy_primitives::B256::repeat_byte(seed))
                .expect("key"),
            bls: attest::bls_key(&[seed; 32]).expect("bls"),
        }
    }

    pub fn member(&self) -> Member {
        let pk = self.bls.sk_to_pk().to_bytes().to_vec();
        let binding = self
            .ecdsa
            .sign_message_sync(attest::binding_message(self.ecdsa.address(), &pk, CHAIN).as_bytes())
            .expect("binding");
        Member {
            address: format!("{:#x}", self.ecdsa.address()),
            bls_public_key: hex::encode(&pk),
            proof_of_possession: hex::encode(attest::proof_of_possession(&self.bls)),
            ecdsa_binding: hex::encode(binding.as_bytes()),
            weight: 1,
        }
    }

    pub fn address(&self) -> String {
        format!("{:#x}", self.ecdsa.address())
    }
}

/// What output the execution ran on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The attested one.
    Attested,
    /// Another than the operators attested (an aggregator that wrote it so).
    OtherOutput,
}

pub struct World {
    pub _dir: tempfile::TempDir,
    pub db: Database,
    pub log: Log,
    pub store: TileStore,
    pub key: LogKey,
    pub operators: Vec<Operator>,
}

fn filler(log: &Log, n: usize, at: u64) {
    for i in 0..n {
        let wallet = format!("0x{:040x}", i);
        let command = Command::new("system", at).append(
            events::stream::wallet(events::samples::OWNER, &wallet),
            Expected::NoStream,
            [WalletRegistered {
                owner: events::samples::OWNER.into(),
                address: wallet.clone(),
                salt: i.to_string(),
                factory: "0x9406cc6185a346906296840746125a0e44976454".into(),
            }
            .into()],
        );
        log.append_blocking(command).expect("filler");
    }
}

impl World {
    pub fn new(ran: Ran) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = events::open_database(dir.path()).expect("db");
        let log = Log::open(
            &db,
            LogOptions {
                durability: events::Durability::Relaxed,
                ..LogOptions::default()
            },
            Box::new(NoProjections),
        )
        .expect("log");
        let operators: Vec<Operator> = (1..=3).map(Operator::new).collect();
        let at = 1_764_000_000_000u64;
        filler(&log, 300, at);
        for op in &operators {
            let m = op.member();
            log.append_blocking(
                Command::new("system", at).append(
                    events::stream::operator(&m.address),
                    Expected::NoStream,
                    [OperatorRegistered {
                        address: m.address.clone(),
                        bls_public_key: m.bls_public_key,
                        bls_proof_of_possession: m.proof_of_possession,
                        ecdsa_binding: m.ecdsa_binding,
                        weight: 1,
                    }
                    .into()],
                ),
            )
            .expect("register");
        }
        let request_id = format!("{TASK}:12340");
        let output = json!({"blockNumber": 12340, "blockHash": "0xabc"});
        let output_hash = attest::output_hash(&output).expect("hash");
        let digest = attest::firing_digest(CHAIN, TASK, &request_id, &output_hash);
        let firing_stream = events::stream::firing(TASK, &request_id);
        let mut firing_events: Vec<Event> = Vec::new();
        for op in &operators[..2] {
            firing_events.push(
                TriggerReported {
                    task_id: TASK.into(),
                    trigger_request_id: request_id.clone(),
                    operator: op.address(),
                    kind: TriggerKind::Block,
                    output: Some(output.clone()),
                    digest: hex::encode(digest),
                    bls_signature: hex::encode(attest::sign_digest(&op.bls, &digest)),
                }
                .into(),
            );
        }
        let signatures: Vec<Vec<u8>> = operators[..2]
            .iter()
            .map(|op| attest::sign_digest(&op.bls, &digest))
            .collect();
        firing_events.push(
            TriggerAttested {
                task_id: TASK.into(),
                trigger_request_id: request_id.clone(),
                chain_id: CHAIN,
                kind: TriggerKind::Block,
                output: Some(output.clone()),
                output_hash: hex::encode(output_hash),
                digest: hex::encode(digest),
                aggregate_signature: hex::encode(attest::aggregate(&signatures).expect("agg")),
                signers: operators[..2].iter().map(Operator::address).collect(),
                quorum: Some(events::event::QuorumMet {
                    weights: vec![1, 1],
                    assigned_weight: 3,
                    numerator: 2,
                    denominator: 3,
                }),
            }
            .into(),
        );
        let committed = log
            .append_blocking(Command::new("operators", at + 1).append(
                firing_stream,
                Expected::NoStream,
                firing_events,
            ))
            .expect("attest");
        let attestation = committed.events.last().expect("attestation").id.to_string();
        let ran_on = match ran {
            Ran::Attested => output.clone(),
            Ran::OtherOutput => json!({"blockNumber": 12341, "blockHash": "0xabd"}),
        };
        let step = |id: &str, data: serde_json::Value| Step {
            id: id.into(),
            step_type: "NODE_TYPE_CUSTOM_CODE".into(),
            name: format!("step {id}"),
            success: true,
            output: Some(StepOutput {
                kind: OutputKind::CustomCode,
                data: Some(data),
            }),
            start_at: 1,
            end_at: 2,
            ..Step::default()
        };
        let exec = events::stream::execution(EXECUTION);
        let mut seq = 0;
        let mut push = |event: Event| {
            let expected = if seq == 0 {
                Expected::NoStream
            } else {
                Expected::Exactly(seq)
            };
            seq += 1;
            log.append_blocking(Command::new("system", at + 2).append(
                exec.clone(),
                expected,
                [event],
            ))
            .expect("execution event");
        };
        push(
            ExecutionQueued {
                execution_id: EXECUTION.into(),
                task_id: TASK.into(),
                owner: events::samples::OWNER.into(),
                index: 0,
                firing: Firing {
                    dedup_key: request_id.clone(),
                    source: FiringSource::Operators { attestation },
                    kind: TriggerKind::Block,
                    output: Some(ran_on.clone()),
                    input: BTreeMap::new(),
                },
            }
            .into(),
        );
        filler_between(&log, at);
        push(
            StepRecorded {
                execution_id: EXECUTION.into(),
                task_id: TASK.into(),
                step: step("trigger1", ran_on),
            }
            .into(),
        );
        push(
            StepRecorded {
                execution_id: EXECUTION.into(),
                task_id: TASK.into(),
                step: step("node1", json!({"price": 42})),
            }
            .into(),
        );
        push(
            ExecutionFinished {
                execution_id: EXECUTION.into(),
                task_id: TASK.into(),
                outcome: ExecutionOutcome::Success,
                error: String::new(),
            }
            .into(),
        );
        let store = TileStore::open(&db).expect("store");
        World {
            _dir: dir,
            db,
            log,
            store,
            key: LogKey::generate(ORIGIN).expect("key"),
            operators,
        }
    }

    /// Brings the tree up to the log, signs a checkpoint, adds the cosignature of `cosigners`
    /// (indices into `operators`), stores it and returns the note.
    pub fn checkpoint(&self, cosigners: &[usize]) -> (u64, Vec<u8>) {
        let appender = tlog::follow::catch_up(&self.db, self.log.keyspaces(), &self.store, &|_| {})
            .expect("catch up");
        let size = appender.tree().size();
        let mut note = self
            .key
            .sign(size, appender.tree().root().expect("root"))
            .expect("sign");
        if !cosigners.is_empty() {
            let text = tlog::checkpoint::note_text(&note).expect("text");
            let parts = cosigners
                .iter()
                .map(|&i| {
                    let op = &self.operators[i];
                    (op.ecdsa.address(), cosign::sign(&op.bls, &text))
                })
                .collect();
            let cosignature = Cosignature::aggregate(parts).expect("aggregate");
            note = tlog::checkpoint::with_cosignature(&note, ORIGIN, &cosignature).expect("line");
        }
        self.store
            .put_checkpoint(&self.db, size, &note)
            .expect("put");
        (size, note)
    }

    pub fn operator_set(&self, which: &[usize]) -> OperatorSet {
        let members: Vec<Member> = which.iter().map(|&i| self.operators[i].member()).collect();
        OperatorSet::new(&members).expect("set")
    }
}

/// Other traffic between an execution's events, so that its leaves are not adjacent.
fn filler_between(log: &Log, at: u64) {
    for i in 0..5 {
        let wallet = format!("0x{:040x}", 100_000 + i);
        log.append_blocking(
            Command::new("system", at).append(
                events::stream::wallet(events::samples::OWNER, &wallet),
                Expected::NoStream,
                [WalletRegistered {
                    owner: events::samples::OWNER.into(),
                    address: wallet,
                    salt: "1".into(),
                    factory: "0x9406cc6185a346906296840746125a0e44976454".into(),
                }
                .into()],
            ),
        )
        .expect("filler");
    }
}

/// Appends `n` more events (wallet registrations) to the world's log.
pub fn append_wallets(world: &World, n: usize) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(500_000);
    for _ in 0..n {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wallet = format!("0x{i:040x}");
        world
            .log
            .append_blocking(
                Command::new("system", 1_764_000_000_000).append(
                    events::stream::wallet(events::samples::OWNER, &wallet),
                    Expected::NoStream,
                    [WalletRegistered {
                        owner: events::samples::OWNER.into(),
                        address: wallet,
                        salt: "2".into(),
                        factory: "0x9406cc6185a346906296840746125a0e44976454".into(),
                    }
                    .into()],
                ),
            )
            .expect("wallet");
    }
}
