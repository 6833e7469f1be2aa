//! What the benches, the peer comparison and the load test share: a server signing with a
//! chosen algorithm, an access token it issued through the real code flow, the plain
//! `jsonwebtoken` check of that token (the floor every guard pays), and small measuring
//! helpers.
//!
//! ```no_run
//! # async fn demo() {
//! use oauth_benches::TokenFixture;
//! use oauth_core::SigningAlgorithm;
//!
//! let f = TokenFixture::memory(SigningAlgorithm::Es256).await;
//! assert!(f.floor.check(&f.token).is_ok());
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, Validation};
use oauth_core::ClientId;
use oauth_core::SigningAlgorithm;
use oauth_core::testing::{authorize_code, code_request, config, register_public_client};
use oauth_core::{AccessTokenClaims, mint};
use oauth_core::{AuthorizationServer, Stores};

/// The algorithms the benches cover, with the label they print: ES256 (the default), EdDSA,
/// RS256 and HS256, the dangerous one.
pub const ALGORITHMS: [(SigningAlgorithm, &str); 4] = [
    (SigningAlgorithm::Es256, "ES256"),
    (SigningAlgorithm::EdDsa, "EdDSA"),
    (SigningAlgorithm::Rs256, "RS256"),
    (SigningAlgorithm::DangerousHs256, "HS256 (dangerous)"),
];

/// A server and an access token it issued, with the plain `jsonwebtoken` check of it.
pub struct TokenFixture {
    /// The authorization server that signed the token.
    pub server: Arc<AuthorizationServer>,
    /// The client the token was issued to.
    pub client: ClientId,
    /// An access token from a real code exchange: valid for an hour.
    pub token: String,
    /// A token of the same shape that expired two hours ago.
    pub expired: String,
    /// The refresh token issued with [`Self::token`].
    pub refresh_token: String,
    /// The floor: `jsonwebtoken::decode` of the token with the same key.
    pub floor: Floor,
}

impl TokenFixture {
    /// A server on in-memory stores signing with `alg`.
    pub async fn memory(alg: SigningAlgorithm) -> Self {
        Self::new(alg, oauth_store_memory::MemoryStore::new().into_stores()).await
    }

    /// A server on `stores` signing with `alg`, a registered public client, and a token
    /// issued to it by the authorization-code grant.
    pub async fn new(alg: SigningAlgorithm, stores: Stores) -> Self {
        let server = Arc::new(
            AuthorizationServer::new(config().with_signing_algorithm(alg), stores).await.expect("server starts"),
        );
        let client = register_public_client(&server).await;
        let (code, verifier) = authorize_code(&server, &client).await;
        let issued = server.token(code_request(&client, &code, &verifier), None).await.expect("code exchange");
        let token = issued.access_token.clone();
        let refresh_token = issued.refresh_token.as_ref().expect("a refresh token").secret().to_owned();

        // The same claims, issued and expired in the past.
        let mut claims = server.verify_access_token(&token).expect("the issued token verifies");
        let ago = |secs: i64| server.now().as_secs() - secs;
        (claims.iat, claims.exp) = (ago(3 * 3600), ago(2 * 3600));
        let expired = mint(&claims, &server.keys()).expect("minting");

        let floor = Floor::new(&server, alg, &token).await;
        Self { server, client, token, expired, refresh_token, floor }
    }
}

/// The server's JWKS as `jsonwebtoken` reads it, for the peers that verify with it alone.
pub fn published_jwks(server: &AuthorizationServer) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(serde_json::to_value(server.jwks()).expect("a JWKS")).expect("a JWKS jsonwebtoken reads")
}

/// What an application that verifies tokens with `jsonwebtoken` alone writes: one `decode`
/// with the issuer, audience and expiry checked, into the same claims type.
pub struct Floor {
    key: DecodingKey,
    validation: Validation,
}

impl Floor {
    async fn new(server: &AuthorizationServer, alg: SigningAlgorithm, token: &str) -> Self {
        let kid = jsonwebtoken::decode_header(token).expect("a JWT").kid.expect("a kid");
        let key = if alg == SigningAlgorithm::DangerousHs256 {
            // Never published: the secret is only in the key store.
            let stored = server.operator().stores().keys.list_keys().await.expect("keys");
            let k = stored.iter().find(|k| k.kid == kid).expect("the signing key");
            DecodingKey::from_secret(&k.private_der)
        } else {
            DecodingKey::from_jwk(published_jwks(server).find(&kid).expect("a published key")).expect("a usable JWK")
        };
        let alg: jsonwebtoken::Algorithm = alg.as_str().parse().expect("a JWS algorithm");
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[server.config().issuer.as_str()]);
        validation.set_audience(&[server.config().resource.as_str()]);
        validation.leeway = 60;
        Self { key, validation }
    }

    /// Decodes and checks `token`.
    pub fn check(&self, token: &str) -> jsonwebtoken::errors::Result<AccessTokenClaims> {
        jsonwebtoken::decode::<AccessTokenClaims>(token, &self.key, &self.validation).map(|d| d.claims)
    }
}

/// Runs a future that never waits (the verifiers, with their in-process keys and cache) to
/// completion on this thread, without a runtime's overhead.
pub fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        // Only futures that complete on their first poll are given here.
        Poll::Pending => panic!("the future waited; run it on a runtime instead"),
    }
}

/// Calls of `f` per second on this thread, measured for about `time` after a tenth of that
/// as warm-up.
pub fn rate(time: Duration, mut f: impl FnMut()) -> f64 {
    let run = |time: Duration, f: &mut dyn FnMut()| {
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..16 {
                f();
            }
            n += 16;
            let spent = start.elapsed();
            if spent >= time {
                return n as f64 / spent.as_secs_f64();
            }
        }
    };
    run(time / 10, &mut f);
    run(time, &mut f)
}

/// ECDSA P-256 verifications per second on one core as `openssl speed` measures them: the
/// physical limit of a cold ES256 check on this machine. `None` without an `openssl` binary.
pub fn openssl_ecdsa_p256_verify_rate(seconds: u32) -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0   10000.0": verify/s is last.
    let line = text.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Resident memory of this process, in bytes (Linux), for what the cache really costs.
pub fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A short duration for a quick run (`--test`, CI) and the given one otherwise.
pub fn bench_time(full: Duration) -> Duration {
    if std::env::args().any(|a| a == "--test" || a == "--quick") { Duration::from_millis(50) } else { full }
}

/// Formats a rate as `12 345/s`.
pub fn per_second(rate: f64) -> String {
    let n = rate.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{out}/s")
}

/// The example server (`notes-server`, built beside the bench binary or named by
/// `$NOTES_SERVER`) as a child process on 127.0.0.1 over `database_url`, stopped when dropped.
pub struct NotesServer {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl NotesServer {
    /// Starts the server; its first user gets `admin_password`.
    pub fn start(database_url: &str, admin_password: &str) -> Self {
        use std::io::{BufRead as _, BufReader};
        use std::process::{Command, Stdio};
        let bin = std::env::var_os("NOTES_SERVER").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::env::current_exe()
                .expect("the bench binary's path")
                .with_file_name(format!("notes-server{}", std::env::consts::EXE_SUFFIX))
        });
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            // Secrets through the environment: the server refuses them on its command line.
            .env("DATABASE_URL", database_url)
            .env("NOTES_ADMIN_PASSWORD", admin_password)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): cargo build --release -p notes-server", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("notes-server listening on ").and_then(|a| a.trim().parse().ok()))
            .expect("the server says where it listens");
        // Keep reading, so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }

    /// The server's process id (to read its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NotesServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
