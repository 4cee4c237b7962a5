//! `WithdrawFunds`: what a withdrawal asks for, checked before anything is built, and the calls
//! it makes. ETH goes out with `execute(recipient, amount, "")`, an ERC-20 with
//! `execute(token, 0, transfer(recipient, amount))`, as the original builds them.
//!
//! `"max"` is the whole balance: of the token, or of ETH less what the operation's gas may
//! cost (the wallet must hold the EntryPoint's prefund, `limits × maxFeePerGas`, on top of what it
//! sends; with a paymaster it sends everything).

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;

use super::user_op::Call;

alloy::sol! {
    function transfer(address to, uint256 amount) external returns (bool);
}

/// What to withdraw: everything, or an amount in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Max,
    Exactly(U256),
}

/// ETH, or an ERC-20 contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Eth,
    Token(Address),
}

/// A withdrawal as asked, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawal {
    pub recipient: Address,
    pub amount: Amount,
    pub asset: Asset,
}

/// Why a withdrawal request is refused. The texts are the original's where it had one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WithdrawError {
    #[error("recipient address is required")]
    RecipientRequired,
    #[error("invalid recipient address format")]
    InvalidRecipient,
    #[error("amount is required")]
    AmountRequired,
    #[error("invalid amount: must be a positive integer")]
    InvalidAmount,
    #[error("token is required")]
    TokenRequired,
    #[error("invalid token contract address: {0}")]
    InvalidToken(String),
    #[error("insufficient balance: the wallet holds {held} and the withdrawal needs {needed}")]
    InsufficientBalance { held: U256, needed: U256 },
}

/// Parses the request's fields (`token`: `ETH`, in any case, or a contract address; `amount`: a
/// positive decimal integer in base units, or `max`).
pub fn parse(recipient: &str, amount: &str, token: &str) -> Result<Withdrawal, WithdrawError> {
    if recipient.is_empty() {
        return Err(WithdrawError::RecipientRequired);
    }
    if amount.is_empty() {
        return Err(WithdrawError::AmountRequired);
    }
    if token.is_empty() {
        return Err(WithdrawError::TokenRequired);
    }
    let recipient: Address = recipient
        .parse()
        .map_err(|_| WithdrawError::InvalidRecipient)?;
    let amount = if amount.eq_ignore_ascii_case("max") {
        Amount::Max
    } else {
        if !amount.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WithdrawError::InvalidAmount);
        }
        let value = U256::from_str_radix(amount, 10).map_err(|_| WithdrawError::InvalidAmount)?;
        if value.is_zero() {
            return Err(WithdrawError::InvalidAmount);
        }
        Amount::Exactly(value)
    };
    let asset = if token.eq_ignore_ascii_case("eth") {
        Asset::Eth
    } else {
        Asset::Token(
            token
                .parse()
                .map_err(|_| WithdrawError::InvalidToken(token.to_owned()))?,
        )
    };
    Ok(Withdrawal {
        recipient,
        amount,
        asset,
    })
}

/// The amount to send, given what the wallet holds of the asset and, for ETH paid by the wallet,
/// the most its gas may cost; refuses what the balance does not cover.
pub fn resolve(amount: Amount, held: U256, gas_reserve: U256) -> Result<U256, WithdrawError> {
    let available = held.saturating_sub(gas_reserve);
    let needed = match amount {
        Amount::Max => available,
        Amount::Exactly(value) => value,
    };
    if needed.is_zero() || needed > available {
        return Err(WithdrawError::InsufficientBalance {
            held,
            needed: needed.max(U256::from(1)).saturating_add(gas_reserve),
        });
    }
    Ok(needed)
}

/// The wallet's call for `amount` of the asset to the recipient.
pub fn call(withdrawal: &Withdrawal, amount: U256) -> Call {
    match withdrawal.asset {
        Asset::Eth => Call {
            to: withdrawal.recipient,
            value: amount,
            data: Bytes::new(),
        },
        Asset::Token(token) => Call {
            to: token,
            value: U256::ZERO,
            data: transferCall {
                to: withdrawal.recipient,
                amount,
            }
            .abi_encode()
            .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    #[test]
    fn given_the_originals_inputs_when_parsing_then_its_words_come_back() {
        let err = |r: &str, a: &str, t: &str| parse(r, a, t).unwrap_err().to_string();
        assert_eq!(err("", "1", "ETH"), "recipient address is required");
        assert_eq!(err(TO, "", "ETH"), "amount is required");
        assert_eq!(err(TO, "1", ""), "token is required");
        assert_eq!(err("0x12", "1", "ETH"), "invalid recipient address format");
        for amount in ["0", "-1", "1.5", "1e18", "abc", " 1", "0x10"] {
            assert_eq!(
                err(TO, amount, "ETH"),
                "invalid amount: must be a positive integer",
                "{amount}"
            );
        }
        assert_eq!(err(TO, "1", "USDC"), "invalid token contract address: USDC");
    }

    #[test]
    fn amounts_tokens_and_max_parse() {
        let w = parse(TO, "1000000000000000000", "eth").unwrap();
        assert_eq!(w.amount, Amount::Exactly(U256::from(10u64.pow(18))));
        assert_eq!(w.asset, Asset::Eth);
        let w = parse(TO, "MAX", "0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap();
        assert_eq!(w.amount, Amount::Max);
        assert!(matches!(w.asset, Asset::Token(_)));
    }

    #[test]
    fn given_a_balance_when_resolving_then_max_leaves_the_gas_reserve() {
        let (held, reserve) = (U256::from(1000), U256::from(100));
        assert_eq!(
            resolve(Amount::Max, held, reserve).unwrap(),
            U256::from(900)
        );
        assert_eq!(
            resolve(Amount::Exactly(U256::from(900)), held, reserve).unwrap(),
            U256::from(900)
        );
        let refused = resolve(Amount::Exactly(U256::from(901)), held, reserve).unwrap_err();
        assert!(
            refused.to_string().starts_with("insufficient balance"),
            "{refused}"
        );
        // Nothing left after the reserve: even max is refused.
        assert!(resolve(Amount::Max, U256::from(50), reserve).is_err());
        assert!(resolve(Amount::Max, U256::ZERO, U256::ZERO).is_err());
    }

    #[test]
    fn the_calls_are_the_originals() {
        let eth = parse(TO, "5", "ETH").unwrap();
        let c = call(&eth, U256::from(5));
        assert_eq!(
            (c.to, c.value, c.data.len()),
            (eth.recipient, U256::from(5), 0)
        );
        let token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .unwrap();
        let erc20 = parse(TO, "5", &token.to_string()).unwrap();
        let c = call(&erc20, U256::from(5));
        assert_eq!((c.to, c.value), (token, U256::ZERO));
        assert_eq!(&c.data[..4], &transferCall::SELECTOR);
    }
}
