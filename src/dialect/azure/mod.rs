//! The Azure OpenAI dialect: OpenAI's wire format on Azure's classic deployments
//! surface (`PROVIDERS.md` §2, §4.5).
//!
//! Outbound differences from OpenAI are the URL (`/openai/deployments/{deployment}/
//! {operation}?api-version=...`), the credential header (`api-key`) and the body
//! fields each api-version accepts (`body_rules.rs`). Answers are OpenAI-shaped
//! already; the shared translator drops Azure's filter-only stream chunks.

mod body_rules;
mod version;

use pingora::http::RequestHeader;

pub use self::version::ApiVersion;
use super::openai::Passthrough;
use super::{
    build_failed, error_envelope, get, json_post, Dialect, HealthProbe, ResponseTranslator,
    UpstreamFault, UpstreamRequest,
};
use crate::config::{ProviderKind, Target};
use crate::errors::ApiError;
use crate::llm_request::{LlmRequest, Operation};

/// The Azure OpenAI wire format.
pub struct Azure;

/// A target's Azure settings, resolved.
struct Deployment<'a> {
    endpoint: &'a crate::config::UpstreamUrl,
    api_key: &'a crate::config::Secret,
    version: &'a ApiVersion,
    name: &'a str,
}

impl<'a> Deployment<'a> {
    fn of(target: &'a Target) -> Result<Deployment<'a>, ApiError> {
        let ProviderKind::Azure {
            endpoint,
            api_key,
            api_version,
        } = &target.provider.kind
        else {
            return Err(ApiError::internal());
        };
        Ok(Deployment {
            endpoint,
            api_key,
            version: target.api_version.as_ref().unwrap_or(api_version),
            name: &target.model,
        })
    }
}

impl Dialect for Azure {
    fn encode(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Result<UpstreamRequest, ApiError> {
        let deployment = Deployment::of(target)?;
        let operation = match request.operation {
            Operation::ChatCompletions => "chat/completions",
            Operation::Embeddings => "embeddings",
        };
        // Stream usage is asked for only where the api-version takes the option:
        // adding it for the table to strip again would cost a parse per request.
        let stream_options = body_rules::accepts_field(deployment.version, "stream_options");
        let mut body = request.upstream_body(deployment.name, stream_options);
        if request.operation == Operation::ChatCompletions {
            body = body_rules::adapt(body, deployment.version)?;
        }
        let path = format!(
            "/openai/deployments/{}/{operation}?api-version={}",
            deployment.name, deployment.version
        );
        let build = || -> pingora::Result<RequestHeader> {
            let mut h = json_post(deployment.endpoint, &path, body.len(), request, request_id)?;
            h.insert_header("api-key", deployment.api_key.expose())?;
            Ok(h)
        };
        let header = build().map_err(|e| build_failed(target, e))?;
        Ok(UpstreamRequest { header, body })
    }

    fn translator(
        &self,
        request: &LlmRequest,
        _target: &Target,
        _request_id: &str,
    ) -> Box<dyn ResponseTranslator> {
        Box::new(Passthrough::for_request(request))
    }

    /// As OpenAI's, except that Azure's 429 has no `type`: its message says
    /// whether tokens or requests ran out.
    fn classify(&self, status: u16, _headers: &http::HeaderMap, body: &[u8]) -> UpstreamFault {
        match error_envelope::classify(status, body) {
            UpstreamFault::RateLimited { .. }
                if error_envelope::read(status, body)
                    .message
                    .contains("token rate limit") =>
            {
                UpstreamFault::RateLimited { kind: "tokens" }
            }
            fault => fault,
        }
    }

    /// `GET /openai/models`: free, needs the key, and fails when the endpoint or
    /// api-version is wrong — the same faults that break completions.
    fn health_probe(&self, target: &Target) -> Result<HealthProbe, ApiError> {
        let deployment = Deployment::of(target)?;
        let path = format!("/openai/models?api-version={}", deployment.version);
        let build = || -> pingora::Result<RequestHeader> {
            let mut h = get(deployment.endpoint, &path)?;
            h.insert_header("api-key", deployment.api_key.expose())?;
            Ok(h)
        };
        build()
            .map(|h| HealthProbe::Request(Box::new(h)))
            .map_err(|e| build_failed(target, e))
    }
}

#[cfg(test)]
mod tests;
