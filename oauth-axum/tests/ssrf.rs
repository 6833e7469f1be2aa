//! The metadata-document fetcher against every special-purpose address range: one address of
//! each entry of the IANA IPv4 and IPv6 Special-Purpose Address Registries that is not globally
//! reachable, multicast, the deprecated ranges, and the IPv4 ranges again in their IPv6 forms
//! (mapped, SIIT-translated, NAT64). Each is named as a `client_id` host, as an attacker would;
//! none may be connected to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use oauth_axum::metadata_documents::HttpsDocumentFetcher;
use oauth_core::MetadataDocumentFetcher as _;

/// One address from each IPv4 entry that is not globally reachable, and multicast.
const V4: &[(&str, &str)] = &[
    ("0.1.2.3", "0.0.0.0/8 this network"),
    ("10.1.2.3", "10.0.0.0/8 private use"),
    ("100.100.1.1", "100.64.0.0/10 shared address space"),
    ("127.0.0.1", "127.0.0.0/8 loopback"),
    ("169.254.169.254", "169.254.0.0/16 link local (cloud metadata)"),
    ("172.20.1.1", "172.16.0.0/12 private use"),
    ("192.0.0.1", "192.0.0.0/24 IETF protocol assignments"),
    ("192.0.0.8", "192.0.0.8/32 IPv4 dummy address"),
    ("192.0.0.170", "192.0.0.170/32 NAT64/DNS64 discovery"),
    ("192.0.2.10", "192.0.2.0/24 documentation (TEST-NET-1)"),
    ("192.88.99.1", "192.88.99.0/24 deprecated 6to4 relay anycast"),
    ("192.168.1.1", "192.168.0.0/16 private use"),
    ("198.19.0.1", "198.18.0.0/15 benchmarking"),
    ("198.51.100.7", "198.51.100.0/24 documentation (TEST-NET-2)"),
    ("203.0.113.9", "203.0.113.0/24 documentation (TEST-NET-3)"),
    ("239.1.1.1", "224.0.0.0/4 multicast"),
    ("240.0.0.1", "240.0.0.0/4 reserved"),
    ("255.255.255.255", "255.255.255.255/32 limited broadcast"),
];

/// One address from each IPv6 entry that is not globally reachable, multicast and the
/// deprecated ranges.
const V6: &[(&str, &str)] = &[
    ("::1", "::1/128 loopback"),
    ("::", "::/128 unspecified"),
    ("::808:808", "::/96 IPv4-compatible (deprecated)"),
    ("64:ff9b:1::1", "64:ff9b:1::/48 local-use IPv4/IPv6 translation"),
    ("100::1", "100::/64 discard-only"),
    ("100:0:0:1::1", "100:0:0:1::/64 dummy prefix"),
    ("2001::1", "2001::/32 Teredo"),
    ("2001:2::1", "2001:2::/48 benchmarking"),
    ("2001:10::1", "2001:10::/28 deprecated ORCHID"),
    ("2001:db8::1", "2001:db8::/32 documentation"),
    ("2002:a00:1::1", "2002::/16 6to4"),
    ("3fff::1", "3fff::/20 documentation"),
    ("5f00::1", "5f00::/16 segment routing SIDs"),
    ("fd12:3456::1", "fc00::/7 unique local"),
    ("fe80::1", "fe80::/10 link local"),
    ("fec0::1", "fec0::/10 deprecated site local"),
    ("ff02::1", "ff00::/8 multicast"),
];

#[tokio::test]
async fn no_special_purpose_address_is_fetched_from() {
    let fetcher = HttpsDocumentFetcher::new();
    let mut hosts: Vec<(String, String)> = Vec::new();
    for (ip, entry) in V4 {
        hosts.push((ip.to_string(), entry.to_string()));
        for form in ["::ffff:", "::ffff:0:", "64:ff9b::"] {
            hosts.push((format!("[{form}{ip}]"), format!("{entry}, as {form}{ip}")));
        }
    }
    for (ip, entry) in V6 {
        hosts.push((format!("[{ip}]"), entry.to_string()));
    }
    let mut fetched = Vec::new();
    for (i, (host, entry)) in hosts.iter().enumerate() {
        // Each from its own path, so that no budget is what refuses it.
        let url = format!("https://{host}/client-{i}.json");
        let why = fetcher.fetch(&url).await.unwrap_err().to_string();
        if !why.contains("not a public address") {
            fetched.push(format!("{entry}: {why}"));
        }
    }
    assert!(fetched.is_empty(), "tried to reach special-purpose addresses:\n{}", fetched.join("\n"));
}
