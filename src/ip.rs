//! Which IP addresses the engine's outbound HTTP (`engine::http`) refuses to send requests to,
//! and the CIDR blocks (`engine.http.allow`) that lift the refusal.
//!
//! The rule is a deny-list of every range that is not the public internet: the aggregator's own
//! machine, its private networks, the cloud metadata services, and the ranges that tunnel to
//! those (IPv4-mapped IPv6, NAT64, 6to4 carry an IPv4 address inside, which is checked as such).
//! For IPv6 everything outside the global unicast block `2000::/3` is refused, so a range that
//! the table forgets is refused rather than let through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why `ip` must not be requested, or `None` when it is a public address.
///
/// The reason is what a user reads in the refusal, e.g. `"loopback"` or
/// `"link-local (cloud metadata)"`.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// IPv4 ranges, the more specific first: the first match gives the reason.
const V4_BLOCKS: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "unspecified"),        // 0.0.0.0/8, "this network"
    (0x0a00_0000, 8, "private"),            // 10.0.0.0/8
    (0x6440_0000, 10, "carrier-grade NAT"), // 100.64.0.0/10 (Alibaba's metadata too)
    (0x7f00_0000, 8, "loopback"),           // 127.0.0.0/8
    (0xa9fe_a9fe, 32, "link-local (cloud metadata)"), // 169.254.169.254
    (0xa9fe_0000, 16, "link-local"),        // 169.254.0.0/16
    (0xac10_0000, 12, "private"),           // 172.16.0.0/12
    (0xc000_0000, 24, "reserved (IETF protocol assignments)"), // 192.0.0.0/24 (Oracle's metadata)
    (0xc000_0200, 24, "documentation"),     // 192.0.2.0/24
    (0xc058_6300, 24, "reserved (6to4 relay)"), // 192.88.99.0/24
    (0xc0a8_0000, 16, "private"),           // 192.168.0.0/16
    (0xc612_0000, 15, "benchmarking"),      // 198.18.0.0/15
    (0xc633_6400, 24, "documentation"),     // 198.51.100.0/24
    (0xcb00_7100, 24, "documentation"),     // 203.0.113.0/24
    (0xe000_0000, 4, "multicast"),          // 224.0.0.0/4
    (0xffff_ffff, 32, "broadcast"),         // 255.255.255.255
    (0xf000_0000, 4, "reserved"),           // 240.0.0.0/4
];

/// IPv6 ranges inside or beside `2000::/3` that need a name of their own; the embedded-IPv4
/// forms are handled before this table.
const V6_BLOCKS: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),                                        // ::
    (1, 128, "loopback"),                                           // ::1
    (0x0064_ff9b_0001_u128 << 80, 48, "private (local-use NAT64)"), // 64:ff9b:1::/48
    (0x0100_u128 << 112, 64, "reserved (discard-only)"),            // 100::/64
    (0x2001_0db8_u128 << 96, 32, "documentation"),                  // 2001:db8::/32
    // Teredo (2001::/32) hides its IPv4 addresses, benchmarking is 2001:2::/48.
    (
        0x2001_u128 << 112,
        23,
        "reserved (IETF protocol assignments)",
    ), // 2001::/23
    (0x3fff_u128 << 112, 20, "documentation"), // 3fff::/20
    (0xfc00_u128 << 112, 7, "unique-local"),   // fc00::/7 (AWS's IPv6 metadata fd00:ec2::254)
    (0xfe80_u128 << 112, 10, "link-local"),    // fe80::/10
    (0xfec0_u128 << 112, 10, "site-local"),    // fec0::/10, deprecated but routable inside sites
    (0xff00_u128 << 112, 8, "multicast"),      // ff00::/8
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_BLOCKS
        .iter()
        .find(|(network, prefix, _)| bits & mask_v4(*prefix) == *network)
        .map(|(_, _, reason)| *reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    if let Some(v4) = embedded_v4(bits) {
        return forbidden_v4(v4);
    }
    if let Some((_, _, reason)) = V6_BLOCKS
        .iter()
        .find(|(network, prefix, _)| bits & mask_v6(*prefix) == *network)
    {
        return Some(reason);
    }
    // Only 2000::/3 is global unicast; the rest is reserved or one of the ranges above.
    if bits >> 125 != 0b001 {
        return Some("reserved");
    }
    None
}

/// The IPv4 address that an IPv6 address stands for, where the packet would end up at it: an
/// IPv4-mapped address (`::ffff:a.b.c.d`, the socket connects over IPv4), NAT64
/// (`64:ff9b::/96`, the translator forwards to it) and 6to4 (`2002:AABB:CCDD::/48`, the relay
/// forwards to it).
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    const LOW_32: u128 = 0xffff_ffff;
    if bits >> 32 == 0xffff {
        return Some(Ipv4Addr::from((bits & LOW_32) as u32));
    }
    if bits >> 32 == 0x0064_ff9b_u128 << 64 {
        return Some(Ipv4Addr::from((bits & LOW_32) as u32));
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from(((bits >> 80) & LOW_32) as u32));
    }
    None
}

fn mask_v4(prefix: u8) -> u32 {
    // `checked_shl` because shifting a u32 by 32 (prefix 0) overflows.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A block of addresses, `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
///
/// Serialized as that text, for the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a CIDR block like 10.0.0.0/8 or fd00::/8: {why}")]
pub struct CidrError {
    text: String,
    why: &'static str,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address is the IPv4 address it maps:
    /// the socket connects over IPv4 to it.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why| CidrError {
            text: text.to_owned(),
            why,
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| error("not an IP address before the '/'"))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| {
                    error(if network.is_ipv4() {
                        "the prefix length must be 0 to 32"
                    } else {
                        "the prefix length must be 0 to 128"
                    })
                })?,
        };
        // Bits set past the prefix are almost always a typo ("10.0.0.1/8"): refusing them
        // says so, where masking them would silently allow a block the author did not write.
        let host_bits = match network {
            IpAddr::V4(v4) => u32::from(v4) & !mask_v4(prefix) != 0,
            IpAddr::V6(v6) => u128::from(v6) & !mask_v6(prefix) != 0,
        };
        if host_bits {
            return Err(error("bits are set past the prefix length"));
        }
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> Self {
        cidr.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        forbidden(text.parse().unwrap())
    }

    #[test]
    fn every_blocked_range_is_refused_with_its_reason() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.100.100.200", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("169.254.0.1", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.192", "reserved (IETF protocol assignments)"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "reserved (6to4 relay)"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "unique-local"),
            ("ff02::1", "multicast"),
            ("100::1", "reserved (discard-only)"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "reserved (IETF protocol assignments)"),
            ("2001:2::1", "reserved (IETF protocol assignments)"),
            ("3fff::1", "documentation"),
            ("64:ff9b:1::1", "private (local-use NAT64)"),
            ("::127.0.0.1", "reserved"),
            ("5f00::1", "reserved"),
            ("4000::1", "reserved"),
        ];
        for (address, expected) in cases {
            assert_eq!(reason(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        let cases = [
            ("::ffff:127.0.0.1", Some("loopback")),
            (
                "::ffff:169.254.169.254",
                Some("link-local (cloud metadata)"),
            ),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("link-local (cloud metadata)")),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:c0a8:0101::1", Some("private")),
            ("2002:0808:0808::1", None),
        ];
        for (address, expected) in cases {
            assert_eq!(reason(address), expected, "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }

    #[test]
    fn cidr_blocks_parse_and_contain() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("127.255.255.255".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("::1".parse().unwrap()));
        // The mapped form connects to the IPv4 address, so the IPv4 block covers it.
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));

        let one: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(one.to_string(), "10.1.2.3/32");
        assert!(one.contains("10.1.2.3".parse().unwrap()));
        assert!(!one.contains("10.1.2.4".parse().unwrap()));

        let ula: Cidr = " fd00::/8 ".parse().unwrap();
        assert!(ula.contains("fd12::1".parse().unwrap()));
        assert!(!ula.contains("fc00::1".parse().unwrap()));
        let v6_one: Cidr = "::1".parse().unwrap();
        assert_eq!(v6_one.to_string(), "::1/128");

        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.1".parse().unwrap()));
        let everything_v6: Cidr = "::/0".parse().unwrap();
        assert!(everything_v6.contains("fe80::1".parse().unwrap()));
    }

    #[test]
    fn malformed_cidr_blocks_are_refused_with_the_reason() {
        for (text, why) in [
            ("10.0.0.1/8", "past the prefix"),
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/x", "0 to 32"),
            ("localhost/8", "not an IP address"),
            ("", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
        ] {
            let err = text.parse::<Cidr>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn cidr_blocks_read_and_write_as_text() {
        let blocks: Vec<Cidr> = serde_json::from_str(r#"["127.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&blocks).unwrap(),
            r#"["127.0.0.0/8","::1/128"]"#
        );
        assert!(serde_json::from_str::<Vec<Cidr>>(r#"["127.0.0.1/8"]"#).is_err());
    }
}
