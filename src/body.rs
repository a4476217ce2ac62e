//! Reading the client's request body, bounded by `max_request_bytes`.
//!
//! The whole body is read before routing: the model is inside it, and upstream
//! signing (SigV4) covers it. A declared `content-length` over the limit is refused
//! before a byte is read, and `Expect: 100-continue` is answered only for bodies
//! that may be sent (PINGORA.md pitfall 6: otherwise clients stall).

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::errors::ApiError;

/// Why the body could not be had.
pub enum BodyError {
    /// Over the limit: answer 413 and close.
    TooLarge,
    /// Not readable (bad framing, client gone, read timeout).
    Unreadable(String),
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read(session: &mut Session, limit: usize) -> Result<Bytes, BodyError> {
    let declared = session
        .get_header("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let expects_continue = session
        .get_header("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|e| BodyError::Unreadable(e.to_string()))?;
    }
    let capacity = declared.map_or(8192, |n| n as usize);
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| BodyError::Unreadable(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl BodyError {
    /// The answer for this failure.
    pub fn to_api_error(&self, limit: usize) -> ApiError {
        match self {
            BodyError::TooLarge => ApiError::request_too_large(limit),
            BodyError::Unreadable(e) => ApiError::invalid_request(
                "invalid_body",
                format!("The request body could not be read: {e}."),
            ),
        }
    }
}
