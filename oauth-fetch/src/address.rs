//! Which addresses a fetch for a stranger may reach: the IANA IPv4 and IPv6 Special-Purpose
//! Address Registries (every entry that is not globally reachable), multicast, and the
//! deprecated ranges that still route somewhere private. An address in an IPv6 form of IPv4
//! (mapped, SIIT-translated, the NAT64 well-known prefix) is judged by the IPv4 address it
//! carries, because that is where the packets go.
//!
//! Two entries are refused whole although a few of their addresses are globally reachable
//! (`192.0.0.0/24`: two anycast /32s; `2001::/23`: PCP/TURN anycast, AMT, AS112, ORCHIDv2):
//! no metadata document is served from them, and a shorter table is easier to check.
//!
//! ```
//! use oauth_fetch::address::{is_public, refusal};
//!
//! assert!(is_public("93.184.215.14".parse().unwrap()));
//! assert_eq!(refusal("::ffff:169.254.169.254".parse().unwrap()), Some("169.254.0.0/16 link local"));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not globally reachable, with the registry's name.
const V4: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "0.0.0.0/8 this network"),
    (0x0a00_0000, 8, "10.0.0.0/8 private use"),
    (0x6440_0000, 10, "100.64.0.0/10 shared address space"),
    (0x7f00_0000, 8, "127.0.0.0/8 loopback"),
    (0xa9fe_0000, 16, "169.254.0.0/16 link local"),
    (0xac10_0000, 12, "172.16.0.0/12 private use"),
    (0xc000_0000, 24, "192.0.0.0/24 IETF protocol assignments"),
    (0xc000_0200, 24, "192.0.2.0/24 documentation"),
    (0xc058_6300, 24, "192.88.99.0/24 deprecated 6to4 relay anycast"),
    (0xc0a8_0000, 16, "192.168.0.0/16 private use"),
    (0xc612_0000, 15, "198.18.0.0/15 benchmarking"),
    (0xc633_6400, 24, "198.51.100.0/24 documentation"),
    (0xcb00_7100, 24, "203.0.113.0/24 documentation"),
    (0xe000_0000, 4, "224.0.0.0/4 multicast"),
    (0xf000_0000, 4, "240.0.0.0/4 reserved"),
    // 255.255.255.255/32 (limited broadcast) is inside 240.0.0.0/4.
];

/// IPv6 prefixes that carry an IPv4 address in their last 32 bits.
const V6_EMBEDDING_V4: &[(u128, u8, &str)] = &[
    (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96, "::ffff:0:0/96 IPv4-mapped"),
    (0x0000_0000_0000_0000_ffff_0000_0000_0000, 96, "::ffff:0:0:0/96 IPv4-translated"),
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96, "64:ff9b::/96 IPv4/IPv6 translation"),
];

/// IPv6 ranges that are not globally reachable, with the registry's name.
const V6: &[(u128, u8, &str)] = &[
    // ::/128 (unspecified) and ::1/128 (loopback) are inside ::/96.
    (0, 96, "::/96 IPv4-compatible (deprecated), unspecified, loopback"),
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, "64:ff9b:1::/48 local-use IPv4/IPv6 translation"),
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, "100::/64 discard-only"),
    (0x0100_0000_0000_0001_0000_0000_0000_0000, 64, "100:0:0:1::/64 dummy prefix"),
    // Teredo (2001::/32), benchmarking, ORCHID, and the rest of the IETF block.
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, "2001::/23 IETF protocol assignments"),
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, "2001:db8::/32 documentation"),
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16, "2002::/16 6to4"),
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, "3fff::/20 documentation"),
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16, "5f00::/16 segment routing SIDs"),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, "fc00::/7 unique local"),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, "fe80::/10 link local"),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, "fec0::/10 deprecated site local"),
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, "ff00::/8 multicast"),
];

/// Whether `ip` is a globally reachable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

/// The special-purpose range `ip` is in, if any: why a fetch for a stranger may not reach it.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4.iter().find(|(net, len, _)| bits >> (32 - len) == net >> (32 - len)).map(|(_, _, name)| *name)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let within = |net: u128, len: u8| bits >> (128 - len) == net >> (128 - len);
    if V6_EMBEDDING_V4.iter().any(|(net, len, _)| within(*net, *len)) {
        // The low 32 bits are the IPv4 address the packets reach (truncation intended).
        return refusal_v4(Ipv4Addr::from(bits as u32));
    }
    V6.iter().find(|(net, len, _)| within(*net, *len)).map(|(_, _, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "93.184.215.14",
            "1.1.1.1",
            "192.31.196.1",   // AS112-v4, globally reachable
            "192.175.48.1",   // AS112 direct delegation, globally reachable
            "100.63.255.255", // just below shared address space
            "100.128.0.0",    // just above
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101", // NAT64 of 1.1.1.1
            "2620:4f:8000::1",  // AS112 direct delegation
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn every_special_purpose_range_is_refused() {
        for ip in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::a00:1",
            "::ffff:10.0.0.1",
            "::ffff:0:a00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "100:0:0:1::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:a00:1::",
            "3fff::1",
            "5f00::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
