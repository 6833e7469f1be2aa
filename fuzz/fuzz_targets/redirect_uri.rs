//! Redirect URIs: `RedirectUri::parse`, `matches` (exact, except loopback: any port and any
//! of the loopback host spellings), `display_host`, and `RedirectPolicy::check`. The input is
//! a registered URI and a presented one, separated by a newline.
//!
//! Invariants: a parsed URI is kept exactly as sent, re-parses to the same value (from its
//! string and from JSON), and has no fragment, user info, whitespace or forbidden scheme; its
//! kind survives the URL normalisation a redirect goes through; matching is reflexive and
//! symmetric (but for the loopback callback suffix), exact for everything but loopback, and
//! for loopback ignores the port and host spelling and allows one callback segment under a
//! named registered path; the policy accepts exactly https, loopback (not for `web`) and
//! the allowed private-use schemes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_text, split_lines};
use oauth_core::ApplicationType;
use oauth_core::RedirectPolicy;
use oauth_core::{MAX_URI_LEN, RedirectKind, RedirectUri};

fuzz_target!(|data: &[u8]| {
    let [a, b] = split_lines(data, 2)[..] else { return };
    let a = std::str::from_utf8(a).ok().and_then(checked);
    let b = std::str::from_utf8(b).ok().and_then(checked);
    let (Some(a), Some(b)) = (a, b) else { return };

    if a.matches(&b) && a != b {
        assert_eq!((a.kind(), b.kind()), (RedirectKind::Loopback, RedirectKind::Loopback), "{a} matched {b}");
    }
    if a.kind() == RedirectKind::Loopback && b.kind() == RedirectKind::Loopback {
        let (ua, ub) = (url::Url::parse(a.as_str()).expect("parsed"), url::Url::parse(b.as_str()).expect("parsed"));
        let same = ua.path() == ub.path() && ua.query() == ub.query();
        let a_then_b = ua.query() == ub.query() && callback_suffix(ua.path(), ub.path());
        let b_then_a = ua.query() == ub.query() && callback_suffix(ub.path(), ua.path());
        assert_eq!(a.matches(&b), same || a_then_b || a.as_str() == b.as_str(), "loopback {a} / {b}");
        // Symmetric but for the callback suffix, which only the registered side may lack.
        if !a_then_b && !b_then_a {
            assert_eq!(a.matches(&b), b.matches(&a), "matching is not symmetric: {a} / {b}");
        }
    } else {
        assert_eq!(a.matches(&b), b.matches(&a), "matching is not symmetric: {a} / {b}");
    }
});

/// Whether `sent` is `registered` (not the root) plus one segment of 1 to 64 URL-safe
/// characters: the loopback callback suffix, written out again here from its definition.
fn callback_suffix(registered: &str, sent: &str) -> bool {
    let base = registered.trim_end_matches('/');
    !base.is_empty()
        && sent.strip_prefix(base).and_then(|r| r.strip_prefix('/')).is_some_and(|seg| {
            (1..=64).contains(&seg.len()) && seg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// Parses `s` and checks what holds of one URI; `None` when it is refused.
fn checked(s: &str) -> Option<RedirectUri> {
    let uri = match RedirectUri::parse(s) {
        Ok(u) => u,
        Err(e) => {
            check_text(&e.to_string(), "refusal", &s);
            assert!(e.to_string().len() <= 2 * MAX_URI_LEN + 256, "{} byte refusal", e.to_string().len());
            return None;
        }
    };
    assert_eq!(uri.as_str(), s, "not kept as sent");
    assert_eq!(uri.to_string(), s);
    assert!(s.len() <= MAX_URI_LEN && !s.contains('#'));
    assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()), "{s:?}");
    assert_eq!(RedirectUri::parse(uri.as_str()).as_ref(), Ok(&uri));
    let json = serde_json::to_string(&uri).expect("serialises");
    assert_eq!(serde_json::from_str::<RedirectUri>(&json).ok().as_ref(), Some(&uri), "JSON round trip of {s}");
    assert!(uri.matches(&uri));

    let url = url::Url::parse(s).expect("a RedirectUri is a URL");
    assert!(url.username().is_empty() && url.password().is_none() && url.fragment().is_none());
    let scheme = url.scheme();
    assert!(!["javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws", "wss"].contains(&scheme));
    let loopback_host = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let expected = match scheme {
        "https" => RedirectKind::Https,
        "http" if loopback_host => RedirectKind::Loopback,
        "http" => RedirectKind::PlainHttp,
        _ => RedirectKind::PrivateUse,
    };
    assert_eq!(uri.kind(), expected, "{s}");

    // A redirect goes to the URL's normalised form (`authorize::location`): the same kind of
    // target, on the same host, port and path.
    // (Percent-encoding may take it past the length bound, which only applies to what is sent.)
    let normalised = url.to_string();
    let reparsed = url::Url::parse(&normalised).expect("normalised URL parses");
    assert_eq!((reparsed.host(), reparsed.port(), reparsed.path()), (url.host(), url.port(), url.path()));
    if normalised.len() <= MAX_URI_LEN {
        let again = RedirectUri::parse(&normalised).unwrap_or_else(|e| panic!("{s} normalises to {normalised}: {e}"));
        assert_eq!(again.kind(), uri.kind(), "{s} normalises to {normalised}");
        if uri.kind() == RedirectKind::Loopback {
            assert!(uri.matches(&again) && again.matches(&uri), "{s} and its normal form {normalised}");
        }
    }

    let host = uri.display_host();
    check_text(&host, "display host", &s);
    assert!(!host.chars().any(char::is_whitespace), "display host {host:?}");

    let default = RedirectPolicy::default();
    let cursor = RedirectPolicy::default().with_private_use_schemes(["cursor"]);
    for app in [None, Some(ApplicationType::Native), Some(ApplicationType::Web)] {
        let web = app == Some(ApplicationType::Web);
        let allowed = match uri.kind() {
            RedirectKind::Https => true,
            RedirectKind::Loopback => !web,
            RedirectKind::PlainHttp => false,
            RedirectKind::PrivateUse => false,
        };
        let result = default.check(&uri, app);
        assert_eq!(result.is_ok(), allowed, "default policy, {app:?}, {s}: {result:?}");
        if let Err(why) = result {
            check_text(&why.to_string(), "policy refusal", &s);
        }
        let cursor_ok = allowed || (uri.kind() == RedirectKind::PrivateUse && !web && scheme == "cursor");
        assert_eq!(cursor.check(&uri, app).is_ok(), cursor_ok, "cursor policy, {app:?}, {s}");
    }
    Some(uri)
}
