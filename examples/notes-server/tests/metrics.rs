//! Prometheus metrics of the real binary, scraped over a socket as Prometheus would: behind
//! the admin token, counting requests by route, flow events by reason, token checks cached and
//! cold, and the database pool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use common::flow::{token, user_tokens, whoami};

const ADMIN: &str = "a metrics scrape token of more than thirty-two characters";

/// The value of the sample `name{labels}` in a scrape, if present.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_outcomes_token_checks_and_the_pool() {
    let server = Server::start_with("metrics", &[("NOTES_ADMIN_TOKEN", ADMIN)]);
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", server.base_url);
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401, "not without the admin token");
    let wrong = http.get(&url).bearer_auth("not the token").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let t = user_tokens(&server, &http, "metrics client").await;
    for _ in 0..3 {
        assert_eq!(whoami(&http, &server.mcp_url, &t.access_token).await, 200);
    }
    let (status, _) =
        token(&http, &server.base_url, &[("grant_type", "authorization_code"), ("code", "made-up")]).await;
    assert_eq!(status.as_u16(), 401, "no client authentication");

    let resp = http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let scrape = resp.text().await.unwrap();
    assert!(scrape.trim_end().ends_with("# EOF"), "a whole OpenMetrics exposition:\n{scrape}");
    assert_eq!(sample(&scrape, r#"mcp_oauth_requests_total{route="/register",status="201"}"#), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, r#"mcp_oauth_requests_total{route="/token",status="200"}"#), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, r#"mcp_oauth_requests_total{route="/token",status="401"}"#), Some(1.0), "{scrape}");
    assert!(
        sample(&scrape, r#"mcp_oauth_flow_events_total{step="code_exchange",reason="ok"}"#) == Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, r#"mcp_oauth_flow_events_total{step="code_exchange",reason="client_auth_failed"}"#),
        Some(1.0),
        "the refused token request is counted by its reason:\n{scrape}"
    );
    let cached = sample(&scrape, r#"mcp_oauth_token_checks_total{result="cached"}"#).unwrap();
    let cold = sample(&scrape, r#"mcp_oauth_token_checks_total{result="cold"}"#).unwrap();
    assert!(cold >= 1.0 && cached >= 2.0, "one full check, then the cache: cold {cold}, cached {cached}");
    assert!(sample(&scrape, "mcp_oauth_db_connections_max").is_some_and(|n| n >= 1.0), "{scrape}");
    assert!(sample(&scrape, r#"mcp_oauth_db_connections{state="idle"}"#).is_some(), "{scrape}");
    let age = sample(&scrape, "mcp_oauth_revocation_feed_age_seconds").expect("the feed is followed");
    assert!((0.0..=5.0).contains(&age), "the feed was read within the sync interval: {age}");
    assert!(!scrape.contains(&t.access_token) && !scrape.contains(&t.client_secret), "nothing secret");
}
