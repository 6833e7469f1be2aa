//! What the pages share: rate limits and sign-in throttles, the registration gate, the
//! browser's session and CSRF token, and rendering the sign-in, consent and apps pages.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Json, Response};
use oauth_core::ClientIdentity;
use oauth_core::Limited;
use oauth_core::OAuthError;
use oauth_core::{AuthorizationPrompt, ConsentDecision};

use crate::ratelimit::Class;
use crate::session::{self, Session};
use crate::{Peer, Shared, authorize_error, csrf_failure, internal, no_store, pages, redirect, with_cookies};

impl Shared {
    /// The 429 answer when this client address is over its limit for `class`.
    pub(crate) async fn limited(&self, class: Class, peer: &Peer, headers: &HeaderMap) -> Option<Response> {
        let limiter = self.limiter.as_ref()?;
        let Some(addr) = limiter.client_addr(peer.0, headers) else {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "rate limits are off: the peer address is unknown; serve the app with into_make_service_with_connect_info::<SocketAddr>()"
                );
            });
            return None;
        };
        let refused = limiter.admit(class, addr).await.err()?;
        let secs = refused.wait.as_secs().max(1);
        let (who, detail) = if refused.total {
            ("all clients together", format!("the server-wide registration quota is used up; retry in {secs} s"))
        } else {
            ("this address", format!("{:?} limit for {addr} reached; retry in {secs} s", refused.class))
        };
        tracing::warn!(target: "oauth::flow", client_addr = %addr, class = ?refused.class, "rate limited: {detail}");
        if refused.first {
            // One event per run of refusals, so that a flood cannot fill the event table.
            let limited = match class {
                Class::Registration | Class::RegistrationHourly => Limited::Registration,
                Class::Authorize => Limited::Authorization,
                Class::SignIn => Limited::SignIn,
                Class::Token => Limited::Token,
            };
            let server = self.server.clone();
            tokio::spawn(async move { server.record_rate_limited(limited, detail).await });
        }
        let description = format!("too many requests from {who}; retry in {secs} s");
        let mut resp = if matches!(class, Class::SignIn | Class::Authorize) && !wants_json(headers) {
            pages::error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &description,
                "temporarily_unavailable",
            )
        } else {
            no_store((
                StatusCode::TOO_MANY_REQUESTS,
                Json(OAuthError::new(oauth_core::ErrorCode::TemporarilyUnavailable, description)),
            ))
        };
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// The sign-in page with 429 when the account is blocked after too many wrong passwords,
    /// from whatever addresses; the password is then not even checked.
    pub(crate) async fn account_blocked(
        &self,
        headers: &HeaderMap,
        prompt: &AuthorizationPrompt,
        username: &str,
    ) -> Option<Response> {
        let (secs, message) = self.account_block(username, Some(&prompt.client.id)).await?;
        let mut resp = self.sign_in_page(headers, prompt, username, Some(&message), StatusCode::TOO_MANY_REQUESTS);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// [`Self::account_blocked`] for the Connected apps sign-in: one throttle per account,
    /// whichever form the guesses come through.
    pub(crate) async fn account_page_blocked(&self, headers: &HeaderMap, username: &str) -> Option<Response> {
        let (secs, message) = self.account_block(username, None).await?;
        let mut resp = self.account_sign_in_page(headers, username, Some(&message));
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// When the account is blocked: the seconds to wait and what to tell the person, with a
    /// flow event the first time.
    pub(crate) async fn account_block(
        &self,
        username: &str,
        client: Option<&oauth_core::ClientId>,
    ) -> Option<(u64, String)> {
        let limiter = self.limiter.as_ref()?;
        let (wait, first) = limiter.account_block(username).await?;
        let secs = wait.as_secs().max(1);
        if first {
            self.server.record_sign_in_throttled(username, wait, client).await;
        }
        let retry = self.server.now().plus(std::time::Duration::from_secs(secs)).as_secs();
        let when = format!("{:02}:{:02}:{:02} UTC", retry / 3600 % 24, retry / 60 % 60, retry % 60);
        let message =
            format!("Too many failed sign-ins for this account. Try again in {} (at {when}).", human_duration(secs));
        Some((secs, message))
    }

    /// Counts a wrong password against the account, or clears it after a success.
    pub(crate) async fn account_result(&self, username: &str, ok: bool) {
        let Some(limiter) = self.limiter.as_ref() else { return };
        if ok {
            limiter.account_success(username).await;
        } else {
            limiter.account_failure(username).await;
        }
    }

    /// 401 `invalid_token` when registration needs an initial access token the request lacks.
    pub(crate) async fn registration_closed(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.initial_access_token.as_ref()?;
        if token.admits(headers) {
            return None;
        }
        self.server.record_initial_access_token_refused(headers.contains_key(header::AUTHORIZATION)).await;
        let err = OAuthError::new(
            oauth_core::ErrorCode::InvalidToken,
            "registration on this server needs an initial access token: send it as 'Authorization: Bearer <token>'",
        );
        let mut resp = no_store((StatusCode::UNAUTHORIZED, Json(err)));
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Some(resp)
    }

    /// The signed-in user of this browser: its session cookie names a stored, unexpired session
    /// whose user still exists, is enabled and has not changed password since.
    #[allow(dead_code)] // The shape pages without a pending request use.
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.session_for(headers, None).await
    }

    /// [`Self::session`], recording a refused session against `client`'s connection attempt.
    pub(crate) async fn session_for(
        &self,
        headers: &HeaderMap,
        client: Option<&oauth_core::ClientId>,
    ) -> Option<Session> {
        let token = self.cookies.session_value(headers)?;
        match self.server.check_session(&token, self.authenticator.as_ref(), client).await {
            Ok(session) => session.map(Session::from),
            Err(e) => {
                // Fail closed: an unreadable session store signs nobody in.
                tracing::error!(error = %e, "checking a sign-in session failed; treated as signed out");
                None
            }
        }
    }

    pub(crate) fn csrf_ok(&self, headers: &HeaderMap, pending: &str, submitted: &str) -> bool {
        let nonce = self.cookies.csrf_nonce(headers);
        let ok =
            session::csrf_valid(&self.server.derive_secret(session::CSRF_KEY), nonce.as_deref(), pending, submitted);
        if !ok {
            // Cookie missing: third-party cookies blocked, the page opened in another browser, or
            // a cross-site post. Token wrong: a stale page or a forged form.
            let why = if nonce.is_none() { "the CSRF cookie is missing" } else { "the CSRF token does not match" };
            tracing::warn!(target: "oauth::flow", step = "sign_in", reason = "csrf_failed", "form refused: {why}");
        }
        ok
    }

    /// The browser's CSRF nonce, and the `Set-Cookie` for it when it is new.
    pub(crate) fn csrf_nonce(&self, headers: &HeaderMap, cookies: &mut Vec<String>) -> String {
        match self.cookies.csrf_nonce(headers) {
            Some(n) => n,
            None => {
                let n = oauth_core::ClientSecret::generate().secret().to_owned();
                cookies.push(self.cookies.set_csrf(&n));
                n
            }
        }
    }

    /// The absolute callback URL of upstream provider `id`, as registered at the provider.
    pub(crate) fn upstream_callback(&self, id: &str) -> String {
        format!("{}{}{id}/callback", self.issuer_base, self.pages.upstream)
    }

    pub(crate) fn sign_in_page(
        &self,
        headers: &HeaderMap,
        prompt: &AuthorizationPrompt,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &prompt.pending.id);
        let host = prompt.pending.redirect_uri.display_host();
        let page = pages::SignIn {
            client_name: prompt.client.display_name(),
            redirect_host: &host,
            action: &self.pages.sign_in,
            pending: &prompt.pending.id,
            csrf: &csrf,
            username,
            error,
            for_account: false,
            providers: &self.providers,
            upstream_action: &self.pages.upstream_start,
        };
        pages::page(status, &page, &cookies)
    }

    /// Signed in: approve directly when consent is not needed, else show the consent page.
    pub(crate) async fn after_sign_in(
        &self,
        headers: &HeaderMap,
        prompt: AuthorizationPrompt,
        session: &Session,
        mut cookies: Vec<String>,
    ) -> Response {
        let Some(user) = session.user_id() else { return csrf_failure() };
        let decision = match self.server.consent_decision(&prompt, &user).await {
            Ok(d) => d,
            Err(e) => return internal(&e),
        };
        if !decision.ask() {
            return match self.server.consent_skipped(&prompt, &user, session.auth_time, decision).await {
                Ok(location) => with_cookies(redirect(StatusCode::SEE_OTHER, &location), &cookies),
                Err(e) => authorize_error(e),
            };
        }
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &prompt.pending.id);
        let host = prompt.pending.redirect_uri.display_host();
        let resource = prompt.pending.resource.to_string();
        let identity = ClientIdentity::of(&prompt.client);
        let scopes = self.server.describe_scopes(&prompt.pending.scopes);
        let page = pages::Consent {
            client_name: prompt.client.display_name(),
            about: pages::About::new(&identity),
            asked_again: decision == ConsentDecision::AskAgain,
            redirect_host: &host,
            resource: &resource,
            scopes: &scopes,
            user_name: &session.name,
            action: &self.pages.consent,
            sign_out: &self.pages.sign_out,
            pending: &prompt.pending.id,
            csrf: &csrf,
        };
        pages::page(StatusCode::OK, &page, &cookies)
    }
}

impl Shared {
    pub(crate) fn account_sign_in_page(&self, headers: &HeaderMap, username: &str, error: Option<&str>) -> Response {
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf = session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, ACCOUNT_SIGN_IN_CSRF);
        let page = pages::SignIn {
            client_name: "",
            redirect_host: "",
            action: &self.pages.account_sign_in,
            pending: "",
            csrf: &csrf,
            username,
            error,
            for_account: true,
            providers: &[],
            upstream_action: "",
        };
        pages::page(StatusCode::OK, &page, &cookies)
    }

    pub(crate) async fn apps_page(&self, headers: &HeaderMap, session: &Session) -> Response {
        let Some(user) = session.user_id() else { return csrf_failure() };
        let apps = match self.server.connected_apps(&user).await {
            Ok(a) => a,
            Err(e) => return internal(&e),
        };
        let mut cookies = Vec::new();
        let nonce = self.csrf_nonce(headers, &mut cookies);
        let csrf =
            session::csrf_token(&self.server.derive_secret(session::CSRF_KEY), &nonce, &apps_csrf_binding(&user));
        let rows = apps.iter().map(|a| pages::AppRow::new(a, self.server.describe_scopes(&a.scopes))).collect();
        let page =
            pages::Apps { user_name: &session.name, apps: rows, revoke_action: &self.pages.apps_revoke, csrf: &csrf };
        pages::page(StatusCode::OK, &page, &cookies)
    }
}

/// Whether the client asks for JSON and not HTML.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// "45 s", "3 min 20 s", "15 min".
pub(crate) fn human_duration(secs: u64) -> String {
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// The binding of the Connected apps forms' CSRF token: the signed-in user, so that a token
/// from one person's page is no good in another's session.
pub(crate) fn apps_csrf_binding(user: &oauth_core::UserId) -> String {
    format!("account apps|{user}")
}

/// The binding of the account sign-in form's CSRF token (there is no pending request).
pub(crate) const ACCOUNT_SIGN_IN_CSRF: &str = "account sign-in";
