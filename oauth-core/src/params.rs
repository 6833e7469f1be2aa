//! Form and query parameters, as adapters hand them over: a list of pairs, bounded in size,
//! with repeated parameters refused (RFC 6749 3.1) and empty values treated as absent.

use std::collections::HashMap;

use crate::error::OAuthError;

/// Most parameters in one request.
pub(crate) const MAX_PARAMS: usize = 64;
/// Longest parameter value.
pub(crate) const MAX_VALUE_LEN: usize = 8 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Params {
    single: HashMap<String, String>,
    multi: HashMap<String, Vec<String>>,
}

impl Params {
    /// Collects pairs; names in `multi` may repeat (RFC 8707 `resource`), others may not.
    pub(crate) fn collect<I, K, V>(pairs: I, multi: &[&str]) -> Result<Self, OAuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut p = Params::default();
        for (count, (k, v)) in pairs.into_iter().enumerate() {
            if count >= MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!("more than {MAX_PARAMS} parameters")));
            }
            let (k, v) = (k.as_ref(), v.as_ref());
            if v.len() > MAX_VALUE_LEN {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{}' is longer than {MAX_VALUE_LEN} bytes",
                    clip(k)
                )));
            }
            if v.is_empty() {
                continue;
            }
            if multi.contains(&k) {
                p.multi.entry(k.to_owned()).or_default().push(v.to_owned());
            } else if p.single.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{}' is included more than once (RFC 6749 3.1)",
                    clip(k)
                )));
            }
        }
        Ok(p)
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.single.remove(name)
    }

    pub(crate) fn take_all(&mut self, name: &str) -> Vec<String> {
        self.multi.remove(name).unwrap_or_default()
    }
}

pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_empty_values_and_bounds() {
        let e = Params::collect([("a", "1"), ("a", "2")], &[]).unwrap_err();
        assert!(e.description().contains("more than once"));
        let mut p = Params::collect([("a", ""), ("resource", "x"), ("resource", "y")], &["resource"]).unwrap();
        assert_eq!(p.take("a"), None);
        assert_eq!(p.take_all("resource"), vec!["x".to_owned(), "y".to_owned()]);
        let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(Params::collect(many, &[]).is_err());
        assert!(Params::collect([("a", "x".repeat(MAX_VALUE_LEN + 1))], &[]).is_err());
    }

    #[test]
    fn a_repeated_name_is_quoted_without_its_control_characters() {
        // Found by the authorize_query and token_form fuzz targets: the name went into the
        // description raw.
        for name in ["1\u{2}", "\n"] {
            let e = Params::collect([(name, "a"), (name, "b")], &[]).unwrap_err();
            assert!(!e.description().chars().any(char::is_control), "{:?}", e.description());
            assert!(e.description().contains("more than once"));
        }
    }
}
