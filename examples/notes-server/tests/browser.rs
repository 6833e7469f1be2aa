//! The sign-in and consent pages in Debian's headless Chromium (driven by playwright-core from
//! `interop/browser`), used as a person would: a wrong password, consent, the back button, a
//! double submit, an expired session, framing, a cross-site post, no JavaScript, phone width,
//! Connected apps (its own sign-in, the client listed, revoked), and signing out.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn the_pages_work_in_a_real_browser() {
    let root = common::repo_root();
    assert!(
        root.join("interop/browser/node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium or playwright-core is missing: run `bash interop/install.sh` or `bash .ci/run` first"
    );
    let server = common::Server::start("browser");
    let shots = server.dir().join("screenshots");
    let mut cmd = Command::new("node");
    cmd.arg(root.join("interop/browser/pages.mjs")).env("SCREENSHOT_DIR", &shots).current_dir(&root);
    let out = common::run_client(&server, cmd, Duration::from_secs(180));

    for check in [
        "wrong_password_shown",
        "consent_shows_client_host_scopes",
        "back_button_no_second_code",
        "double_submit_one_code",
        "expired_session_page",
        "framing_refused",
        "cross_site_post_refused",
        "works_without_javascript",
        "phone_width_ok",
        "connected_apps_lists_client",
        "connected_apps_revoke_works",
        "sign_out_ends_session",
    ] {
        assert_eq!(out[check], true, "{check}: {out}");
    }
    assert_eq!(out["session_cookie"]["httpOnly"], true, "{out}");
    assert_eq!(out["session_cookie"]["sameSite"], "Lax", "{out}");
    for shot in [
        "sign-in.png",
        "consent.png",
        "consent-phone.png",
        "sign-in-phone.png",
        "connected-apps.png",
        "connected-apps-phone.png",
        "connected-apps-revoked.png",
    ] {
        let len = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} missing or empty");
    }
    println!("screenshots in {}", shots.display());
}
