//! The sign-in message: what `GetSignatureFormat` returns, what the wallet signs with EIP-191
//! `personal_sign`, and what `GetKey` checks before issuing a token.
//!
//! ```text
//! Please sign the below text for ownership verification.
//!
//! URI: https://app.avaprotocol.org
//! Chain ID: 31337
//! Version: 0.1.0
//! Issued At: 2026-11-25T16:04:05.000Z
//! Expire At: 2026-11-26T16:04:05.000Z
//! Wallet: 0x...
//! ```
//!
//! Checks, stricter than the original: the text is exactly the layout above (rebuilt from the
//! parsed fields and compared byte for byte, so that no other signed text is a login), the URI is
//! ours (`auth.signin_uri`), the chain id is ours, `Issued At` is not in the future
//! (beyond the clock skew), `Expire At` is in the future and no further from `Issued At` than the
//! maximum token lifetime, and the recovered signer is `Wallet`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, Signature};

use super::AuthError;

const HEADER: &str = "Please sign the below text for ownership verification.";

/// The parts of a sign-in message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub uri: String,
    pub chain_id: u64,
    pub version: String,
    pub issued_at: SystemTime,
    pub expire_at: SystemTime,
    pub wallet: Address,
}

impl SignIn {
    /// The text to sign, exactly as the original server formats it.
    pub fn message(&self, wallet_as_given: &str) -> String {
        format!(
            "{HEADER}\n\nURI: {}\nChain ID: {}\nVersion: {}\nIssued At: {}\nExpire At: {}\nWallet: {wallet_as_given}",
            self.uri,
            self.chain_id,
            self.version,
            format_time(self.issued_at),
            format_time(self.expire_at),
        )
    }
}

/// `2026-11-25T16:04:05.000Z`: UTC, exactly three fraction digits.
pub fn format_time(t: SystemTime) -> String {
    // Whole milliseconds, so that a round trip through the message loses nothing.
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    humantime::format_rfc3339_millis(t).to_string()
}

fn parse_time(line: &str, text: &str) -> Result<SystemTime, AuthError> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(text))
        .map_err(|_| AuthError(format!("{line} {text:?} is not an RFC 3339 UTC time")))
}

/// Parses a sign-in message: its fields, then the whole text, which must be exactly what
/// `SignIn::message` makes of them (any other text holding the same lines is refused).
pub fn parse(message: &str) -> Result<SignIn, AuthError> {
    let mut uri = None;
    let mut chain_id = None;
    let mut version = None;
    let mut issued = None;
    let mut expire = None;
    let mut wallet = None;
    for line in message.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let slot = match name.trim() {
            "URI" => &mut uri,
            "Chain ID" => &mut chain_id,
            "Version" => &mut version,
            "Issued At" => &mut issued,
            "Expire At" => &mut expire,
            "Wallet" => &mut wallet,
            _ => continue,
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(AuthError(format!(
                "the line {:?} appears twice in the message",
                name.trim()
            )));
        }
    }
    let missing = |name: &str| AuthError(format!("the message has no {name:?} line"));
    let chain_id = chain_id.ok_or_else(|| missing("Chain ID"))?;
    let chain_id = chain_id
        .parse()
        .map_err(|_| AuthError(format!("Chain ID {chain_id:?} is not a number")))?;
    let wallet_text = wallet.ok_or_else(|| missing("Wallet"))?;
    let wallet = wallet_text
        .parse::<Address>()
        .map_err(|_| AuthError(format!("Wallet {wallet_text:?} is not an address")))?;
    let signin = SignIn {
        uri: uri.ok_or_else(|| missing("URI"))?,
        chain_id,
        version: version.ok_or_else(|| missing("Version"))?,
        issued_at: parse_time("Issued At", &issued.ok_or_else(|| missing("Issued At"))?)?,
        expire_at: parse_time("Expire At", &expire.ok_or_else(|| missing("Expire At"))?)?,
        wallet,
    };
    if signin.message(&wallet_text) != message {
        return Err(AuthError(
            "the message is not the sign-in text GetSignatureFormat returns: it must be exactly its header, a blank line, then the URI, Chain ID, Version, Issued At, Expire At and Wallet lines in that order, times as 2026-01-01T00:00:00.000Z"
                .into(),
        ));
    }
    Ok(signin)
}

/// The rules a message must meet, from the config.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The URI sign-in messages must name (`auth.signin_uri`).
    pub uri: String,
    pub chain_id: u64,
    pub max_lifetime: Duration,
    pub clock_skew: Duration,
}

/// Checks a parsed message's times and chain against `now`.
pub fn check(signin: &SignIn, policy: &Policy, now: SystemTime) -> Result<(), AuthError> {
    if signin.uri != policy.uri {
        return Err(AuthError(format!(
            "the message's URI {:?} is not this aggregator's {:?}",
            signin.uri, policy.uri
        )));
    }
    if signin.chain_id != policy.chain_id {
        return Err(AuthError(format!(
            "the message is for chain {}, this aggregator serves chain {}",
            signin.chain_id, policy.chain_id
        )));
    }
    if signin.issued_at > now + policy.clock_skew {
        return Err(AuthError("the message's Issued At is in the future".into()));
    }
    if signin.expire_at <= now {
        return Err(AuthError(
            "the message has expired (Expire At is past)".into(),
        ));
    }
    let lifetime = signin
        .expire_at
        .duration_since(signin.issued_at)
        .unwrap_or_default();
    if lifetime > policy.max_lifetime {
        return Err(AuthError(format!(
            "the message asks for a token valid {}, longer than the maximum of {}",
            humantime::format_duration(lifetime),
            humantime::format_duration(policy.max_lifetime)
        )));
    }
    Ok(())
}

/// Recovers the EIP-191 (`personal_sign`) signer of `message` from a 65-byte hex signature.
pub fn recover(message: &str, signature: &str) -> Result<Address, AuthError> {
    let hex = signature.trim().trim_start_matches("0x");
    let bytes = hex::decode(hex).map_err(|_| AuthError("the signature is not hex".into()))?;
    if bytes.len() != 65 {
        return Err(AuthError(format!(
            "the signature has {} bytes, expected 65",
            bytes.len()
        )));
    }
    let signature =
        Signature::from_raw(&bytes).map_err(|e| AuthError(format!("invalid signature: {e}")))?;
    signature
        .recover_address_from_msg(message.as_bytes())
        .map_err(|e| AuthError(format!("cannot recover the signer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    fn policy() -> Policy {
        Policy {
            uri: "https://app.avaprotocol.org".into(),
            chain_id: 31337,
            max_lifetime: Duration::from_secs(7 * 86400),
            clock_skew: Duration::from_secs(60),
        }
    }

    fn signin(signer: &PrivateKeySigner, now: SystemTime, lifetime: Duration) -> SignIn {
        SignIn {
            uri: "https://app.avaprotocol.org".into(),
            chain_id: 31337,
            version: "0.1.0".into(),
            issued_at: now,
            expire_at: now + lifetime,
            wallet: signer.address(),
        }
    }

    #[test]
    fn the_message_has_the_original_layout_and_parses_back() {
        let signer = PrivateKeySigner::random();
        let now = UNIX_EPOCH + Duration::from_millis(1_764_086_645_123);
        let s = signin(&signer, now, Duration::from_secs(86400));
        let text = s.message(&signer.address().to_string());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "");
        assert_eq!(lines[5], "Issued At: 2025-11-25T16:04:05.123Z");
        assert_eq!(parse(&text).unwrap(), s);
    }

    #[test]
    fn a_signed_message_recovers_its_wallet() {
        let signer = PrivateKeySigner::random();
        let s = signin(&signer, SystemTime::now(), Duration::from_secs(3600));
        let text = s.message(&signer.address().to_string());
        let signature = signer.sign_message_sync(text.as_bytes()).unwrap();
        let hex = format!("0x{}", hex::encode(signature.as_bytes()));
        assert_eq!(recover(&text, &hex).unwrap(), signer.address());
        // Another message: another signer.
        assert_ne!(
            recover(&format!("{text} "), &hex).unwrap(),
            signer.address()
        );
    }

    #[test]
    fn refuses_what_the_original_lets_through() {
        let signer = PrivateKeySigner::random();
        let now = SystemTime::now();
        let too_long = signin(&signer, now, Duration::from_secs(30 * 86400));
        assert!(
            check(&too_long, &policy(), now)
                .unwrap_err()
                .0
                .contains("longer than the maximum")
        );
        let future = signin(
            &signer,
            now + Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        assert!(
            check(&future, &policy(), now)
                .unwrap_err()
                .0
                .contains("future")
        );
        let mut wrong_chain = signin(&signer, now, Duration::from_secs(3600));
        wrong_chain.chain_id = 1;
        assert!(
            check(&wrong_chain, &policy(), now)
                .unwrap_err()
                .0
                .contains("chain 1")
        );
        let expired = signin(
            &signer,
            now - Duration::from_secs(7200),
            Duration::from_secs(3600),
        );
        assert!(
            check(&expired, &policy(), now)
                .unwrap_err()
                .0
                .contains("expired")
        );
        assert!(
            check(
                &signin(&signer, now, Duration::from_secs(3600)),
                &policy(),
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn only_the_exact_text_with_our_uri_is_a_login() {
        let signer = PrivateKeySigner::random();
        // Whole seconds: the ".000Z" spelling below is the one a loose client would drop.
        let now = UNIX_EPOCH + Duration::from_secs(1_764_086_645);
        let s = signin(&signer, now, Duration::from_secs(3600));
        let text = s.message(&signer.address().to_string());
        assert!(parse(&text).is_ok());
        // The five lines inside another text, another header, reordered lines, a trailing line.
        for loose in [
            format!("Transfer all my funds.\n{text}"),
            text.replacen(HEADER, "Sign this to win a prize.", 1),
            text.replacen("\nVersion", "\nWhatever: x\nVersion", 1),
            format!("{text}\nAmount: 1000 ETH"),
            text.replace(".000Z", "Z"),
        ] {
            assert!(parse(&loose).is_err(), "{loose}");
        }
        let mut elsewhere = s.clone();
        elsewhere.uri = "https://evil.example".into();
        let parsed = parse(&elsewhere.message(&signer.address().to_string())).unwrap();
        assert!(
            check(&parsed, &policy(), now)
                .unwrap_err()
                .0
                .contains("is not this aggregator's")
        );
    }

    #[test]
    fn malformed_messages_say_what_is_missing() {
        assert!(parse("hello").unwrap_err().0.contains("Chain ID"));
        let text = "Chain ID: 1\nWallet: 0xnope";
        assert!(parse(text).unwrap_err().0.contains("not an address"));
        assert!(recover("x", "0x1234").unwrap_err().0.contains("65"));
    }
}
