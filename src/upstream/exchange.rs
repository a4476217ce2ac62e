//! One HTTP exchange with an upstream, driven from `request_filter`.
//!
//! Pingora's proxy loop cannot forward a body larger than 64 KiB that was read
//! before choosing the peer (PINGORA.md §1.4), and LLM bodies are often larger, so
//! every LLM call goes through this module instead: Pingora's `Connector` (its
//! pools, TLS and h2), our own timeouts, and plain control flow for failover.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use tokio::time::Instant;

use super::peer;
use crate::config::{Timeouts, UpstreamUrl};

/// How long an idle upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh connections tried after a pooled one turned out to be closed.
const STALE_CONNECTION_RETRIES: usize = 2;
/// Addresses of one host tried before the try counts as failed.
const MAX_ADDRESSES: usize = 3;

/// Why an upstream try failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No response started: refused, reset, DNS, TLS handshake.
    Connect(String),
    /// A time limit ran out; the text names which.
    Timeout(&'static str),
    /// The response started but broke, or was not valid HTTP.
    Stream(String),
}

/// Per-try time limits as deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    /// When `timeouts.total` runs out for the whole request.
    pub total_deadline: Instant,
}

impl Limits {
    /// Limits of `timeouts` for a request whose total budget ends at `total_deadline`.
    pub fn new(timeouts: &Timeouts, total_deadline: Instant) -> Self {
        Limits {
            connect: timeouts.connect,
            first_byte: timeouts.first_byte,
            idle: timeouts.idle,
            total_deadline,
        }
    }
}

/// Runs `work` for at most `limit`, and never past the total deadline.
async fn within<T>(
    limit: Duration,
    name: &'static str,
    total_deadline: Instant,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let own = Instant::now() + limit;
    let (until, which) = if own <= total_deadline {
        (own, name)
    } else {
        (total_deadline, "total")
    };
    tokio::time::timeout_at(until, work)
        .await
        .unwrap_or(Err(Failure::Timeout(which)))
}

/// An upstream response whose header has arrived.
pub struct Exchange {
    session: HttpSession,
    peer: HttpPeer,
    header: Box<ResponseHeader>,
}

/// Sends `request` and `body` to the first address of `addrs` that answers, and
/// reads the response header.
pub async fn open(
    connector: &Connector,
    addrs: &[SocketAddr],
    url: &UpstreamUrl,
    request: &RequestHeader,
    body: &Bytes,
    limits: Limits,
) -> Result<Exchange, Failure> {
    let mut last = Failure::Connect("no address".into());
    for addr in addrs.iter().take(MAX_ADDRESSES) {
        let peer = peer::for_address(*addr, url, limits.connect);
        match open_on(connector, peer, request, body, limits).await {
            Ok(exchange) => return Ok(exchange),
            Err(Failure::Connect(e)) => last = Failure::Connect(e),
            Err(other) => return Err(other),
        }
    }
    Err(last)
}

async fn open_on(
    connector: &Connector,
    peer: HttpPeer,
    request: &RequestHeader,
    body: &Bytes,
    limits: Limits,
) -> Result<Exchange, Failure> {
    let mut stale_retries = 0;
    loop {
        let (mut session, reused) =
            within(limits.connect, "connect", limits.total_deadline, async {
                connector.get_http_session(&peer).await.map_err(classify)
            })
            .await?;
        session.set_read_timeout(None);
        let sent = within(
            limits.first_byte,
            "first byte",
            limits.total_deadline,
            async { send(&mut session, request, body).await },
        )
        .await;
        match sent {
            Ok(header) => {
                return Ok(Exchange {
                    session,
                    peer,
                    header,
                })
            }
            // A pooled connection the upstream had already closed: not the
            // upstream's failure, try again on a fresh one.
            Err(Failure::Connect(_)) if reused && stale_retries < STALE_CONNECTION_RETRIES => {
                stale_retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn send(
    session: &mut HttpSession,
    request: &RequestHeader,
    body: &Bytes,
) -> Result<Box<ResponseHeader>, Failure> {
    session
        .write_request_header(Box::new(request.clone()))
        .await
        .map_err(classify)?;
    if !body.is_empty() {
        session
            .write_request_body(body.clone(), true)
            .await
            .map_err(classify)?;
    }
    session.finish_request_body().await.map_err(classify)?;
    loop {
        session.read_response_header().await.map_err(classify)?;
        match session.response_header() {
            Some(h) if h.status.is_informational() => continue,
            Some(h) => return Ok(Box::new(h.clone())),
            None => return Err(Failure::Stream("no response header".into())),
        }
    }
}

/// Sorts Pingora's errors into the retry classes of DESIGN.md §2.
fn classify(e: Box<pingora::Error>) -> Failure {
    match e.etype() {
        ErrorType::ConnectTimedout => Failure::Timeout("connect"),
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::SocketError
        | ErrorType::BindError
        | ErrorType::ConnectionClosed
        | ErrorType::ReadError
        | ErrorType::WriteError
        | ErrorType::H2Error
        | ErrorType::H2Downgrade => Failure::Connect(e.to_string()),
        _ => Failure::Stream(e.to_string()),
    }
}

impl Exchange {
    /// The upstream's response header.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// The next body chunk, `None` at the end; waits at most `wait` (and never past
    /// the total deadline).
    pub async fn next_chunk(
        &mut self,
        wait: Duration,
        name: &'static str,
        limits: &Limits,
    ) -> Result<Option<Bytes>, Failure> {
        within(wait, name, limits.total_deadline, async {
            self.session
                .read_response_body()
                .await
                .map_err(|e| Failure::Stream(e.to_string()))
        })
        .await
    }

    /// Reads the rest of the body, up to `max` bytes.
    pub async fn read_to_end(&mut self, limits: &Limits, max: usize) -> Result<Bytes, Failure> {
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk(limits.idle, "idle", limits).await? {
            if body.len() + chunk.len() > max {
                return Err(Failure::Stream(format!("response body over {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Returns the connection to the pool when the response was read to its end,
    /// otherwise closes it (an unread remainder would poison the next request).
    pub async fn finish(mut self, connector: &Connector) {
        if self.session.response_done() {
            connector
                .release_http_session(self.session, &self.peer, Some(POOL_IDLE_TIMEOUT))
                .await;
        } else {
            self.session.shutdown().await;
        }
    }
}
