//! API keys minted offline with `aggregator create-api-key` (while the server runs): an admin key
//! signs in as any wallet, a read-only key only as its subject and changes nothing; revoking a key
//! ends it and every session minted with it.

use std::process::Command;
use std::time::{Duration, SystemTime};

use aggregator::auth::signin::SignIn;
use aggregator::pb;
use alloy::signers::local::PrivateKeySigner;
use tonic::Code;

use crate::support::{TestServer, User, simple_task, with_key};

pub fn mint(server: &TestServer, role: &str, subject: &str) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "--keys-dir",
            server.config.keys_dir.to_str().unwrap(),
            "create-api-key",
            "--role",
            role,
            "--subject",
            subject,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "create-api-key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn message_for(wallet: &PrivateKeySigner) -> String {
    let now = SystemTime::now();
    SignIn {
        uri: "https://app.avaprotocol.org".into(),
        chain_id: 31337,
        version: "test".into(),
        issued_at: now,
        expire_at: now + Duration::from_secs(3600),
        wallet: wallet.address(),
    }
    .message(&wallet.address().to_checksum(None))
}

#[tokio::test]
async fn admin_and_readonly_keys_and_revocation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut c = server.client().await?;
    let admin_subject = PrivateKeySigner::random();
    let admin_key = mint(&server, "admin", &admin_subject.address().to_string())?;

    // Admin: a session as somebody else's wallet, with full rights on it.
    let someone = PrivateKeySigner::random();
    let session = c
        .get_key(pb::GetKeyReq {
            message: message_for(&someone),
            signature: admin_key.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(session.address, someone.address().to_checksum(None));
    let as_someone = User {
        signer: someone.clone(),
        token: session.key.clone(),
    };
    let wallet = as_someone.wallet(&mut c).await?;
    c.create_task(as_someone.req(simple_task("by admin", &wallet)))
        .await?;

    // Read-only: only as its subject, and nothing changes.
    let reader = User::sign_in(&mut c).await?;
    let reader_wallet = reader.wallet(&mut c).await?;
    let task = c
        .create_task(reader.req(simple_task("reader's", &reader_wallet)))
        .await?
        .into_inner()
        .id;
    let readonly_key = mint(&server, "readonly", &reader.address())?;
    let err = c
        .get_key(pb::GetKeyReq {
            message: message_for(&someone),
            signature: readonly_key.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let ro_session = c
        .get_key(pb::GetKeyReq {
            message: message_for(&reader.signer),
            signature: readonly_key.clone(),
        })
        .await?
        .into_inner()
        .key;
    c.get_task(with_key(pb::IdReq { id: task.clone() }, &ro_session))
        .await?;
    for err in [
        c.create_task(with_key(simple_task("nope", &reader_wallet), &ro_session))
            .await
            .unwrap_err(),
        c.delete_task(with_key(pb::IdReq { id: task.clone() }, &ro_session))
            .await
            .unwrap_err(),
        c.create_secret(with_key(
            pb::CreateOrUpdateSecretReq {
                name: "k".into(),
                secret: "v".into(),
                ..Default::default()
            },
            &ro_session,
        ))
        .await
        .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    // The key itself works as authkey too, read-only as well.
    c.get_task(with_key(pb::IdReq { id: task.clone() }, &readonly_key))
        .await?;

    // Only an admin revokes; then the key and its session are refused.
    let jti = aggregator::auth::TokenIssuer::new(
        &aggregator::auth::keys::Keys::load(&server.config.keys_dir)?.jwt_secret,
        31337,
    )
    .verify(&readonly_key)?
    .api_key_id
    .unwrap();
    let err = c
        .revoke_api_key(with_key(
            pb::RevokeApiKeyReq {
                key: String::new(),
                jti: jti.clone(),
            },
            &ro_session,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let revoked = c
        .revoke_api_key(with_key(
            pb::RevokeApiKeyReq {
                key: readonly_key.clone(),
                jti: String::new(),
            },
            &admin_key,
        ))
        .await?
        .into_inner();
    assert_eq!(revoked.jti, jti);
    for err in [
        c.get_task(with_key(pb::IdReq { id: task.clone() }, &ro_session))
            .await
            .unwrap_err(),
        c.get_task(with_key(pb::IdReq { id: task.clone() }, &readonly_key))
            .await
            .unwrap_err(),
        c.get_key(pb::GetKeyReq {
            message: message_for(&reader.signer),
            signature: readonly_key.clone(),
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("revoked"), "{err:?}");
    }
    // The user's own signature still works.
    c.get_task(reader.req(pb::IdReq { id: task })).await?;
    Ok(())
}

/// `aggregator config from-go --import-jwt-secret` carries the original's `jwt_secret`: an admin
/// API key the original minted with it (roles, no `jti`) signs in here, and can be revoked.
#[tokio::test]
async fn a_key_minted_by_the_original_works_once_its_secret_is_imported() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = TestServer::config(dir.path());
    let go_yaml = dir.path().join("aggregator.yaml");
    std::fs::write(&go_yaml, "jwt_secret: \"the-original's-secret\"\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "--keys-dir",
            config.keys_dir.to_str().unwrap(),
            "config",
            "from-go",
        ])
        .arg(&go_yaml)
        .arg("--import-jwt-secret")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = TestServer::start_with(dir, config).await?;
    let mut c = server.client().await?;

    // As the original's create-api-key signs it.
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let original_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({
            "iss": "AvaProtocol",
            "sub": PrivateKeySigner::random().address().to_string(),
            "aud": ["31337"],
            "exp": exp,
            "roles": ["admin"],
        }),
        &jsonwebtoken::EncodingKey::from_secret(b"the-original's-secret"),
    )?;
    let someone = PrivateKeySigner::random();
    let session = c
        .get_key(pb::GetKeyReq {
            message: message_for(&someone),
            signature: original_key.clone(),
        })
        .await?
        .into_inner()
        .key;
    c.list_wallets(with_key(pb::ListWalletReq::default(), &session))
        .await?;
    c.revoke_api_key(with_key(
        pb::RevokeApiKeyReq {
            key: original_key.clone(),
            jti: String::new(),
        },
        &original_key,
    ))
    .await?;
    let err = c
        .list_wallets(with_key(pb::ListWalletReq::default(), &session))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    Ok(())
}
