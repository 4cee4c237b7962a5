//! `WithdrawFunds` over gRPC on anvil: the request checked with the original's words before
//! anything is built, then ETH, an ERC-20 and `"max"` of each moved out of the user's wallet
//! (the first withdrawal deploying it), each answered `confirmed` with its userOpHash.

use aggregator::pb;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use tonic::Code;

use crate::writes::{ETH, World};

fn request(wallet: &str, recipient: Address, amount: &str, token: &str) -> pb::WithdrawFundsReq {
    pb::WithdrawFundsReq {
        recipient_address: recipient.to_checksum(None),
        amount: amount.into(),
        token: token.into(),
        smart_wallet_address: wallet.into(),
    }
}

#[tokio::test]
async fn a_withdrawal_request_is_checked_before_anything_is_sent() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let wallet = w.wallet.to_checksum(None);
    let to = Address::repeat_byte(0x71);
    let refused = |req: pb::WithdrawFundsReq| {
        let req = w.user.req(req);
        let mut c = c.clone();
        async move {
            c.withdraw_funds(req)
                .await
                .expect_err("the withdrawal must be refused")
        }
    };

    for amount in ["-1", "0", "1.5", "0x10", "lots"] {
        let e = refused(request(&wallet, to, amount, "ETH")).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{amount}: {e:?}");
        assert_eq!(e.message(), "invalid amount: must be a positive integer");
    }
    let mut no_recipient = request(&wallet, to, "1", "ETH");
    no_recipient.recipient_address.clear();
    assert_eq!(
        refused(no_recipient).await.message(),
        "recipient address is required"
    );
    let mut bad_recipient = request(&wallet, to, "1", "ETH");
    bad_recipient.recipient_address = "0x1234".into();
    assert_eq!(
        refused(bad_recipient).await.message(),
        "invalid recipient address format"
    );
    let e = refused(request(&wallet, to, "1", "not-a-token")).await;
    assert!(
        e.message().starts_with("invalid token contract address"),
        "{e:?}"
    );
    let e = refused(request("", to, "1", "ETH")).await;
    assert!(
        e.message().starts_with("smart wallet address is required"),
        "{e:?}"
    );
    // A wallet that is not the caller's.
    let stranger = Address::repeat_byte(0x72).to_checksum(None);
    let e = refused(request(&stranger, to, "1", "ETH")).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("not found for owner"), "{e:?}");

    // More than the wallet holds: refused with the balances, as a precondition.
    let e = refused(request(&wallet, to, &(2 * ETH).to_string(), "ETH")).await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("insufficient balance"), "{e:?}");
    let e = refused(request(&wallet, to, "1001", &w.token.to_checksum(None))).await;
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Nothing was sent: the wallet is not even deployed, the balances are untouched.
    let chain = &w.setup.node.provider;
    assert!(chain.get_code_at(w.wallet).await?.is_empty());
    assert_eq!(chain.get_balance(w.wallet).await?, U256::from(ETH));
    assert_eq!(chain.get_balance(to).await?, U256::ZERO);
    assert_eq!(w.balance(w.wallet).await?, U256::from(1000));
    // Another user cannot withdraw from this wallet either.
    let other = crate::support::User::sign_in(&mut c).await?;
    let e = c
        .withdraw_funds(other.req(request(&wallet, to, "1", "ETH")))
        .await
        .unwrap_err();
    assert!(e.message().contains("not found for owner"), "{e:?}");
    Ok(())
}

#[tokio::test]
async fn withdrawals_move_the_right_balances() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut c = w.server.client().await?;
    let chain = &w.setup.node.provider;
    let wallet = w.wallet.to_checksum(None);
    let token = w.token.to_checksum(None);
    let (alice, bob) = (Address::repeat_byte(0x73), Address::repeat_byte(0x74));
    let mut withdraw = async |recipient: Address, amount: &str, asset: &str| {
        let resp = c
            .withdraw_funds(w.user.req(request(&wallet, recipient, amount, asset)))
            .await?
            .into_inner();
        assert!(resp.success, "{resp:?}");
        assert_eq!(resp.status, "confirmed", "{resp:?}");
        assert!(resp.user_op_hash.starts_with("0x") && resp.user_op_hash.len() == 66);
        assert!(resp.transaction_hash.starts_with("0x"), "{resp:?}");
        assert_eq!(resp.smart_wallet_address, wallet);
        assert_eq!(resp.token, asset);
        anyhow::Ok(resp)
    };

    // ETH, exactly: the first operation deploys the wallet too.
    let eth = withdraw(alice, "12345", "ETH").await?;
    assert_eq!(eth.amount, "12345");
    assert_eq!(chain.get_balance(alice).await?, U256::from(12345));
    assert!(!chain.get_code_at(w.wallet).await?.is_empty());

    // An ERC-20, exactly, then the rest of it with "max".
    withdraw(alice, "250", &token).await?;
    assert_eq!(w.balance(alice).await?, U256::from(250));
    assert_eq!(w.balance(w.wallet).await?, U256::from(750));
    let rest = withdraw(bob, "max", &token).await?;
    assert_eq!(rest.amount, "750");
    assert_eq!(w.balance(bob).await?, U256::from(750));
    assert_eq!(w.balance(w.wallet).await?, U256::ZERO);
    // The ETH paid the gas; nothing else moved.
    assert_eq!(chain.get_balance(alice).await?, U256::from(12345));

    // "max" of ETH: everything but what the operation's gas may cost.
    let before = chain.get_balance(w.wallet).await?;
    let all = withdraw(bob, "MAX", "eth").await?;
    let sent: U256 = all.amount.parse()?;
    assert_eq!(chain.get_balance(bob).await?, sent);
    let left = chain.get_balance(w.wallet).await?;
    assert!(sent > before / U256::from(2), "{sent} of {before}");
    assert!(left < before - sent, "the gas was paid from the rest");

    // Now the token balance is zero: "max" of it has nothing to send.
    let e = c
        .withdraw_funds(w.user.req(request(&wallet, alice, "max", &token)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().starts_with("insufficient balance"), "{e:?}");
    Ok(())
}
