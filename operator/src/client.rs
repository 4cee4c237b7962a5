//! The operator's calls to the aggregator, each signed (`attest::request_text`): ECDSA over the
//! method, the operator's address, the time, a fresh nonce and the request's protobuf bytes.

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use blst::min_pk::SecretKey;
use tonic::transport::Channel;

use protocol::pb;
use protocol::pb::node_client::NodeClient;
use protocol::registration::OperatorMember;

/// A connection to the aggregator's `Node` service with the operator's keys.
#[derive(Clone)]
pub struct Client {
    node: NodeClient<Channel>,
    ecdsa: PrivateKeySigner,
    bls: SecretKey,
    pub chain_id: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("operator", &self.ecdsa.address())
            .finish_non_exhaustive()
    }
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

impl Client {
    pub async fn connect(
        endpoint: &str,
        ecdsa: PrivateKeySigner,
        bls: SecretKey,
        chain_id: u64,
    ) -> anyhow::Result<Self> {
        let node = NodeClient::connect(endpoint.to_owned()).await?;
        Ok(Self {
            node,
            ecdsa,
            bls,
            chain_id,
        })
    }

    /// A client on an open channel (several operators' calls may share one HTTP/2 connection).
    pub fn with_channel(
        channel: Channel,
        ecdsa: PrivateKeySigner,
        bls: SecretKey,
        chain_id: u64,
    ) -> Self {
        Self {
            node: NodeClient::new(channel),
            ecdsa,
            bls,
            chain_id,
        }
    }

    pub fn address(&self) -> alloy::primitives::Address {
        self.ecdsa.address()
    }

    /// The request with its signature metadata.
    pub fn signed<T: prost::Message>(
        &self,
        method: &str,
        message: T,
    ) -> anyhow::Result<tonic::Request<T>> {
        let path = format!("/aggregator.Node/{method}");
        let timestamp = events::now_ms();
        let nonce = nonce();
        let text = attest::request_text(
            &path,
            self.ecdsa.address(),
            timestamp,
            &nonce,
            &message.encode_to_vec(),
        );
        let signature = self.ecdsa.sign_message_sync(text.as_bytes())?;
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(
            attest::HEADER_ADDRESS,
            format!("{:#x}", self.ecdsa.address()).parse()?,
        );
        metadata.insert(attest::HEADER_TIMESTAMP, timestamp.to_string().parse()?);
        metadata.insert(attest::HEADER_NONCE, nonce.parse()?);
        metadata.insert(
            attest::HEADER_SIGNATURE,
            format!("0x{}", hex::encode(signature.as_bytes())).parse()?,
        );
        Ok(request)
    }

    pub async fn sync(
        &mut self,
        capabilities: pb::sync_messages_req::Capabilities,
    ) -> anyhow::Result<tonic::Streaming<pb::SyncMessagesResp>> {
        let request = self.signed(
            "SyncMessages",
            pb::SyncMessagesReq {
                id: format!("{:#x}", self.ecdsa.address()),
                address: format!("{:#x}", self.ecdsa.address()),
                signature: Vec::new(),
                monotonic_clock: i64::try_from(events::now_ms()).unwrap_or(0),
                capabilities: Some(capabilities),
            },
        )?;
        Ok(self.node.sync_messages(request).await?.into_inner())
    }

    pub async fn ack(&mut self, id: &str) -> anyhow::Result<bool> {
        let request = self.signed("Ack", pb::AckMessageReq { id: id.to_owned() })?;
        Ok(self.node.ack(request).await?.into_inner().value)
    }

    pub async fn ping(&mut self, checkin: pb::Checkin) -> anyhow::Result<()> {
        let request = self.signed("Ping", checkin)?;
        self.node.ping(request).await?;
        Ok(())
    }

    /// Reports a firing: the output's digest signed with BLS, the request with ECDSA.
    pub async fn report(
        &mut self,
        task_id: &str,
        trigger_request_id: &str,
        kind: events::task::TriggerKind,
        output: serde_json::Value,
    ) -> anyhow::Result<pb::NotifyTriggersResp> {
        let hash = attest::output_hash(&output)?;
        let digest = attest::firing_digest(self.chain_id, task_id, trigger_request_id, &hash);
        let trigger_output = protocol::convert::report_output(kind, &output);
        let message = pb::NotifyTriggersReq {
            address: format!("{:#x}", self.ecdsa.address()),
            signature: String::new(),
            task_id: task_id.to_owned(),
            trigger_type: kind.wire_number(),
            trigger_output: Some(trigger_output),
            trigger_request_id: trigger_request_id.to_owned(),
            bls_signature: attest::sign_digest(&self.bls, &digest),
        };
        let request = self.signed("NotifyTriggers", message)?;
        Ok(self.node.notify_triggers(request).await?.into_inner())
    }

    /// Cosigns a checkpoint (`signature`), or asks for the consistency proof from the
    /// checkpoint of `signed_size` leaves (no signature).
    pub async fn cosign(
        &mut self,
        size: u64,
        root: &str,
        signature: Option<Vec<u8>>,
        signed_size: u64,
    ) -> anyhow::Result<pb::CosignCheckpointResp> {
        let request = self.signed(
            "CosignCheckpoint",
            pb::CosignCheckpointReq {
                size,
                root: root.to_owned(),
                bls_signature: signature.unwrap_or_default(),
                signed_size,
            },
        )?;
        Ok(self.node.cosign_checkpoint(request).await?.into_inner())
    }

    pub fn bls(&self) -> &blst::min_pk::SecretKey {
        &self.bls
    }

    pub async fn overload(
        &mut self,
        alert: pb::EventOverloadAlert,
    ) -> anyhow::Result<pb::EventOverloadResponse> {
        let request = self.signed("ReportEventOverload", alert)?;
        Ok(self.node.report_event_overload(request).await?.into_inner())
    }
}

/// The registration an operator hands to the aggregator's operator (config `operators.members`).
pub fn registration(
    ecdsa: &PrivateKeySigner,
    bls: &SecretKey,
    chain_id: u64,
    weight: u64,
) -> anyhow::Result<OperatorMember> {
    let public_key = bls.sk_to_pk().to_bytes().to_vec();
    let binding = ecdsa.sign_message_sync(
        attest::binding_message(ecdsa.address(), &public_key, chain_id).as_bytes(),
    )?;
    Ok(OperatorMember {
        address: format!("{:#x}", ecdsa.address()),
        bls_public_key: format!("0x{}", hex::encode(&public_key)),
        proof_of_possession: format!("0x{}", hex::encode(attest::proof_of_possession(bls))),
        ecdsa_binding: format!("0x{}", hex::encode(binding.as_bytes())),
        weight,
    })
}
