//! Realistic examples of every event type, for the format fixture, tests and benchmarks.

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::*;
use crate::execution::{ExecutionOutcome, Firing, FiringSource, OutputKind, Step, StepOutput};
use crate::task::*;
use crate::user_op::{OpPurpose, OpReceipt, SenderKind, UserOpRecord};

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
        UserOpSubmitted {
            purpose: OpPurpose::Step {
                step_id: "node1".into(),
                iteration: None,
            },
            wallet: WALLET.into(),
            chain_id: 31337,
            entry_point: "0x5ff137d4b0fdcd49dca30c7cf57e578a026d2789".into(),
            sender: SenderKind::SelfBundler,
            user_op: user_op(),
            user_op_hash: USER_OP_HASH.into(),
            nonce_key: "0x3f0c2d0d9e5a4b7c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b".into(),
            nonce_sequence: 0,
            from_block: 12345,
            attempt: 1,
        }
        .into(),
        UserOpSent {
            user_op_hash: USER_OP_HASH.into(),
            tx_hash: TX_HASH.into(),
        }
        .into(),
        UserOpRejected {
            user_op_hash: USER_OP_HASH.into(),
            code: "AA25".into(),
            reason: "AA25 invalid account nonce".into(),
        }
        .into(),
        UserOpLanded {
            user_op_hash: USER_OP_HASH.into(),
            receipt: OpReceipt {
                success: true,
                tx_hash: TX_HASH.into(),
                block_number: 12346,
                actual_gas_cost: "104000000000000".into(),
                actual_gas_used: "104000".into(),
                gas_price: "1000000000".into(),
                revert_reason: String::new(),
                paymaster: String::new(),
            },
        }
        .into(),
        UserOpPending {
            user_op_hash: USER_OP_HASH.into(),
            waited_ms: 120_000,
        }
        .into(),
        WithdrawalRequested {
            withdrawal_id: "01JG2J0000000000000000WDRW".into(),
            owner: OWNER.into(),
            wallet: WALLET.into(),
            recipient: OWNER.into(),
            token: String::new(),
            amount: "1000000000000000000".into(),
        }
        .into(),
        ExecutionClaimed {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            owner: OWNER.into(),
            replica: "01JG2K00000000000000REPL1A".into(),
            lease_until_ms: 1_764_000_010_000,
        }
        .into(),
        ExecutionReleased {
            execution_id: EXECUTION.into(),
            task_id: TASK.into(),
            replica: "01JG2K00000000000000REPL1A".into(),
        }
        .into(),
    ]
}

pub const USER_OP_HASH: &str = "0x8a1f0d7c3b5e2a4f6c8d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d";
pub const TX_HASH: &str = "0x1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001";

/// A signed user operation that deploys its wallet and sends 1 ETH.
pub fn user_op() -> UserOpRecord {
    UserOpRecord {
        sender: WALLET.into(),
        nonce: "0x3f0c2d0d9e5a4b7c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b0000000000000000".into(),
        init_code: "0xce3645016820f1df66941429f7adb0f54cdcfd4c5fbfb9cf00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c80000000000000000000000000000000000000000000000000000000000000000".into(),
        call_data: "0xb61d27f600000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c80000000000000000000000000000000000000000000000000de0b6b3a764000000000000000000000000000000000000000000000000000000000000000000600000000000000000000000000000000000000000000000000000000000000000".into(),
        call_gas_limit: "0x9c40".into(),
        verification_gas_limit: "0x493e0".into(),
        pre_verification_gas: "0xc350".into(),
        max_fee_per_gas: "0x77359400".into(),
        max_priority_fee_per_gas: "0x3b9aca00".into(),
        paymaster_and_data: "0x".into(),
        signature: format!("0x{}1b", "ab".repeat(64)),
    }
}
