//! The pages that show what strangers chose: a client's registered name and redirect host, a
//! metadata document's host, scope descriptions, the username a sign-in form sent back, and
//! error messages that quote a request. The input's lines are those values.
//!
//! Invariant: no value changes a page's markup. Each page is rendered with the input and with
//! plain placeholders of the same shape; both must have the same number of `<`, `>`, `"` and
//! `'`, so every value was escaped wherever it appears.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::split_lines;
use oauth_axum::fuzzing::{consent_page, error_page, sign_in_page};

fuzz_target!(|data: &[u8]| {
    let lines: Vec<String> = split_lines(data, 6).iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let [name, host, username, message, scope, description] = &lines[..] else { return };
    let plain = "x";

    let page = sign_in_page(name, host, username, username, Some(message)).expect("sign-in page renders");
    let base = sign_in_page(plain, plain, plain, plain, Some(plain)).expect("sign-in page renders");
    same_markup(&page, &base, "sign-in");

    let scopes = vec![(scope.clone(), Some(description.clone())), (scope.clone(), None)];
    let base_scopes = vec![(plain.to_owned(), Some(plain.to_owned())), (plain.to_owned(), None)];
    let page = consent_page(name, host, host, &scopes, username).expect("consent page renders");
    let base = consent_page(plain, plain, plain, &base_scopes, plain).expect("consent page renders");
    same_markup(&page, &base, "consent");

    let page = error_page(name, message, scope).expect("error page renders");
    let base = error_page(plain, plain, plain).expect("error page renders");
    same_markup(&page, &base, "error");
});

fn same_markup(page: &str, base: &str, what: &str) {
    for c in ['<', '>', '"', '\''] {
        let (got, want) = (page.matches(c).count(), base.matches(c).count());
        assert_eq!(got, want, "the {what} page has {got} {c:?} where its markup has {want}:\n{page}");
    }
}
