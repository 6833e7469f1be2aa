//! PKCE (RFC 7636), S256 only.
//! Documented in the crate docs, "PKCE".

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::secret::{CodeVerifier, ct_eq};
use crate::types::ParseError;

/// An S256 code challenge: `BASE64URL(SHA256(code_verifier))`, exactly 43 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Parses an S256 challenge.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() != 43 {
            return Err(ParseError::new(
                "code_challenge",
                format!("an S256 challenge is 43 base64url characters, this one has {}", s.len().min(9999)),
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ParseError::new("code_challenge", "must be base64url without padding"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The S256 challenge of a verifier.
    pub fn s256(verifier: &CodeVerifier) -> Self {
        Self(s256(verifier.secret()))
    }

    /// The challenge as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` is well-formed (RFC 7636 4.1) and hashes to this challenge,
    /// compared in constant time.
    pub fn verify(&self, verifier: &CodeVerifier) -> bool {
        verifier_is_well_formed(verifier.secret()) && ct_eq(s256(verifier.secret()).as_bytes(), self.0.as_bytes())
    }
}

impl From<CodeChallenge> for String {
    fn from(v: CodeChallenge) -> String {
        v.0
    }
}

impl TryFrom<String> for CodeChallenge {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

/// The challenge method: only `S256` exists here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeChallengeMethod {
    /// `S256`.
    S256,
}

impl CodeChallengeMethod {
    /// Parses `code_challenge_method`; absent means `plain` (RFC 7636 4.3), which is refused.
    pub fn parse(s: Option<&str>) -> Result<Self, ParseError> {
        match s {
            Some("S256") => Ok(Self::S256),
            Some("plain") => Err(ParseError::new("code_challenge_method", "'plain' is not supported; use S256")),
            None => Err(ParseError::new(
                "code_challenge_method",
                "is missing, which means 'plain' (RFC 7636 4.3); only S256 is supported",
            )),
            Some(_) => Err(ParseError::new("code_challenge_method", "is unknown; only S256 is supported")),
        }
    }
}

/// Whether a verifier has 43 to 128 characters from the unreserved set (RFC 7636 4.1).
pub(crate) fn verifier_is_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        let v = CodeVerifier::new(RFC_VERIFIER.into());
        assert_eq!(CodeChallenge::s256(&v).as_str(), RFC_CHALLENGE);
        assert!(CodeChallenge::parse(RFC_CHALLENGE).unwrap().verify(&v));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let c = CodeChallenge::parse(RFC_CHALLENGE).unwrap();
        assert!(!c.verify(&CodeVerifier::new(RFC_VERIFIER.replace('d', "e"))));
        // The challenge itself used as a verifier ("plain" downgrade) fails.
        assert!(!c.verify(&CodeVerifier::new(RFC_CHALLENGE.into())));
        assert!(!verifier_is_well_formed("short"));
        assert!(!verifier_is_well_formed(&"a".repeat(129)));
        assert!(!verifier_is_well_formed(&format!("{}+", "a".repeat(43))));
        assert!(verifier_is_well_formed(&"a~.-_".repeat(9)));
    }

    #[test]
    fn plain_and_missing_methods_are_refused() {
        assert_eq!(CodeChallengeMethod::parse(Some("S256")), Ok(CodeChallengeMethod::S256));
        assert!(CodeChallengeMethod::parse(Some("plain")).is_err());
        assert!(CodeChallengeMethod::parse(Some("s256")).is_err());
        assert!(CodeChallengeMethod::parse(None).is_err());
        assert!(CodeChallenge::parse("too-short").is_err());
        assert!(CodeChallenge::parse(&"=".repeat(43)).is_err());
    }
}
