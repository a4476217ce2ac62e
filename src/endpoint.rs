//! Which part of the HTTP surface a request asks for (DESIGN.md §2 "HTTP surface").

use crate::errors::ApiError;
use crate::llm_request::Operation;

/// A served endpoint of the API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    ListModels,
    /// `GET /v1/models/{name}`, name percent-decoded.
    GetModel(String),
    /// Azure's shape, `POST /openai/deployments/{name}/chat/completions` or
    /// `.../embeddings`, for apps on the `AzureOpenAI` SDK: `name` (percent-decoded)
    /// is a public model name.
    Deployment(Operation, String),
}

impl Endpoint {
    /// Classifies `method` and `path` (query already removed): 404 for an unknown
    /// path, 405 for a known path with the wrong method.
    pub fn classify(method: &str, path: &str) -> Result<Endpoint, ApiError> {
        let (endpoint, allowed) = match path.trim_end_matches('/') {
            "/v1/chat/completions" => (Endpoint::ChatCompletions, "POST"),
            "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
            "/v1/models" => (Endpoint::ListModels, "GET"),
            other => {
                if let Some(name) = other.strip_prefix("/v1/models/").filter(|n| !n.is_empty()) {
                    (Endpoint::GetModel(decoded(name)), "GET")
                } else if let Some(endpoint) = deployment(other) {
                    (endpoint, "POST")
                } else {
                    return Err(ApiError::unknown_path(path));
                }
            }
        };
        if method == allowed {
            Ok(endpoint)
        } else {
            Err(ApiError::method_not_allowed(method, path))
        }
    }

    /// Whether the request uses Azure's URL shape (and so Azure's `api-key` header
    /// and `api-version` query).
    pub fn is_azure(&self) -> bool {
        matches!(self, Endpoint::Deployment(..))
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

/// `{name}/chat/completions` or `{name}/embeddings` under `/openai/deployments/`.
fn deployment(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (name, operation) = rest.split_once('/')?;
    let operation = match operation {
        "chat/completions" => Operation::ChatCompletions,
        "embeddings" => Operation::Embeddings,
        _ => return None,
    };
    (!name.is_empty()).then(|| Endpoint::Deployment(operation, decoded(name)))
}

fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
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

    #[test]
    fn classifies_azure_deployment_paths() {
        assert_eq!(
            Endpoint::classify("POST", "/openai/deployments/gpt-4o/chat/completions"),
            Ok(Endpoint::Deployment(
                Operation::ChatCompletions,
                "gpt-4o".into()
            ))
        );
        assert_eq!(
            Endpoint::classify("POST", "/openai/deployments/my%20embed/embeddings"),
            Ok(Endpoint::Deployment(
                Operation::Embeddings,
                "my embed".into()
            ))
        );
        let status = |m, p| Endpoint::classify(m, p).unwrap_err().status;
        assert_eq!(
            status("GET", "/openai/deployments/gpt-4o/chat/completions"),
            405
        );
        assert_eq!(
            status("POST", "/openai/deployments/gpt-4o/completions"),
            404
        );
        assert_eq!(status("POST", "/openai/deployments//chat/completions"), 404);
        assert_eq!(status("GET", "/openai/deployments"), 404);
    }
}
