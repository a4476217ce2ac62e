//! SigV4 signing of Bedrock requests with AWS's own `aws-sigv4` crate.
//!
//! The signature covers every header the request carries when it is signed, the
//! path exactly as it goes on the wire (the crate encodes it once more for the
//! canonical URI, as SigV4 requires for every service but S3: a model id's `:` is
//! `%3A` on the wire and `%253A` in the canonical request) and the SHA-256 of the
//! final body. So signing is the last thing done to a request: nothing signed may
//! change afterwards, and every try is signed afresh with its own timestamp.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use pingora::http::RequestHeader;

/// Bedrock's signing name (not `bedrock-runtime`, its endpoint prefix).
pub const BEDROCK_SERVICE: &str = "bedrock";

/// Who signs, and for which service and region.
pub struct SigningKey<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

/// Adds `x-amz-date`, `authorization` (and `x-amz-security-token` with temporary
/// credentials) to `header`, signing its method, path, headers and `body` as of
/// `time`.
pub fn sign_request(
    header: &mut RequestHeader,
    body: &[u8],
    key: &SigningKey<'_>,
    time: SystemTime,
    settings: SigningSettings,
) -> Result<(), String> {
    let identity: Identity = Credentials::new(
        key.access_key_id,
        key.secret_access_key,
        key.session_token.map(str::to_string),
        None,
        "switchyard-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(key.region)
        .name(key.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let instructions = {
        let mut headers = Vec::with_capacity(header.headers.len());
        for (name, value) in header.headers.iter() {
            let value = value
                .to_str()
                .map_err(|_| format!("header `{name}` is not visible ASCII"))?;
            headers.push((name.as_str(), value));
        }
        let path = header
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let method = header.method.as_str().to_string();
        let request = SignableRequest::new(
            &method,
            path,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("request cannot be signed: {e}"))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| format!("signing failed: {e}"))?
            .into_parts();
        instructions
    };
    let (new_headers, _query) = instructions.into_parts();
    for new in new_headers {
        header
            .insert_header(new.name().to_string(), new.value().to_string())
            .map_err(|e| format!("signed header `{}`: {e}", new.name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
