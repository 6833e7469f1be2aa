//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! 2.3): HTTP Basic or the body's `client_id` and `client_secret`, checked against the
//! client's stored secret hash in constant time, or a `private_key_jwt` client assertion
//! (RFC 7523), verified with the client's public keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::client::{Client, TokenEndpointAuthMethod};
use crate::client_assertion::ClientAssertion;
use crate::error::{Error, OAuthError};
use crate::events::{FlowStep, Reason};
use crate::failure::Failure;
use crate::secret::{ClientSecret, ClientSecretHash, MAX_SECRET_LEN, SecretCheck};
use crate::server::AuthorizationServer;
use crate::types::ClientId;

/// How the client authenticated: HTTP Basic and/or form fields.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    pub(crate) id: Option<String>,
    pub(crate) secret: Option<ClientSecret>,
    pub(crate) assertion: Option<ClientAssertion>,
    pub(crate) method: &'static str,
}

impl ClientCredentials {
    /// Combines the `Authorization` header (if any) with `client_id`/`client_secret` from the
    /// body. Both Basic and a body secret is `invalid_request` (RFC 6749 2.3); a body
    /// `client_id` next to Basic must name the same client (the Python SDK sends both).
    pub fn new(
        authorization: Option<&str>,
        body_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let body_secret = body_secret.filter(|s| !s.is_empty());
        let basic = match authorization {
            Some(h) => parse_basic(h)?,
            None => None,
        };
        match basic {
            Some((id, secret)) => {
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "the client authenticated with both HTTP Basic and client_secret in the body; use one method",
                    ));
                }
                if body_id.is_some_and(|b| b != id) {
                    return Err(OAuthError::invalid_client(
                        "client_id in the body differs from the client_id in HTTP Basic authentication",
                    ));
                }
                Ok(Self {
                    id: Some(id),
                    secret: secret.filter(|s| !s.is_empty()).map(ClientSecret::new),
                    assertion: None,
                    method: "client_secret_basic",
                })
            }
            None => Ok(Self {
                id: body_id.map(str::to_owned),
                secret: body_secret.map(|s| ClientSecret::new(s.to_owned())),
                assertion: None,
                method: if body_secret.is_some() { "client_secret_post" } else { "none" },
            }),
        }
    }

    /// Adds a `private_key_jwt` client assertion (`client_assertion_type` and
    /// `client_assertion`, RFC 7521 4.2), if sent. It is the only method then: with HTTP
    /// Basic or a `client_secret` it is `invalid_request`. Without a body `client_id`, the
    /// client is the one the assertion's `sub` names (verified later against that client's
    /// keys, `iss` included).
    pub fn with_assertion(
        mut self,
        kind: Option<&str>,
        assertion: Option<&ClientAssertion>,
    ) -> Result<Self, OAuthError> {
        let Some(assertion) = ClientAssertion::from_params(kind, assertion)? else {
            return Ok(self);
        };
        if self.secret.is_some() || self.method == "client_secret_basic" {
            return Err(OAuthError::invalid_request(
                "the client sent a client assertion and a client secret; use one authentication method",
            ));
        }
        if self.id.is_none() {
            self.id = Some(assertion.claimed_client()?);
        }
        self.assertion = Some(assertion);
        self.method = "private_key_jwt";
        Ok(self)
    }

    /// The client id presented, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Id, secret and method, for the fuzz targets' invariants.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn parts(&self) -> (Option<&str>, Option<&str>, &'static str) {
        (self.id.as_deref(), self.secret.as_ref().map(ClientSecret::secret), self.method)
    }
}

/// Parses `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
/// Other schemes are ignored (`Ok(None)`).
pub(crate) fn parse_basic(header: &str) -> Result<Option<(String, Option<String>)>, OAuthError> {
    let Some((scheme, value)) = header.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || {
        OAuthError::invalid_client(
            "the HTTP Basic credentials are malformed (expected base64 of client_id:client_secret)",
        )
    };
    if value.len() > 4 * MAX_SECRET_LEN {
        return Err(bad());
    }
    let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, Some(secret))))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits: `from_str_radix` alone would also take a sign ("%+A").
                let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl AuthorizationServer {
    /// Authenticates a client at the token, revocation or introspection endpoint.
    pub async fn authenticate_client(&self, creds: &ClientCredentials, step: FlowStep) -> Result<Client, Error> {
        // Anyone can fail here at any rate: each failure is stored within the event budget.
        let id = match credential_id(creds) {
            Ok(id) => id,
            Err(f) => return Err(self.reject_unauthenticated(step, None, f).await),
        };
        let client = match self.resolve_client(&id).await? {
            Ok(c) => c,
            // 401 invalid_client is what makes Claude register again instead of staying
            // "not connected".
            Err((reason, msg)) => {
                return Err(self
                    .reject_unauthenticated(step, Some(&id), Failure::new(reason, OAuthError::invalid_client(msg)))
                    .await);
            }
        };
        let (hash, secret) = match credentials_for(&client, creds) {
            Ok(Proof::Nothing) => return Ok(client),
            Ok(Proof::Secret(hash, secret)) => (hash, secret),
            Ok(Proof::Assertion(assertion)) => {
                return match self.verify_client_assertion(&client, assertion, step).await? {
                    Ok(()) => Ok(client),
                    Err(f) => Err(self.reject_unauthenticated(step, Some(&id), f).await),
                };
            }
            Err(f) => return Err(self.reject_unauthenticated(step, Some(&id), f).await),
        };
        match ClientSecretHash::verify(secret.secret(), hash, self.pepper()).await {
            SecretCheck::Valid => {}
            SecretCheck::ValidRehash(new_hash) => {
                // A hash from before secrets were peppered HMACs: replace it, so that this
                // client's next request skips the password hash.
                let mut upgraded = client.clone();
                upgraded.secret_hash = Some(new_hash);
                if let Err(e) = self.stores().clients.update_client(&upgraded).await {
                    tracing::warn!(client_id = %id, error = %e, "could not rehash a client secret");
                }
            }
            _ => {
                let msg = format!("client secret for '{id}' is wrong (sent with {})", creds.method);
                return Err(self
                    .reject_unauthenticated(
                        step,
                        Some(&id),
                        Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)),
                    )
                    .await);
            }
        }
        if client.secret_expires_at.is_some_and(|t| t <= self.now()) {
            let msg = format!("client secret for '{id}' has expired");
            return Err(self
                .reject_unauthenticated(
                    step,
                    Some(&id),
                    Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)),
                )
                .await);
        }
        Ok(client)
    }
}

/// The client id the credentials name (RFC 6749 2.3.1).
fn credential_id(creds: &ClientCredentials) -> Result<ClientId, Failure> {
    let raw = creds.id.as_deref().ok_or_else(|| {
        let e = OAuthError::invalid_client(
            "client authentication is missing: send client_id (and a secret for confidential clients)",
        );
        Failure::new(Reason::ClientAuthFailed, e)
    })?;
    ClientId::parse(raw).map_err(|e| Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(e.to_string())))
}

/// What a client must prove.
enum Proof<'a> {
    /// Nothing: a public client that sent no secret.
    Nothing,
    /// The secret sent, against its stored hash.
    Secret(&'a String, &'a ClientSecret),
    /// The client assertion sent, against its keys.
    Assertion(&'a ClientAssertion),
}

/// What `client` must prove: nothing (a public client that sent no secret), the secret sent
/// against its stored hash, or the assertion sent against its keys. An inactive client, a
/// public one that sent a secret, a confidential one that sent none, a `private_key_jwt` one
/// without an assertion and an assertion from any other client are refused.
fn credentials_for<'a>(client: &'a Client, creds: &'a ClientCredentials) -> Result<Proof<'a>, Failure> {
    let id = &client.id;
    if !client.active {
        let msg = format!("client '{id}' is deactivated");
        return Err(Failure::new(Reason::ClientInactive, OAuthError::invalid_client(msg)));
    }
    let refuse = |msg: String| Err(Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)));
    match (client.auth_method, &creds.assertion) {
        (TokenEndpointAuthMethod::PrivateKeyJwt, Some(assertion)) => return Ok(Proof::Assertion(assertion)),
        (TokenEndpointAuthMethod::PrivateKeyJwt, None) => {
            return refuse(format!(
                "client '{id}' authenticates with private_key_jwt: send client_assertion_type {} and a client_assertion signed with one of its keys",
                crate::client_assertion::CLIENT_ASSERTION_TYPE
            ));
        }
        (other, Some(_)) => {
            return refuse(format!(
                "client '{id}' is registered with token_endpoint_auth_method '{}', not private_key_jwt: it cannot authenticate with a client assertion",
                other.as_str()
            ));
        }
        (_, None) => {}
    }
    match (&client.secret_hash, &creds.secret) {
        (None, None) => Ok(Proof::Nothing),
        (None, Some(_)) => {
            let msg = format!(
                "client '{id}' is public (token_endpoint_auth_method 'none') and has no secret; do not send one"
            );
            Err(Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)))
        }
        (Some(_), None) => {
            let msg = format!(
                "client '{id}' is confidential: authenticate with {} (client_secret_basic and client_secret_post are accepted)",
                client.auth_method.as_str()
            );
            Err(Failure::new(Reason::ClientAuthFailed, OAuthError::invalid_client(msg)))
        }
        (Some(hash), Some(secret)) => Ok(Proof::Secret(hash, secret)),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "my%20client:p%3Ass+word" → id "my client", secret "p:ss word"
        let h = format!("Basic {}", STANDARD.encode("my%20client:p%3Ass+word"));
        let c = ClientCredentials::new(Some(&h), None, None).unwrap();
        assert_eq!(c.client_id(), Some("my client"));
        assert_eq!(c.secret.as_ref().unwrap().secret(), "p:ss word");
    }

    #[test]
    fn a_percent_sign_needs_two_hex_digits() {
        // Found by the basic_auth fuzz target: "%+A" decoded to a newline.
        for bad in ["c1:p%+Ass", "c1:%-1", "c%+41:s", "c1:%4", "c1:%zz"] {
            let h = format!("Basic {}", STANDARD.encode(bad));
            assert_eq!(parse_basic(&h).unwrap_err().code(), crate::ErrorCode::InvalidClient, "{bad}");
        }
        let h = format!("Basic {}", STANDARD.encode("c%41:%7e%7E"));
        assert_eq!(parse_basic(&h).unwrap(), Some(("cA".to_owned(), Some("~~".to_owned()))));
    }

    #[test]
    fn conflicting_credentials_are_refused() {
        let h = format!("Basic {}", STANDARD.encode("a:b"));
        assert!(ClientCredentials::new(Some(&h), Some("a"), Some("b")).is_err());
        assert_eq!(
            ClientCredentials::new(Some(&h), Some("x"), None).unwrap_err().code(),
            crate::ErrorCode::InvalidClient
        );
        assert!(ClientCredentials::new(Some(&h), Some("a"), None).is_ok());
        assert!(ClientCredentials::new(Some("Basic !!!"), None, None).is_err());
        assert!(ClientCredentials::new(Some(&format!("Basic {}", STANDARD.encode("nocolon"))), None, None).is_err());
        // Bearer or other schemes are not client authentication.
        let c = ClientCredentials::new(Some("Bearer abc"), Some("pub"), None).unwrap();
        assert_eq!(c.client_id(), Some("pub"));
        assert_eq!(c.method, "none");
        // An empty body secret is no secret.
        assert!(ClientCredentials::new(None, Some("pub"), Some("")).unwrap().secret.is_none());
    }
}
