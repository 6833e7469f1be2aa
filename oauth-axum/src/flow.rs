//! The pages of an authorization: `/authorize`, sign-in, consent, sign-out, and the
//! Connected apps page where a person sees and revokes what they approved.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Json, Response};
use oauth_core::OAuthError;
use oauth_core::{AuthorizationPrompt, AuthorizationRequest, AuthorizeError};

use crate::ratelimit::Class;
use crate::session::Session;
use crate::shared::{ACCOUNT_SIGN_IN_CSRF, apps_csrf_binding};
use crate::{
    AppState, FormFields, Peer, Shared, authorize_error, csrf_failure, expired, internal, no_store, pages, redirect,
    show_error, with_cookies,
};

/// `GET /authorize`: validate, then sign-in page, consent page, or straight back to the client.
pub(crate) async fn authorize(State(s): AppState, peer: Peer, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(limited) = s.limited(Class::Authorize, &peer, &headers).await {
        return limited;
    }
    let query = uri.query().unwrap_or_default();
    let req = match AuthorizationRequest::from_pairs(url::form_urlencoded::parse(query.as_bytes())) {
        Ok(r) => r,
        Err(e) => return show_authorize_error(&headers, &e),
    };
    match s.server.authorize(req).await {
        Ok(prompt) => match s.session_for(&headers, Some(&prompt.client.id)).await {
            Some(session) => s.after_sign_in(&headers, prompt, &session, Vec::new()).await,
            None => s.sign_in_page(&headers, &prompt, "", None, StatusCode::OK),
        },
        Err(AuthorizeError::ShowToUser(e)) => show_authorize_error(&headers, &e),
        Err(e) => authorize_error(e),
    }
}

/// An `/authorize` error that must not be redirected: a page for a browser, JSON for a client
/// that asks for JSON and not HTML. mcp-remote probes a cached registration that way and
/// registers again only on a JSON `invalid_client`; a page would leave it stuck.
fn show_authorize_error(headers: &HeaderMap, e: &OAuthError) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if accept.contains("application/json") && !accept.contains("text/html") {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        return no_store((status, Json(e)));
    }
    show_error(e)
}

/// The form of a page of a pending authorization request: its fields besides `pending` and
/// `csrf`, and the request, once the CSRF token bound to it checks out; else the page to
/// answer with (the form refused, or the request expired).
async fn pending_form(
    s: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    fields: &[&str],
) -> Result<(FormFields, AuthorizationPrompt), Response> {
    let names: Vec<&str> = ["pending", "csrf"].iter().chain(fields).copied().collect();
    let mut form = FormFields::parse(headers, body, &names).map_err(|e| show_error(&e))?;
    let pending = form.take("pending");
    if !s.csrf_ok(headers, &pending, &form.take("csrf")) {
        return Err(csrf_failure());
    }
    match s.server.pending_authorization(&pending).await {
        Ok(Some(prompt)) => Ok((form, prompt)),
        Ok(None) => Err(expired()),
        Err(e) => Err(internal(&e)),
    }
}

/// `POST …/sign-in`.
pub(crate) async fn sign_in(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers).await {
        return limited;
    }
    let (mut form, prompt) = match pending_form(&s, &headers, &body, &["username", "password"]).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let username = form.take("username");
    let password = form.take("password");
    if let Some(blocked) = s.account_blocked(&headers, &prompt, &username).await {
        return blocked;
    }
    let user = match s.authenticator.authenticate(&username, &password).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    s.account_result(&username, user.is_some()).await;
    let Some(user) = user else {
        s.server.record_failed_sign_in(&username, Some(&prompt.client.id)).await;
        if let Some(blocked) = s.account_blocked(&headers, &prompt, &username).await {
            return blocked;
        }
        return s.sign_in_page(&headers, &prompt, &username, Some("Wrong username or password."), StatusCode::OK);
    };
    let (token, session) = match s.server.start_session(&user, s.session_ttl, Some(&prompt.client.id)).await {
        Ok(started) => started,
        Err(e) => return internal(&e),
    };
    let cookie = s.cookies.set_session(token.secret(), s.session_ttl.as_secs());
    s.after_sign_in(&headers, prompt, &Session::from(session), vec![cookie]).await
}

/// `POST …/consent`.
pub(crate) async fn consent(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let (mut form, prompt) = match pending_form(&s, &headers, &body, &["decision"]).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Some(session) = s.session_for(&headers, Some(&prompt.client.id)).await else {
        // Signed out meanwhile (expired, signed out elsewhere, or the user was removed,
        // disabled or given a new password): sign in again.
        return s.sign_in_page(&headers, &prompt, "", Some("Your session ended; sign in again."), StatusCode::OK);
    };
    let Some(user) = session.user_id() else { return csrf_failure() };
    let result = match form.take("decision").as_str() {
        "approve" => s.server.consent_given(&prompt, &user, session.auth_time).await,
        "deny" => s.server.deny(&prompt.pending.id, Some(&user)).await,
        _ => return show_error(&OAuthError::invalid_request("decision must be 'approve' or 'deny'")),
    };
    match result {
        Ok(location) => redirect(StatusCode::SEE_OTHER, &location),
        Err(e) => authorize_error(e),
    }
}

/// `POST …/sign-out`: ends the browser's session on the server and deletes its cookie, then
/// shows the sign-in page of the pending request (or, with none, a signed-out page). The form
/// carries the CSRF token of the page it is on (bound to `pending`, which may be empty).
pub(crate) async fn sign_out(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let mut form = match FormFields::parse(&headers, &body, &["pending", "csrf"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let pending = form.take("pending");
    if !s.csrf_ok(&headers, &pending, &form.take("csrf")) {
        return csrf_failure();
    }
    let prompt = match pending.is_empty() {
        true => None,
        false => match s.server.pending_authorization(&pending).await {
            Ok(p) => p,
            Err(e) => return internal(&e),
        },
    };
    if let Some(token) = s.cookies.session_value(&headers)
        && let Err(e) = s.server.end_session(&token, prompt.as_ref().map(|p| &p.client.id)).await
    {
        return internal(&e);
    }
    let cleared = [s.cookies.clear_session()];
    match prompt {
        Some(prompt) => with_cookies(s.sign_in_page(&headers, &prompt, "", None, StatusCode::OK), &cleared),
        None => pages::page(StatusCode::OK, &pages::SignedOut {}, &cleared),
    }
}

/// `GET <issuer path>/account/apps`: the signed-in person's connected apps, or the sign-in form.
pub(crate) async fn account_apps(State(s): AppState, headers: HeaderMap) -> Response {
    match s.session(&headers).await {
        Some(session) => s.apps_page(&headers, &session).await,
        None => s.account_sign_in_page(&headers, "", None),
    }
}

/// `POST <issuer path>/account/sign-in`: the standalone sign-in of the Connected apps page,
/// rate-limited as the sign-in of an authorization request.
pub(crate) async fn account_sign_in(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers).await {
        return limited;
    }
    let mut form = match FormFields::parse(&headers, &body, &["csrf", "username", "password"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    if !s.csrf_ok(&headers, ACCOUNT_SIGN_IN_CSRF, &form.take("csrf")) {
        return csrf_failure();
    }
    let username = form.take("username");
    if let Some(blocked) = s.account_page_blocked(&headers, &username).await {
        return blocked;
    }
    let user = match s.authenticator.authenticate(&username, &form.take("password")).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    s.account_result(&username, user.is_some()).await;
    let Some(user) = user else {
        s.server.record_failed_sign_in(&username, None).await;
        if let Some(blocked) = s.account_page_blocked(&headers, &username).await {
            return blocked;
        }
        return s.account_sign_in_page(&headers, &username, Some("Wrong username or password."));
    };
    let token = match s.server.start_session(&user, s.session_ttl, None).await {
        Ok((token, _)) => token,
        Err(e) => return internal(&e),
    };
    let cookie = s.cookies.set_session(token.secret(), s.session_ttl.as_secs());
    with_cookies(redirect(StatusCode::SEE_OTHER, &s.pages.apps), &[cookie])
}

/// `POST <issuer path>/account/apps/revoke`: revokes the signed-in person's grants to one
/// client and withdraws the remembered consent, then shows the list again.
pub(crate) async fn account_apps_revoke(State(s): AppState, headers: HeaderMap, body: Bytes) -> Response {
    let mut form = match FormFields::parse(&headers, &body, &["client", "csrf"]) {
        Ok(f) => f,
        Err(e) => return show_error(&e),
    };
    let Some(session) = s.session(&headers).await else {
        return s.account_sign_in_page(&headers, "", Some("Your session ended; sign in again."));
    };
    let Some(user) = session.user_id() else { return csrf_failure() };
    if !s.csrf_ok(&headers, &apps_csrf_binding(&user), &form.take("csrf")) {
        return csrf_failure();
    }
    let client = match oauth_core::ClientId::parse(&form.take("client")) {
        Ok(c) => c,
        Err(e) => return show_error(&OAuthError::invalid_request(e.to_string())),
    };
    match s.server.revoke_connected_app(&user, &client).await {
        Ok(_) => redirect(StatusCode::SEE_OTHER, &s.pages.apps),
        Err(e) => internal(&e),
    }
}

/// `POST …/sign-in/upstream`: the sign-in page's "Sign in with …" button. The form carries the
/// CSRF token bound to the pending request, so only a browser that was shown that page can
/// start an upstream sign-in for it; the answer sets the sealed flow cookie and sends the
/// browser to the provider.
pub(crate) async fn upstream_start(State(s): AppState, peer: Peer, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers).await {
        return limited;
    }
    let (mut form, prompt) = match pending_form(&s, &headers, &body, &["provider"]).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Some(upstream) = s.server.upstream(&form.take("provider")).cloned() else {
        return show_error(&OAuthError::invalid_request("this sign-in service is not offered here"));
    };
    let callback = s.upstream_callback(&upstream.provider().id);
    let key = s.server.derive_secret(oauth_core::upstream::FLOW_COOKIE_KEY);
    match upstream.start(&prompt.pending.id, &callback, &key, s.server.now()) {
        Ok(started) => {
            let cookie = s.cookies.set_upstream(&started.cookie, oauth_core::upstream::FLOW_LIFETIME.as_secs());
            with_cookies(redirect(StatusCode::SEE_OTHER, &started.location), &[cookie])
        }
        Err(e) => internal(&oauth_core::Error::Config(e)),
    }
}

/// `GET …/upstream/{provider}/callback`: the provider sends the browser back. The flow cookie
/// must be this browser's and this flow's; then the person is found or linked here, a
/// sign-in session starts, and the authorization goes on (consent, or back to the client).
pub(crate) async fn upstream_callback(
    State(s): AppState,
    peer: Peer,
    headers: HeaderMap,
    axum::extract::Path(provider): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    if let Some(limited) = s.limited(Class::SignIn, &peer, &headers).await {
        return limited;
    }
    let cleared = [s.cookies.clear_upstream()];
    let refused = |told: &str| {
        with_cookies(
            pages::error_page(StatusCode::BAD_REQUEST, "The sign-in did not finish", told, "access_denied"),
            &cleared,
        )
    };
    let Some(upstream) = s.server.upstream(&provider).cloned() else {
        return refused("this sign-in service is not offered here");
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().take(32).collect();
    let key = s.server.derive_secret(oauth_core::upstream::FLOW_COOKIE_KEY);
    let cookie = s.cookies.upstream_value(&headers);
    let callback = s.upstream_callback(&provider);
    let leeway = s.server.config().leeway;
    let done = match upstream.finish(cookie.as_deref(), &query, &callback, &key, s.server.now(), leeway).await {
        Ok(done) => done,
        Err(e) => {
            s.server.record_upstream_failure(&e, None).await;
            return refused(&e.told);
        }
    };
    let prompt = match s.server.pending_authorization(&done.pending).await {
        Ok(Some(prompt)) => prompt,
        Ok(None) => return with_cookies(expired(), &cleared),
        Err(e) => return internal(&e),
    };
    let user = match s.server.upstream_user(&done, Some(&prompt.client.id)).await {
        Ok(Ok(user)) => user,
        Ok(Err(e)) => return refused(&e.told),
        Err(e) => return internal(&e),
    };
    if let Err(e) = s.server.hold_upstream_tokens(&done.pending, &user.id, &done.identity.provider, &done.tokens).await
    {
        return internal(&e);
    }
    let (token, session) = match s.server.start_session(&user, s.session_ttl, Some(&prompt.client.id)).await {
        Ok(started) => started,
        Err(e) => return internal(&e),
    };
    let cookies = vec![s.cookies.set_session(token.secret(), s.session_ttl.as_secs()), s.cookies.clear_upstream()];
    s.after_sign_in(&headers, prompt, &Session::from(session), cookies).await
}
