//! Which part of the HTTP surface a request asks for (DESIGN.md §2 "HTTP surface").

use crate::errors::ApiError;

/// A served endpoint of the API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    ListModels,
    /// `GET /v1/models/{name}`, name percent-decoded.
    GetModel(String),
}

impl Endpoint {
    /// Classifies `method` and `path` (query already removed): 404 for an unknown
    /// path, 405 for a known path with the wrong method.
    pub fn classify(method: &str, path: &str) -> Result<Endpoint, ApiError> {
        let (endpoint, allowed) = match path.trim_end_matches('/') {
            "/v1/chat/completions" => (Endpoint::ChatCompletions, "POST"),
            "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
            "/v1/models" => (Endpoint::ListModels, "GET"),
            other => match other.strip_prefix("/v1/models/") {
                Some(name) if !name.is_empty() => {
                    let name = percent_encoding::percent_decode_str(name)
                        .decode_utf8_lossy()
                        .into_owned();
                    (Endpoint::GetModel(name), "GET")
                }
                _ => return Err(ApiError::unknown_path(path)),
            },
        };
        if method == allowed {
            Ok(endpoint)
        } else {
            Err(ApiError::method_not_allowed(method, path))
        }
    }

    /// The method this endpoint takes, for the `allow` header of a 405.
    pub fn allowed_method(path: &str) -> &'static str {
        if path.starts_with("/v1/models") {
            "GET"
        } else {
            "POST"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths_and_methods() {
        assert_eq!(
            Endpoint::classify("POST", "/v1/chat/completions"),
            Ok(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::classify("GET", "/v1/models/org%2Fmodel"),
            Ok(Endpoint::GetModel("org/model".into()))
        );
        assert_eq!(
            Endpoint::classify("GET", "/v1/chat/completions")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            Endpoint::classify("POST", "/v1/models").unwrap_err().status,
            405
        );
        assert_eq!(
            Endpoint::classify("POST", "/v2/chat").unwrap_err().status,
            404
        );
        assert_eq!(
            Endpoint::classify("GET", "/v1/models/").unwrap(),
            Endpoint::ListModels
        );
    }
}
