//! Virtual-key authentication.
//!
//! The presented key is compared with every configured key in constant time, so the
//! time taken does not reveal how much of a guess was right. The key is never
//! echoed, logged or forwarded: the provider's own credential replaces it upstream.

use subtle::ConstantTimeEq;

use crate::config::{Config, VirtualKey};

/// The bearer token of an `Authorization` header, if it has that shape.
pub fn bearer(header: Option<&[u8]>) -> Option<&[u8]> {
    let value = header?;
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The key an Azure-style request presents: its `api-key` header, else a bearer
/// token (the `AzureOpenAI` SDK sends the former, Entra-style clients the latter).
pub fn azure_key<'a>(
    api_key: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    api_key
        .map(<[u8]>::trim_ascii)
        .filter(|k| !k.is_empty())
        .or_else(|| bearer(authorization))
}

/// The configured key whose secret equals `presented`, checking all of them.
pub fn find_key<'c>(config: &'c Config, presented: &[u8]) -> Option<&'c VirtualKey> {
    let mut found = None;
    for key in &config.keys {
        if bool::from(key.secret.expose().as_bytes().ct_eq(presented)) {
            found = Some(key);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer(Some(b"Bearer sk-1")), Some(&b"sk-1"[..]));
        assert_eq!(bearer(Some(b"bearer   sk-1 ")), Some(&b"sk-1"[..]));
        assert_eq!(bearer(Some(b"Basic abc")), None);
        assert_eq!(bearer(Some(b"Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn azure_requests_present_api_key_or_bearer() {
        assert_eq!(
            azure_key(Some(b" sk-a "), Some(b"Bearer sk-b")),
            Some(&b"sk-a"[..])
        );
        assert_eq!(
            azure_key(Some(b""), Some(b"Bearer sk-b")),
            Some(&b"sk-b"[..])
        );
        assert_eq!(azure_key(None, Some(b"Bearer sk-b")), Some(&b"sk-b"[..]));
        assert_eq!(azure_key(None, None), None);
    }
}
