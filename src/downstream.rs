//! Writing answers to the client, with the headers every answer carries.
//!
//! Every response gets `x-request-id` and `x-switchyard-overhead-ms`; every response
//! that involved an upstream try also gets `x-switchyard-attempts` and
//! `x-switchyard-provider`; every response to a key with limits gets the
//! `x-ratelimit-*` headers. A failed write means the client is gone: the caller
//! stops work (and the upstream) instead of reporting success. Time spent in a
//! write is the client's (a slow reader), not the gateway's overhead.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::errors::ApiError;
use crate::record::RequestRecord;

/// The client connection failed while we wrote to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

/// The most headers the gateway adds itself: request id, attempts, provider,
/// overhead and the six `x-ratelimit-*`.
const OWN_HEADERS: usize = 10;

/// A response header with the gateway's own headers; `extra` are already filtered.
pub fn header(
    status: u16,
    record: &RequestRecord,
    extra: &[(&'static str, String)],
) -> Result<ResponseHeader, ClientGone> {
    let build = || -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(status, Some(OWN_HEADERS + extra.len()))?;
        for (name, value) in extra {
            h.append_header(*name, value.as_str())?;
        }
        if let Some(reservation) = &record.rate_limit {
            for (name, value) in reservation.headers() {
                h.insert_header(name, value)?;
            }
        }
        h.insert_header("x-request-id", record.request_id.as_str())?;
        if let Some(last) = record.last_try() {
            h.insert_header("x-switchyard-attempts", record.tries.len().to_string())?;
            h.insert_header("x-switchyard-provider", last.provider.as_str())?;
        }
        let overhead_ms = record.overhead().as_secs_f64() * 1000.0;
        h.insert_header("x-switchyard-overhead-ms", format!("{overhead_ms:.3}"))?;
        Ok(h)
    };
    build().map_err(|e| {
        log::error!("cannot build a response header: {e}");
        ClientGone
    })
}

/// Writes a complete answer with a `content-length`.
pub async fn send_whole(
    session: &mut Session,
    record: &mut RequestRecord,
    mut header: ResponseHeader,
    body: Bytes,
) -> Result<(), ClientGone> {
    header
        .insert_header("content-length", body.len().to_string())
        .map_err(|_| ClientGone)?;
    record.status = header.status.as_u16();
    let began = Instant::now();
    let result = async {
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    written(record, began, result)
}

/// Writes a JSON answer.
pub async fn send_json(
    session: &mut Session,
    record: &mut RequestRecord,
    status: u16,
    extra: &[(&'static str, String)],
    body: Bytes,
) -> Result<(), ClientGone> {
    let mut extra = extra.to_vec();
    extra.push(("content-type", "application/json".to_string()));
    let h = header(status, record, &extra)?;
    send_whole(session, record, h, body).await
}

/// Answers with an error envelope; a 429 also carries `retry-after(-ms)`, or,
/// when no wait would help, `x-should-retry: false` (which OpenAI's SDKs obey).
pub async fn send_error(session: &mut Session, record: &mut RequestRecord, error: &ApiError) {
    record.error = error.code.as_deref().map(str::to_string);
    let draining = Instant::now();
    settle_unread_body(session).await;
    record.client_wait += draining.elapsed();
    let mut extra = Vec::new();
    match error.retry_after_ms {
        Some(ms) => {
            extra.push(("retry-after", ms.div_ceil(1000).max(1).to_string()));
            extra.push(("retry-after-ms", ms.to_string()));
        }
        None if error.status == 429 => extra.push(("x-should-retry", "false".to_string())),
        None => {}
    }
    if error.status == 405 {
        let allowed = crate::endpoint::Endpoint::allowed_method(session.req_header().uri.path());
        extra.push(("allow", allowed.to_string()));
    }
    // A failed write has already marked the record; there is nobody left to tell.
    let body = error.body_for(&record.request_id);
    let _ = send_json(session, record, error.status, &extra, body).await;
}

/// Bodies up to this size are read and dropped before an early error answer.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// The longest wait for such a body.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Before answering a request whose body was not read: a small declared body is
/// drained, so the connection stays usable and the client is not sent a reset in
/// place of the answer; anything else closes the connection after the answer.
async fn settle_unread_body(session: &mut Session) {
    if session.is_body_done() {
        return;
    }
    let small = session
        .get_header("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n <= DRAIN_LIMIT);
    let drained = small
        && matches!(
            tokio::time::timeout(DRAIN_TIMEOUT, session.drain_request_body()).await,
            Ok(Ok(()))
        );
    if !drained {
        session.set_keepalive(None);
    }
}

/// Starts a chunked `text/event-stream` answer.
pub async fn start_stream(
    session: &mut Session,
    record: &mut RequestRecord,
    extra: &[(&'static str, String)],
) -> Result<(), ClientGone> {
    // The client always gets SSE: an upstream's own stream type (Bedrock's
    // binary event stream) was translated away.
    let mut extra: Vec<_> = extra
        .iter()
        .filter(|(n, v)| *n != "content-type" || v.starts_with("text/event-stream"))
        .cloned()
        .collect();
    if !extra.iter().any(|(n, _)| *n == "content-type") {
        extra.push(("content-type", "text/event-stream".to_string()));
    }
    extra.push(("cache-control", "no-cache".to_string()));
    extra.push(("transfer-encoding", "chunked".to_string()));
    let h = header(200, record, &extra)?;
    record.status = 200;
    let began = Instant::now();
    let result = session.write_response_header(Box::new(h), false).await;
    written(record, began, result)
}

/// Writes one piece of a started stream; `end` finishes the answer.
pub async fn send_chunk(
    session: &mut Session,
    record: &mut RequestRecord,
    chunk: Bytes,
    end: bool,
) -> Result<(), ClientGone> {
    let began = Instant::now();
    let result = session.write_response_body(Some(chunk), end).await;
    written(record, began, result)
}

/// Ends a stream whose answer the client already has whole (`[DONE]` is out). A
/// client that hung up right after `[DONE]` did nothing wrong: not a 499.
pub async fn end_whole_stream(session: &mut Session) {
    if let Err(e) = session.write_response_body(Some(Bytes::new()), true).await {
        log::debug!("closing a finished stream: {e}");
    }
}

/// Ends a stream that failed after its header went out: one error event, then the
/// end of the answer, never a `[DONE]` that would make a truncated answer look whole.
pub async fn fail_stream(session: &mut Session, record: &mut RequestRecord, error: &ApiError) {
    record.error = error.code.as_deref().map(str::to_string);
    let event = error.sse_event_for(&record.request_id);
    let _ = send_chunk(session, record, event, true).await;
}

/// Books a write that began at `began` as the client's time, and a failed one as
/// the client's departure.
fn written(
    record: &mut RequestRecord,
    began: Instant,
    result: pingora::Result<()>,
) -> Result<(), ClientGone> {
    record.client_wait += began.elapsed();
    result.map_err(|e| {
        log::debug!("client write failed for request {}: {e}", record.request_id);
        record.client_gone = true;
        ClientGone
    })
}
