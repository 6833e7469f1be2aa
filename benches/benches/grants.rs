//! The token endpoint's work without HTTP: the authorization-code exchange (PKCE, single-use
//! code, grant, refresh token, signed access token, flow events) and the refresh-token
//! rotation, on the in-memory store and on SQLite.
#![allow(missing_docs, clippy::unwrap_used)]

use std::cell::RefCell;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use oauth_benches::TokenFixture;
use oauth_core::SigningAlgorithm;
use oauth_core::Stores;
use oauth_core::testing::{authorize_code, code_request, refresh_request};
use oauth_store_sql::SqlStore;

/// Opens a backend's stores.
type OpenStores<'a> = Box<dyn Fn() -> Stores + 'a>;

fn grants(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("oauth-benches-grants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("grants.db").display());

    let backends: [(&str, OpenStores<'_>); 2] = [
        ("memory", Box::new(|| oauth_store_memory::MemoryStore::new().into_stores())),
        ("sqlite", Box::new(|| rt.block_on(SqlStore::connect(&sqlite)).unwrap().into_stores())),
    ];
    for (name, stores) in backends {
        let f = rt.block_on(TokenFixture::new(SigningAlgorithm::Es256, stores()));
        let (server, client) = (&f.server, &f.client);
        let mut g = c.benchmark_group(format!("grant/{name}"));
        g.bench_function("authorization_code", |b| {
            b.iter_batched(
                || rt.block_on(authorize_code(server, client)),
                |(code, verifier)| rt.block_on(server.token(code_request(client, &code, &verifier), None)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let current = RefCell::new(f.refresh_token.clone());
        g.bench_function("refresh_token", |b| {
            b.iter(|| {
                let req = refresh_request(client, &current.borrow());
                let resp = rt.block_on(server.token(req, None)).unwrap();
                *current.borrow_mut() = resp.refresh_token.unwrap().secret().to_owned();
            })
        });
        g.finish();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, grants);
criterion_main!(benches);
