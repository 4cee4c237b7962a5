//! `GetNonce` reads the caller's salt-0 wallet's nonce from the EntryPoint on a real chain.

use aggregator::pb;
use alloy::primitives::B256;

use crate::anvil::{Chain, artifact};
use crate::support::{TestServer, User};

#[tokio::test]
async fn get_nonce_reads_the_entry_point() -> anyhow::Result<()> {
    let chain = Chain::start()?;
    let entry_point = chain
        .deploy_create2(B256::ZERO, &artifact("EntryPoint")?.bytecode)
        .await?;
    assert_eq!(
        entry_point,
        aggregator::wallet::WalletFactory::canonical_v06().entry_point
    );

    let dir = tempfile::tempdir()?;
    let mut config = TestServer::config(dir.path());
    config.ethereum.rpc_url = Some(chain.anvil.endpoint());
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;
    let user = User::sign_in(&mut c).await?;
    let nonce = c
        .get_nonce(user.req(pb::NonceRequest {
            owner: user.address(),
        }))
        .await?
        .into_inner();
    assert_eq!(nonce.nonce, "0");
    Ok(())
}
