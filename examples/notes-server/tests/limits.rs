//! Limits against the real notes-server binary over real sockets, as an attacker meets them:
//! password guessing for one account from many source addresses (the loopback range gives a
//! test as many as it wants).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::flow::{attempt, from, sign_in_form};
use common::{PASSWORD, Server, USERNAME, attribute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_from_many_addresses_is_throttled_per_account() {
    let server = Server::start("limits-account");
    let form = sign_in_form(&server.base_url).await;
    let mut answered = 0;
    let mut throttled = Vec::new();
    // Forty guesses for one account, each from its own address: no per-address limit sees more
    // than one.
    for i in 0..40u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i));
        let (status, retry, page) = attempt(ip, &server.base_url, &form, "wrong-guess").await;
        match status.as_u16() {
            200 => {
                assert!(page.contains("Wrong username or password"), "{page}");
                answered += 1;
            }
            429 => {
                assert!(page.contains("Too many failed sign-ins for this account"), "{page}");
                assert!(page.contains("Try again in"), "the page says when: {page}");
                let retry = retry.expect("Retry-After");
                assert!((1..=15 * 60).contains(&retry), "the block is capped: {retry}");
                throttled.push(retry);
            }
            other => panic!("attempt {i}: unexpected {other}: {page}"),
        }
    }
    assert_eq!(answered, 5, "only the free attempts are answered; the rest are throttled: {throttled:?}");
    assert_eq!(throttled.len(), 35);
    // While blocked, even the right password from a fresh address is not checked.
    let (status, _, page) = attempt(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)), &server.base_url, &form, PASSWORD).await;
    assert_eq!(status, 429, "{page}");
    assert!(server.log().contains("sign_in_throttled"), "a flow event names the throttle:\n{}", server.log());
}

/// The Connected apps page has a sign-in form of its own: guesses there count against the same
/// account, and a block earned through either form holds at both.
#[tokio::test]
async fn the_connected_apps_sign_in_shares_the_per_account_throttle() {
    let server = Server::start("limits-account-page");
    // The account page's own sign-in form, from its own address.
    let http = from(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)));
    let resp = http.get(format!("{}/account/apps", server.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let page = resp.text().await.unwrap();
    let action = format!("{}{}", server.base_url, attribute(&page, "action=\""));
    let csrf = attribute(&page, "name=\"csrf\" value=\"");
    let account_attempt = |ip: IpAddr, password: &'static str| {
        let (action, csrf, cookie) = (action.clone(), csrf.clone(), cookie.clone());
        async move {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("csrf", csrf.as_str()), ("username", USERNAME), ("password", password)])
                .finish();
            let resp = from(ip)
                .post(action)
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    // Guesses through the account page, each from its own address, until the account blocks.
    let mut statuses = Vec::new();
    for i in 0..8u8 {
        statuses.push(account_attempt(IpAddr::V4(Ipv4Addr::new(127, 0, 4, 10 + i)), "wrong-guess").await.0.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // The block holds at the authorization flow's sign-in too, even with the right password.
    let form = sign_in_form(&server.base_url).await;
    let (status, _, page) = attempt(IpAddr::V4(Ipv4Addr::new(127, 0, 5, 1)), &server.base_url, &form, PASSWORD).await;
    assert_eq!(status, 429, "{page}");
    let (status, page) = account_attempt(IpAddr::V4(Ipv4Addr::new(127, 0, 5, 2)), PASSWORD).await;
    assert_eq!(status, 429, "{page}");
}
