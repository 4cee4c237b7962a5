//! ERC-4337 v0.6 user operations: the call data a wallet runs, the hash the EntryPoint computes
//! (`getUserOpHash`), the controller's signature over it, and the two encodings the operation
//! travels in (the bundlers' JSON, the events' record).
//!
//! ```text
//! userOpHash = keccak256(abi.encode(keccak256(pack(op)), entryPoint, chainId))
//! pack(op)   = abi.encode(sender, nonce, keccak256(initCode), keccak256(callData),
//!                         callGasLimit, verificationGasLimit, preVerificationGas,
//!                         maxFeePerGas, maxPriorityFeePerGas, keccak256(paymasterAndData))
//! ```

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use serde::{Deserialize, Serialize};

use super::contracts::{IControlledAccount, UserOperation};
use events::user_op::UserOpRecord;

/// One call a wallet makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub to: Address,
    pub value: U256,
    pub data: Bytes,
}

/// The wallet's call data for `calls`: `execute` for one, `executeBatch` for several without
/// value, `executeBatchWithValues` for several with value (only `ControlledAccount` has it).
pub fn call_data(calls: &[Call]) -> Bytes {
    match calls {
        [one] => IControlledAccount::executeCall {
            dest: one.to,
            value: one.value,
            func: one.data.clone(),
        }
        .abi_encode()
        .into(),
        many if many.iter().all(|c| c.value.is_zero()) => IControlledAccount::executeBatchCall {
            dest: many.iter().map(|c| c.to).collect(),
            func: many.iter().map(|c| c.data.clone()).collect(),
        }
        .abi_encode()
        .into(),
        many => IControlledAccount::executeBatchWithValuesCall {
            dest: many.iter().map(|c| c.to).collect(),
            value: many.iter().map(|c| c.value).collect(),
            func: many.iter().map(|c| c.data.clone()).collect(),
        }
        .abi_encode()
        .into(),
    }
}

/// The hash `EntryPoint.getUserOpHash(op)` returns: what the wallet's owner or controller signs.
pub fn hash(op: &UserOperation, entry_point: Address, chain_id: u64) -> B256 {
    let packed = (
        op.sender,
        op.nonce,
        keccak256(&op.initCode),
        keccak256(&op.callData),
        op.callGasLimit,
        op.verificationGasLimit,
        op.preVerificationGas,
        op.maxFeePerGas,
        op.maxPriorityFeePerGas,
        keccak256(&op.paymasterAndData),
    )
        .abi_encode_params();
    keccak256((keccak256(packed), entry_point, U256::from(chain_id)).abi_encode_params())
}

/// The EIP-191 signature (`personal_sign`) of `digest` by `signer`: 65 bytes, `v` 27 or 28, as
/// `ECDSA.recover(toEthSignedMessageHash(digest), sig)` in the wallet and the paymaster expects.
pub fn sign(digest: B256, signer: &PrivateKeySigner) -> Result<Bytes, alloy::signers::Error> {
    let signature = signer.sign_message_sync(digest.as_slice())?;
    Ok(Bytes::copy_from_slice(&signature.as_bytes()))
}

/// A signature of the right shape that no wallet key made: gas estimates need one (bundlers
/// reject an empty signature, and its length changes the call data's cost). It is the one
/// bundlers and SDKs use for the purpose: a valid ECDSA shape (low `s`), so that even a stock
/// `SimpleAccount`, whose `recover` reverts on malformed signatures, only fails validation.
pub fn dummy_signature() -> Bytes {
    // r = 0xff..f0 00..00, s = 0x7a aa..aa, v = 28.
    let mut bytes = [0u8; 65];
    bytes[..15].fill(0xff);
    bytes[15] = 0xf0;
    bytes[32] = 0x7a;
    bytes[33..64].fill(0xaa);
    bytes[64] = 0x1c;
    Bytes::copy_from_slice(&bytes)
}

/// A user operation in the JSON shape bundlers exchange (`eth_sendUserOperation`,
/// `eth_estimateUserOperationGas`): numbers as hex quantities, bytes as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOpJson {
    pub sender: Address,
    pub nonce: U256,
    pub init_code: Bytes,
    pub call_data: Bytes,
    pub call_gas_limit: U256,
    pub verification_gas_limit: U256,
    pub pre_verification_gas: U256,
    pub max_fee_per_gas: U256,
    pub max_priority_fee_per_gas: U256,
    pub paymaster_and_data: Bytes,
    pub signature: Bytes,
}

impl From<&UserOperation> for UserOpJson {
    fn from(op: &UserOperation) -> Self {
        Self {
            sender: op.sender,
            nonce: op.nonce,
            init_code: op.initCode.clone(),
            call_data: op.callData.clone(),
            call_gas_limit: op.callGasLimit,
            verification_gas_limit: op.verificationGasLimit,
            pre_verification_gas: op.preVerificationGas,
            max_fee_per_gas: op.maxFeePerGas,
            max_priority_fee_per_gas: op.maxPriorityFeePerGas,
            paymaster_and_data: op.paymasterAndData.clone(),
            signature: op.signature.clone(),
        }
    }
}

impl From<UserOpJson> for UserOperation {
    fn from(op: UserOpJson) -> Self {
        Self {
            sender: op.sender,
            nonce: op.nonce,
            initCode: op.init_code,
            callData: op.call_data,
            callGasLimit: op.call_gas_limit,
            verificationGasLimit: op.verification_gas_limit,
            preVerificationGas: op.pre_verification_gas,
            maxFeePerGas: op.max_fee_per_gas,
            maxPriorityFeePerGas: op.max_priority_fee_per_gas,
            paymasterAndData: op.paymaster_and_data,
            signature: op.signature,
        }
    }
}

/// The operation as the events record it (lower-case hex text).
pub fn to_record(op: &UserOperation) -> UserOpRecord {
    let quantity = |n: &U256| format!("{n:#x}");
    let bytes = |b: &Bytes| format!("0x{}", alloy::hex::encode(b));
    UserOpRecord {
        sender: format!("{:#x}", op.sender),
        nonce: quantity(&op.nonce),
        init_code: bytes(&op.initCode),
        call_data: bytes(&op.callData),
        call_gas_limit: quantity(&op.callGasLimit),
        verification_gas_limit: quantity(&op.verificationGasLimit),
        pre_verification_gas: quantity(&op.preVerificationGas),
        max_fee_per_gas: quantity(&op.maxFeePerGas),
        max_priority_fee_per_gas: quantity(&op.maxPriorityFeePerGas),
        paymaster_and_data: bytes(&op.paymasterAndData),
        signature: bytes(&op.signature),
    }
}

/// Why a recorded operation could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the recorded user operation's {field} is not valid hex: {value:?}")]
pub struct RecordError {
    pub field: &'static str,
    pub value: String,
}

/// The operation a [`UserOpRecord`] holds, exactly as it was signed.
pub fn from_record(record: &UserOpRecord) -> Result<UserOperation, RecordError> {
    fn quantity(field: &'static str, text: &str) -> Result<U256, RecordError> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        U256::from_str_radix(digits, 16).map_err(|_| RecordError {
            field,
            value: text.to_owned(),
        })
    }
    fn bytes(field: &'static str, text: &str) -> Result<Bytes, RecordError> {
        text.parse().map_err(|_| RecordError {
            field,
            value: text.to_owned(),
        })
    }
    Ok(UserOperation {
        sender: record.sender.parse().map_err(|_| RecordError {
            field: "sender",
            value: record.sender.clone(),
        })?,
        nonce: quantity("nonce", &record.nonce)?,
        initCode: bytes("initCode", &record.init_code)?,
        callData: bytes("callData", &record.call_data)?,
        callGasLimit: quantity("callGasLimit", &record.call_gas_limit)?,
        verificationGasLimit: quantity("verificationGasLimit", &record.verification_gas_limit)?,
        preVerificationGas: quantity("preVerificationGas", &record.pre_verification_gas)?,
        maxFeePerGas: quantity("maxFeePerGas", &record.max_fee_per_gas)?,
        maxPriorityFeePerGas: quantity("maxPriorityFeePerGas", &record.max_priority_fee_per_gas)?,
        paymasterAndData: bytes("paymasterAndData", &record.paymaster_and_data)?,
        signature: bytes("signature", &record.signature)?,
    })
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;
    use alloy::signers::Signature;

    use super::*;

    fn sample() -> UserOperation {
        UserOperation {
            sender: address!("0x9813111D6AddabCB523F200521c2A9dc156d6308"),
            nonce: U256::from(7) | (U256::from(0xabcdefu64) << 64),
            initCode: Bytes::from_static(&[1, 2, 3]),
            callData: call_data(&[Call {
                to: Address::repeat_byte(0x11),
                value: U256::from(5),
                data: Bytes::new(),
            }]),
            callGasLimit: U256::from(50_000),
            verificationGasLimit: U256::from(150_000),
            preVerificationGas: U256::from(48_000),
            maxFeePerGas: U256::from(2_000_000_000u64),
            maxPriorityFeePerGas: U256::from(1_000_000_000u64),
            paymasterAndData: Bytes::new(),
            signature: dummy_signature(),
        }
    }

    #[test]
    fn given_a_signed_op_when_recovering_then_the_signer_is_the_controller() {
        let controller = PrivateKeySigner::random();
        let op = sample();
        let digest = hash(&op, super::super::CANONICAL_ENTRY_POINT_V06, 31337);
        let signature = sign(digest, &controller).unwrap();
        assert_eq!(signature.len(), 65);
        assert!(matches!(signature[64], 27 | 28));
        let parsed = Signature::try_from(signature.as_ref()).unwrap();
        let recovered = parsed.recover_address_from_msg(digest.as_slice()).unwrap();
        assert_eq!(recovered, controller.address());
    }

    #[test]
    fn the_hash_covers_every_field_but_the_signature_and_names_the_chain() {
        let base = sample();
        let h = |op: &UserOperation| hash(op, super::super::CANONICAL_ENTRY_POINT_V06, 31337);
        let mut other = base.clone();
        other.signature = Bytes::new();
        assert_eq!(h(&base), h(&other));
        for change in [
            |o: &mut UserOperation| o.nonce += U256::from(1),
            |o: &mut UserOperation| o.callGasLimit += U256::from(1),
            |o: &mut UserOperation| o.paymasterAndData = Bytes::from_static(&[9]),
            |o: &mut UserOperation| o.initCode = Bytes::new(),
            |o: &mut UserOperation| o.maxFeePerGas += U256::from(1),
        ] {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(h(&base), h(&changed));
        }
        assert_ne!(
            h(&base),
            hash(&base, super::super::CANONICAL_ENTRY_POINT_V06, 1)
        );
    }

    #[test]
    fn records_give_back_the_exact_operation() {
        let op = sample();
        let record = to_record(&op);
        assert_eq!(from_record(&record).unwrap(), op);
        let json = serde_json::to_value(UserOpJson::from(&op)).unwrap();
        assert_eq!(json["callGasLimit"], "0xc350");
        assert_eq!(json["paymasterAndData"], "0x");
        assert_eq!(dummy_signature().len(), 65);
        let back: UserOpJson = serde_json::from_value(json).unwrap();
        assert_eq!(UserOperation::from(back), op);
        let mut broken = record;
        broken.nonce = "0xzz".into();
        assert_eq!(from_record(&broken).unwrap_err().field, "nonce");
    }

    #[test]
    fn call_data_picks_the_wallet_function_by_the_calls() {
        let call = |value: u64| Call {
            to: Address::repeat_byte(1),
            value: U256::from(value),
            data: Bytes::new(),
        };
        let selector = |data: Bytes| <[u8; 4]>::try_from(&data[..4]).unwrap();
        assert_eq!(
            selector(call_data(&[call(1)])),
            IControlledAccount::executeCall::SELECTOR
        );
        assert_eq!(
            selector(call_data(&[call(0), call(0)])),
            IControlledAccount::executeBatchCall::SELECTOR
        );
        assert_eq!(
            selector(call_data(&[call(0), call(3)])),
            IControlledAccount::executeBatchWithValuesCall::SELECTOR
        );
    }
}
