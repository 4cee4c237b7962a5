//! Ethereum addresses as the aggregator writes them: lower-case hex in events and keys,
//! checksummed on the wire (as the original shows them), parsed from requests with the field
//! named on failure.

use alloy::primitives::Address;

use crate::domain::{Code, DomainError};

/// Addresses as events and keys store them: lower-case hex.
pub fn lower(address: Address) -> String {
    format!("{address:#x}")
}

/// Addresses are stored lower-case; the wire shows them checksummed, as the original does.
pub fn checksum(address: &str) -> String {
    address
        .parse::<Address>()
        .map_or_else(|_| address.to_owned(), |a| a.to_checksum(None))
}

/// Parses an address from a request, naming the field on failure.
pub fn parse_address(field: &str, text: &str) -> Result<Address, DomainError> {
    text.trim().parse::<Address>().map_err(|_| {
        DomainError::Invalid(
            format!("{field} {text:?} is not an address"),
            Code::InvalidAddress,
        )
    })
}
