//! Realistic examples of every event type, for the format fixture, tests and benchmarks.

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::*;
use crate::execution::{ExecutionOutcome, Firing, FiringSource, OutputKind, Step, StepOutput};
use crate::task::*;

pub const OWNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
pub const WALLET: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
pub const TASK: &str = "01JG2F0000000000000000TASK";
pub const EXECUTION: &str = "01JG2G000000000000000000EX";
pub const OPERATOR: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";

/// A task definition using a block trigger and a custom-code node: the benchmark's shape.
pub fn definition() -> TaskDefinition {
    TaskDefinition {
        name: "sample task".into(),
        trigger: Trigger {
            id: "trigger1".into(),
            name: "blockTrigger".into(),
            trigger_type: 4,
            config: Some(TriggerConfig::Block(BlockTriggerConfig { interval: 10 })),
        },
        nodes: vec![Node {
            id: "node1".into(),
            name: "code".into(),
            node_type: 6,
            config: Some(NodeConfig::CustomCode(CustomCodeConfig {
                lang: 1,
                source: "return 42;".into(),
            })),
        }],
        edges: vec![Edge {
            id: "e1".into(),
            source: "trigger1".into(),
            target: "node1".into(),
        }],
        input_variables: BTreeMap::from([(
            "settings".into(),
            json!({"name": "sample task", "runner": WALLET}),
        )]),
        start_at: 0,
        expired_at: 0,
        max_execution: 0,
    }
}

/// A firing from a block trigger.
pub fn firing() -> Firing {
    Firing {
        dedup_key: format!("{TASK}:12345"),
        source: FiringSource::Client,
        kind: TriggerKind::Block,
        output: Some(json!({"blockNumber": 12345, "blockHash": "0xabc"})),
        input: BTreeMap::new(),
    }
}

/// A recorded step of a custom-code node.
pub fn step() -> Step {
    Step {
        id: "node1".into(),
        step_type: "NODE_TYPE_CUSTOM_CODE".into(),
        name: "code".into(),
        success: true,
        log: "ran in 0 ms".into(),
        inputs: vec!["blockTrigger.data".into()],
        output: Some(StepOutput {
            kind: OutputKind::CustomCode,
            data: Some(json!(42)),
        }),
        start_at: 1_764_000_000_000,
        end_at: 1_764_000_000_001,
        ..Step::default()
    }
}

/// One event of each type, in `EVENT_TYPES` order.
pub fn all() -> Vec<Event> {
    let scope = SecretScope {
        owner: OWNER.into(),
        org_id: String::new(),
        workflow_id: String::new(),
        name: "api_key".into(),
    };
    vec![
        TaskCreated {
            task_id: TASK.into(),
            owner: OWNER.into(),
            wallet: WALLET.into(),
            definition: definition(),
        }
        .into(),
        TaskEnabled {
            task_id: TASK.into(),
        }
        .into(),
        TaskDisabled {
            task_id: TASK.into(),
            reason: "user".into(),
        }
        .into(),
        TaskCancelled {
            task_id: TASK.into(),
        }
        .into(),
        TaskDeleted {
            task_id: TASK.into(),
        }
        .into(),
        TaskCompleted {
            task_id: TASK.into(),
            reason: "max_execution reached".into(),
        }
        .into(),
        TaskFailed {
            task_id: TASK.into(),
            error: "definition no longer validates".into(),
        }
        .into(),
        TaskTriggered {
            task_id: TASK.into(),
            execution_id: EXECUTION.into(),
            index: 0,
            dedup_key: format!("{TASK}:12345"),
        }
        .into(),
        ExecutionQueued {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            owner: OWNER.into(),
            index: 0,
            firing: firing(),
        }
        .into(),
        ExecutionStarted {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            started_at: 0,
        }
        .into(),
        StepStarted {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            step_id: "node1".into(),
            name: "code".into(),
            step_type: "NODE_TYPE_CUSTOM_CODE".into(),
        }
        .into(),
        StepRecorded {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            step: step(),
        }
        .into(),
        ExecutionFinished {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            outcome: ExecutionOutcome::Success,
            error: String::new(),
        }
        .into(),
        TriggerReported {
            task_id: TASK.into(),
            trigger_request_id: format!("{TASK}:12345"),
            operator: OPERATOR.into(),
            kind: TriggerKind::Block,
            output: Some(json!({"blockNumber": 12345, "blockHash": "0xabc"})),
            digest: "11".repeat(32),
            bls_signature: "22".repeat(96),
        }
        .into(),
        TriggerAttested {
            task_id: TASK.into(),
            trigger_request_id: format!("{TASK}:12345"),
            chain_id: 31337,
            kind: TriggerKind::Block,
            output: Some(json!({"blockNumber": 12345, "blockHash": "0xabc"})),
            output_hash: "33".repeat(32),
            digest: "11".repeat(32),
            aggregate_signature: "44".repeat(96),
            signers: vec![OPERATOR.into()],
            quorum: Some(QuorumMet {
                weights: vec![1],
                assigned_weight: 1,
                numerator: 2,
                denominator: 3,
            }),
        }
        .into(),
        ReportsDisagreed {
            task_id: TASK.into(),
            trigger_request_id: format!("{TASK}:12345"),
            digests: BTreeMap::from([("11".repeat(32), vec![OPERATOR.into()])]),
        }
        .into(),
        TriggerOverloadReported {
            task_id: TASK.into(),
            operator: OPERATOR.into(),
            block_number: 12345,
            events_detected: 500,
            safety_limit: 100,
            query_index: "0".into(),
        }
        .into(),
        OperatorRegistered {
            address: OPERATOR.into(),
            bls_public_key: "55".repeat(48),
            bls_proof_of_possession: "66".repeat(96),
            ecdsa_binding: "77".repeat(65),
            weight: 1,
        }
        .into(),
        OperatorDeregistered {
            address: OPERATOR.into(),
        }
        .into(),
        OperatorAssigned {
            task_id: TASK.into(),
            operator: OPERATOR.into(),
        }
        .into(),
        OperatorUnassigned {
            task_id: TASK.into(),
            operator: OPERATOR.into(),
            reason: "operator gone".into(),
        }
        .into(),
        WalletRegistered {
            owner: OWNER.into(),
            address: WALLET.into(),
            salt: "0".into(),
            factory: "0x9406cc6185a346906296840746125a0e44976454".into(),
        }
        .into(),
        WalletHidden {
            owner: OWNER.into(),
            address: WALLET.into(),
        }
        .into(),
        WalletUnhidden {
            owner: OWNER.into(),
            address: WALLET.into(),
        }
        .into(),
        SecretCreated {
            scope: scope.clone(),
            ciphertext: "88".repeat(40),
            description: String::new(),
        }
        .into(),
        SecretUpdated {
            scope: scope.clone(),
            ciphertext: "99".repeat(40),
        }
        .into(),
        SecretDeleted { scope }.into(),
        ApiKeyRevoked {
            jti: "01JG2H00000000000000000JTI".into(),
        }
        .into(),
    ]
}
