//! The fetcher as an attacker meets it: names that resolve to special-purpose addresses, a
//! resolver that never answers, redirects and oversized answers from a server on a loopback
//! socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use oauth_fetch::{FetchConfig, FetchError, Fetcher, Resolver};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Answers every name with the same addresses, after `delay`.
#[derive(Debug)]
struct Fixed {
    ips: Vec<IpAddr>,
    delay: Duration,
}

#[async_trait]
impl Resolver for Fixed {
    async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        tokio::time::sleep(self.delay).await;
        Ok(self.ips.clone())
    }
}

fn resolving_to(ips: &[&str], delay: Duration) -> FetchConfig {
    let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    FetchConfig::public_only().with_resolver(Arc::new(Fixed { ips, delay })).with_host_budget(None)
}

#[tokio::test]
async fn a_name_resolving_to_a_special_purpose_address_is_never_connected_to() {
    // One address of every registry entry (and the IPv6 forms of IPv4), as DNS answers; and
    // an answer mixing a public address with a private one.
    let answers: &[&[&str]] = &[
        &["0.1.2.3"],
        &["10.1.2.3"],
        &["100.100.1.1"],
        &["127.0.0.1"],
        &["169.254.169.254"],
        &["172.20.1.1"],
        &["192.0.0.8"],
        &["192.0.2.10"],
        &["192.88.99.1"],
        &["192.168.1.1"],
        &["198.19.0.1"],
        &["198.51.100.7"],
        &["203.0.113.9"],
        &["239.1.1.1"],
        &["240.0.0.1"],
        &["255.255.255.255"],
        &["::1"],
        &["::"],
        &["::808:808"],
        &["::ffff:10.0.0.1"],
        &["::ffff:0:a00:1"],
        &["64:ff9b::a9fe:a9fe"],
        &["64:ff9b:1::1"],
        &["100::1"],
        &["100:0:0:1::1"],
        &["2001::1"],
        &["2001:2::1"],
        &["2001:db8::1"],
        &["2002:a00:1::1"],
        &["3fff::1"],
        &["5f00::1"],
        &["fd12:3456::1"],
        &["fe80::1"],
        &["fec0::1"],
        &["ff02::1"],
        &["1.1.1.1", "10.0.0.1"],
    ];
    for ips in answers {
        let fetcher = Fetcher::new(resolving_to(ips, Duration::ZERO));
        match fetcher.get_json("https://victim.example/client.json").await {
            Err(FetchError::Refused(detail)) => assert!(detail.contains("not a public address"), "{detail}"),
            other => panic!("{ips:?}: {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_resolver_that_never_answers_costs_the_time_budget_and_no_more() {
    let budget = Duration::from_secs(5);
    let fetcher = Fetcher::new(resolving_to(&["93.184.215.14"], Duration::from_secs(3600)).with_timeout(budget));
    let start = tokio::time::Instant::now();
    let result = fetcher.get_json("https://slow-dns.example/client.json").await;
    assert_eq!(result.unwrap_err(), FetchError::Timeout(budget));
    // The paused clock advances only as far as a timer asks: here the budget's.
    assert_eq!(start.elapsed(), budget);
}

/// A plain-http server on loopback answering every request with `response`; counts requests.
async fn loopback_server(response: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (origin, hits)
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let (target, target_hits) = loopback_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".into()).await;
    let (origin, _) = loopback_server(format!(
        "HTTP/1.1 302 Found\r\nLocation: {target}/secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
    .await;
    let fetcher = Fetcher::new(FetchConfig::operator_urls());
    let resp = fetcher.get_json(&format!("{origin}/doc")).await.unwrap();
    assert_eq!(resp.status.as_u16(), 302);
    assert_eq!(target_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_refused() {
    let big = "x".repeat(10_000);
    let (stated, _) = loopback_server(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{big}", big.len())).await;
    let (chunked, _) = loopback_server(format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    ))
    .await;
    let fetcher = Fetcher::new(FetchConfig::operator_urls().with_max_body(1000));
    for origin in [stated, chunked] {
        let e = fetcher.get_json(&format!("{origin}/doc")).await.unwrap_err();
        assert!(matches!(e, FetchError::TooLarge(_)), "{e:?}");
    }
}

#[test]
fn urls_outside_the_configuration_are_refused_before_any_request() {
    let public = FetchConfig::public_only();
    let operator = FetchConfig::operator_urls();
    for (config, url, why) in [
        (&public, "http://app.example/c.json", "must be https"),
        (&public, "http://127.0.0.1/c.json", "must be https"),
        (&public, "https://user:pw@app.example/c.json", "user info"),
        (&operator, "http://auth.example/jwks", "must be https"),
        (&operator, "ftp://auth.example/jwks", "must be https"),
    ] {
        match config.check_url(url) {
            Err(FetchError::Url(e)) => assert!(e.contains(why), "{url}: {e}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    for url in ["http://127.0.0.1:8080/jwks", "http://localhost/x", "http://[::1]:9/x", "https://auth.example/x"] {
        assert!(operator.check_url(url).is_ok(), "{url}");
    }
}

/// A plain-http server on loopback whose answer depends on the request path: `answer` gets
/// the server's origin and the path, and returns the status and the JSON body.
async fn discovery_server(answer: fn(&str, &str) -> (u16, String)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let base = origin.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let base = base.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = answer(&base, &path);
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    origin
}

#[tokio::test]
async fn discovery_reads_rfc_8414_metadata_and_falls_back_to_openid_configuration() {
    use oauth_fetch::discovery::{DiscoveryError, discover};
    let fetcher = Fetcher::new(FetchConfig::operator_urls());

    // RFC 8414 with the issuer's path inserted after the well-known prefix.
    let origin = discovery_server(|origin, path| match path {
        "/.well-known/oauth-authorization-server/tenant" => (200, format!(r#"{{"issuer":"{origin}/tenant"}}"#)),
        _ => (404, "{}".into()),
    })
    .await;
    let found = discover(&fetcher, &format!("{origin}/tenant")).await.unwrap();
    assert_eq!(found.url, format!("{origin}/.well-known/oauth-authorization-server/tenant"));

    // Only OpenID Connect Discovery served: used when the RFC 8414 document is missing.
    let origin = discovery_server(|origin, path| match path {
        "/tenant/.well-known/openid-configuration" => (200, format!(r#"{{"issuer":"{origin}/tenant"}}"#)),
        _ => (404, "{}".into()),
    })
    .await;
    let found = discover(&fetcher, &format!("{origin}/tenant")).await.unwrap();
    assert_eq!(found.url, format!("{origin}/tenant/.well-known/openid-configuration"));
    assert_eq!(found.document["issuer"], format!("{origin}/tenant"));

    // A document for another issuer (a trailing slash is another issuer) is refused.
    let origin = discovery_server(|origin, _| (200, format!(r#"{{"issuer":"{origin}/"}}"#))).await;
    let err = discover(&fetcher, &origin).await.unwrap_err();
    assert!(matches!(&err, DiscoveryError::IssuerMismatch { stated, .. } if *stated == format!("{origin}/")), "{err}");

    // Neither document: the RFC 8414 one's failure is reported.
    let origin = discovery_server(|_, _| (404, "{}".into())).await;
    let err = discover(&fetcher, &origin).await.unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Status { status: 404, url } if url.contains("oauth-authorization-server")),
        "{err}"
    );

    // Not JSON metadata.
    let origin = discovery_server(|_, _| (200, "[1]".into())).await;
    assert!(matches!(discover(&fetcher, &origin).await, Err(DiscoveryError::NotJson { .. })));
}
