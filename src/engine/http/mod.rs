//! Outbound HTTP for the REST and GraphQL nodes.
//!
//! Users choose the URLs, so every request could be aimed at the aggregator itself, its private
//! network or the cloud metadata service (SSRF); requests are refused by the IP address they
//! would use.
//!
//! Layout:
//! - `address`: which addresses are refused ([`forbidden`]) and the [`Cidr`] blocks that lift it.

mod address;

pub use address::{Cidr, CidrError, forbidden};
