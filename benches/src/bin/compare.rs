//! The token-validation comparison with the peers, in one run on one machine: our verifier
//! cold and cached, `jsonwebtoken` alone, the TypeScript SDK's `requireBearerAuth` with a
//! `jose` verifier, and PyJWT, all on the same ES256 token, each on one core. Prints a table
//! with each as a ratio to ours. `benches/compare/run.sh` installs the peers and runs this.
//!
//! Usage: `compare [--seconds N]`. The peers are looked for in `benches/compare` (its
//! `node_modules` and `.venv`); a missing one is reported and skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcp_guard::{LocalVerifier, TokenVerifier as _};
use oauth_benches::{TokenFixture, openssl_ecdsa_p256_verify_rate, per_second, rate, ready};
use oauth_core::SigningAlgorithm;

fn main() {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map_or(3, |s| s.parse().expect("--seconds takes a whole number"));
    let time = Duration::from_secs(seconds);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = rt.block_on(TokenFixture::memory(SigningAlgorithm::Es256));

    let dir = std::env::temp_dir().join(format!("oauth-benches-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = dir.join("fixture.json");
    write_fixture(&f, &fixture);

    eprintln!("measuring, {seconds} s each, one core at a time…");
    let cold = LocalVerifier::new(f.server.clone()).without_cache();
    let cached = LocalVerifier::new(f.server.clone());
    let ours_cold = rate(time, || drop(ready(cold.verify(&f.token)).unwrap()));
    let ours_cached = rate(time, || drop(ready(cached.verify(&f.token)).unwrap()));
    let floor = rate(time, || drop(f.floor.check(&f.token).unwrap()));
    let mut rows = vec![
        ("mcp-guard, cold".to_owned(), Some(ours_cold)),
        ("mcp-guard, cached".to_owned(), Some(ours_cached)),
        ("jsonwebtoken::decode (aws_lc_rs)".to_owned(), Some(floor)),
    ];
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("compare");
    rows.extend(node_peer(&peers, &fixture, seconds));
    rows.push(python_peer(&peers, &fixture, seconds));
    rows.push(("openssl speed ecdsap256 verify".to_owned(), openssl_ecdsa_p256_verify_rate(seconds as u32)));
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!("ES256 token validation, one core each, one run ({seconds} s a measurement)");
    println!(
        "{:<44} {:>14} {:>11} {:>14} {:>16}",
        "verifier", "validations", "µs each", "ours cold ÷ it", "ours cached ÷ it"
    );
    for (name, r) in &rows {
        match r {
            Some(r) => println!(
                "{name:<44} {:>14} {:>11.3} {:>14.2} {:>16.0}",
                per_second(*r),
                1e6 / r,
                ours_cold / r,
                ours_cached / r
            ),
            None => println!("{name:<44} {:>14}", "not run"),
        }
    }

    println!();
    println!("targets:");
    let rate_of = |prefix: &str| rows.iter().find(|(n, _)| n.starts_with(prefix)).and_then(|(_, r)| *r);
    check("guard cold time ÷ jsonwebtoken time", floor / ours_cold, "<= 1.15", floor / ours_cold <= 1.15);
    check("cached validations/s, millions", ours_cached / 1e6, ">= 2", ours_cached >= 2e6);
    check("cached ÷ cold", ours_cached / ours_cold, ">= 200", ours_cached / ours_cold >= 200.0);
    for peer in ["requireBearerAuth", "PyJWT"] {
        if let Some(p) = rate_of(peer) {
            check(&format!("cold ÷ {peer}"), ours_cold / p, ">= 2.5", ours_cold / p >= 2.5);
            check(&format!("cached ÷ {peer}"), ours_cached / p, ">= 500", ours_cached / p >= 500.0);
        }
    }
}

fn check(name: &str, value: f64, target: &str, met: bool) {
    println!("  {name:<44} {value:>10.2}   target {target:<8} {}", if met { "met" } else { "MISSED" });
}

/// The token, its public key as a JWK, and what a verifier expects, for the peers.
fn write_fixture(f: &TokenFixture, path: &Path) {
    let kid = jsonwebtoken::decode_header(&f.token).unwrap().kid.unwrap();
    let jwk = oauth_benches::published_jwks(&f.server).find(&kid).cloned().unwrap();
    let config = f.server.config();
    let fixture = serde_json::json!({
        "token": f.token,
        "jwk": jwk,
        "issuer": config.issuer.as_str(),
        "audience": config.resource.as_str(),
        "prm": oauth_core::well_known_url("oauth-protected-resource", config.resource.as_str()),
    });
    std::fs::write(path, serde_json::to_vec_pretty(&fixture).unwrap()).unwrap();
}

fn node_peer(peers: &Path, fixture: &Path, seconds: u64) -> Vec<(String, Option<f64>)> {
    let missing = || vec![("requireBearerAuth + jose (TypeScript SDK)".to_owned(), None)];
    if !peers.join("node_modules").is_dir() {
        eprintln!("the TypeScript peer is not installed: run benches/compare/run.sh");
        return missing();
    }
    run_peer(Command::new("node").arg(peers.join("peer.mjs")).arg(fixture).arg(seconds.to_string()))
        .unwrap_or_else(missing)
}

fn python_peer(peers: &Path, fixture: &Path, seconds: u64) -> (String, Option<f64>) {
    let python: PathBuf = peers.join(".venv/bin/python");
    let found = python
        .exists()
        .then(|| run_peer(Command::new(&python).arg(peers.join("peer.py")).arg(fixture).arg(seconds.to_string())));
    match found.flatten().and_then(|mut v| v.pop()) {
        Some(row) => row,
        None => {
            eprintln!("the Python peer is not installed or failed: run benches/compare/run.sh");
            ("PyJWT jwt.decode".to_owned(), None)
        }
    }
}

/// Runs a peer and reads its `{"name": …, "rate": …}` lines.
fn run_peer(cmd: &mut Command) -> Option<Vec<(String, Option<f64>)>> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["name"].as_str().unwrap_or("?").to_owned(), v["rate"].as_f64()))
        .collect();
    Some(rows)
}
