//! What the https-document tests share: a certificate authority made for the run, and an https
//! server on a loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A test CA and a certificate it issued for `localhost`, made by openssl for this run:
/// (CA certificate, server certificate, server PKCS#8 key), all DER.
pub fn certificates(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (the Debian package openssl) runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test CA"]]
        .concat());
    run(&[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    run(&["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"]);
    run(&["x509", "-in", "server.pem", "-outform", "DER", "-out", "server.der"]);
    run(&["pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der"]);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    (read("ca.der"), read("server.der"), read("key.der"))
}

/// Separates the bodies of a route that answers differently over time: the n-th request gets
/// the n-th body, and the last one after that.
pub const THEN: &str = "\u{0}";

/// An https server on a loopback port answering the routes `routes(origin)` makes (path →
/// statuses, extra headers, body: the n-th request gets the n-th status, the last one after
/// that); returns its origin and a count of requests per path.
pub async fn document_server(
    cert: Vec<u8>,
    key: Vec<u8>,
    routes: impl FnOnce(&str) -> HashMap<String, (Vec<u16>, String, String)>,
) -> (String, Arc<HashMap<String, AtomicUsize>>) {
    use tokio_rustls::rustls;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let routes = Arc::new(routes(&origin));
    let counts: Arc<HashMap<String, AtomicUsize>> =
        Arc::new(routes.keys().map(|k| (k.clone(), AtomicUsize::new(0))).collect());
    let seen = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, routes, seen) = (acceptor.clone(), routes.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, headers, body) = match routes.get(&path) {
                    Some((statuses, headers, body)) => {
                        let n = seen[&path].fetch_add(1, Ordering::SeqCst);
                        let bodies: Vec<&str> = body.split(THEN).collect();
                        let body = bodies[n.min(bodies.len() - 1)].to_owned();
                        (statuses[n.min(statuses.len() - 1)], headers.clone(), body)
                    }
                    None => (404, String::new(), String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (origin, counts)
}
