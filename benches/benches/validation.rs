//! One access token validated by the `mcp-guard` verifier, cold (a signature check every time)
//! and cached, beside `jsonwebtoken::decode` of the same token with the same key: the floor.
//! For ES256 (the default), EdDSA, RS256 and HS256 (dangerous: whoever verifies can mint).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_guard::{LocalVerifier, TokenVerifier as _};
use oauth_benches::{ALGORITHMS, TokenFixture, ready};

fn validation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (alg, label) in ALGORITHMS {
        let f = rt.block_on(TokenFixture::memory(alg));
        let cold = LocalVerifier::new(f.server.clone()).without_cache();
        let cached = LocalVerifier::new(f.server.clone());
        ready(cached.verify(&f.token)).unwrap();

        let mut g = c.benchmark_group(format!("validate/{label}"));
        g.bench_function("jsonwebtoken::decode (floor)", |b| b.iter(|| f.floor.check(black_box(&f.token)).unwrap()));
        g.bench_function("guard cold", |b| b.iter(|| ready(cold.verify(black_box(&f.token))).unwrap()));
        g.bench_function("guard cached", |b| b.iter(|| ready(cached.verify(black_box(&f.token))).unwrap()));
        g.finish();
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);
