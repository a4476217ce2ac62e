//! Relaying a 2xx upstream stream to the client, event by event.
//!
//! Content-free events (role announcements, empty filter chunks) are held back
//! until the stream commits, so an upstream error that arrives before any
//! content can still fail over; after content, a stall or a break ends the
//! client's stream with an error event.

use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use tokio::time::Instant;

use super::{log_circuit, Attempt, TryResult, DEFAULT_RETRY_AFTER};
use crate::client_watch::{await_upstream, Raced};
use crate::dialect::{ClientEvent, Dialect, ResponseTranslator};
use crate::downstream::{self, ClientGone};
use crate::errors::ApiError;
use crate::limits;
use crate::record::{Outcome, RequestRecord, Usage};
use crate::target_state::Pass;
use crate::upstream::exchange::{Exchange, Failure};
use crate::upstream::headers;

/// Content-free stream events held back before committing anyway.
const MAX_HELD_EVENTS: usize = 32;
/// How long the upstream body may take to end after its `[DONE]`.
const DRAIN_AFTER_DONE: Duration = Duration::from_secs(1);

impl Attempt<'_> {
    pub(super) async fn stream(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        dialect: &dyn Dialect,
        exchange: Exchange,
        pass: &mut Pass,
    ) -> TryResult {
        let mut translator = dialect.translator(self.request, self.target, &record.request_id);
        let result = self
            .relay(session, record, translator.as_mut(), exchange, pass)
            .await;
        // A stream that reached the client but ended early (cut, abandoned)
        // keeps the usage the upstream already reported; without any (or from
        // an upstream that cannot report it) it is charged for what was
        // generated, estimated from the streamed text.
        let committed = record.status == 200;
        if committed && record.usage.is_none() {
            record.usage = translator.usage();
            if record.usage.is_none() {
                record.usage = Some(Usage {
                    input_tokens: limits::prompt_tokens(self.request),
                    output_tokens: limits::tokens_in(translator.output_chars()),
                });
                record.usage_estimated = true;
            }
            record.price = self.target.price;
        }
        result
    }

    /// Relays one 2xx stream to the client through `translator`, holding back
    /// content-free events until the stream commits.
    async fn relay(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        translator: &mut dyn ResponseTranslator,
        mut exchange: Exchange,
        pass: &mut Pass,
    ) -> TryResult {
        let extra = headers::allowed(exchange.header());
        let mut held: Vec<ClientEvent> = Vec::new();
        let mut events: Vec<ClientEvent> = Vec::new();
        let mut committed = false;
        let mut seen_event = false;
        loop {
            // `first_byte` runs from the try's start to the first event, header
            // included; `idle` is the longest gap between events after that.
            let (wait, name) = if seen_event {
                (self.limits.idle, "idle")
            } else {
                let spent = self.started.elapsed();
                (self.limits.first_byte.saturating_sub(spent), "first byte")
            };
            let waited = Instant::now();
            let next = await_upstream(
                session,
                &self.app.drain,
                exchange.next_chunk(wait, name, &self.limits),
            )
            .await;
            record.upstream_wait += waited.elapsed();
            let chunk = match next {
                Raced::ClientGone => return self.client_left(record),
                Raced::CutOff => return self.cut_off(session, record, committed).await,
                // After content, a stall or a break ends the stream with an
                // error event, and counts against the target.
                Raced::Done(Err(failure)) if committed => {
                    let (outcome, error) = match failure {
                        Failure::Timeout(which) => {
                            (Outcome::Timeout, ApiError::upstream_timeout(which))
                        }
                        _ => (
                            Outcome::StreamError,
                            ApiError::upstream_error("the stream broke"),
                        ),
                    };
                    return self.broken_stream(session, record, outcome, &error).await;
                }
                Raced::Done(Err(failure)) => return self.failure(record, failure),
                Raced::Done(Ok(chunk)) => chunk,
            };
            let translated = match &chunk {
                Some(bytes) => translator.feed(bytes, &mut events),
                None => translator.finish(&mut events),
            };
            seen_event |= !events.is_empty();
            let mut answered = false;
            // What this upstream read produced goes to the client in one write.
            let mut outgoing: Vec<ClientEvent> = Vec::new();
            for mut event in events.drain(..) {
                // An upstream error before anything was written (a Bedrock
                // exception frame right after `messageStart`) is handled like
                // the same error as an HTTP answer: fail over, or a plain error.
                if let (false, Some(fault)) = (committed, event.fault.take()) {
                    return self
                        .on_fault(session, record, fault, DEFAULT_RETRY_AFTER, "in the stream")
                        .await;
                }
                let error_event = event.error;
                answered |= event.done;
                if committed {
                    outgoing.push(event);
                } else {
                    let decisive = event.content || event.error || event.done;
                    held.push(event);
                    if decisive || held.len() >= MAX_HELD_EVENTS {
                        committed = true;
                        // The upstream is answering: a half-open trial closes the
                        // circuit now, not when a long stream ends.
                        log_circuit(self.target, pass.vouch());
                        if downstream::start_stream(session, record, &extra)
                            .await
                            .is_err()
                        {
                            return self.client_left(record);
                        }
                        outgoing.append(&mut held);
                    }
                }
                if error_event {
                    let _ = self.send_events(session, record, &mut outgoing).await;
                    self.note(record, Some(Outcome::StreamError));
                    record.error = Some("upstream_stream_error".into());
                    let _ = downstream::send_chunk(session, record, Bytes::new(), true).await;
                    return TryResult::Answered;
                }
            }
            if self
                .send_events(session, record, &mut outgoing)
                .await
                .is_err()
            {
                return self.client_left(record);
            }
            // After `[DONE]` the client has its whole answer; what the upstream
            // sends later cannot change it.
            if let (Err(e), false) = (translated, answered) {
                log::warn!("upstream {} stream: {e}", self.target.id);
                if committed {
                    return self
                        .broken_stream(
                            session,
                            record,
                            Outcome::StreamError,
                            &ApiError::upstream_error("the stream broke"),
                        )
                        .await;
                }
                return self.failure(record, Failure::Stream(e));
            }
            if answered || chunk.is_none() {
                if !committed
                    && (downstream::start_stream(session, record, &extra)
                        .await
                        .is_err()
                        || self.send_events(session, record, &mut held).await.is_err())
                {
                    return self.client_left(record);
                }
                self.note(record, Some(Outcome::Success));
                record.usage = translator.usage();
                record.price = self.target.price;
                downstream::end_whole_stream(session).await;
                // Once `[DONE]` is out the client may hang up at once (SDKs do),
                // so the upstream's end is awaited without watching the client,
                // and briefly: it only decides whether the connection is kept —
                // not worth delaying a draining process's exit for.
                if !self.app.drain.is_draining() {
                    let _ = tokio::time::timeout(DRAIN_AFTER_DONE, self.read_and_release(exchange))
                        .await;
                }
                return TryResult::Answered;
            }
        }
    }

    /// Writes `events` (emptied) as one chunk, noting the time to first token.
    async fn send_events(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientGone> {
        let bytes = match events.len() {
            0 => return Ok(()),
            1 => events[0].bytes.clone(),
            _ => Bytes::from(
                events
                    .iter()
                    .map(|e| &e.bytes[..])
                    .collect::<Vec<_>>()
                    .concat(),
            ),
        };
        if events.iter().any(|e| e.content) && record.ttft.is_none() {
            record.ttft = Some(record.started.elapsed());
        }
        events.clear();
        downstream::send_chunk(session, record, bytes, false).await
    }

    async fn broken_stream(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        outcome: Outcome,
        error: &ApiError,
    ) -> TryResult {
        self.note(record, Some(outcome));
        log::warn!(
            "request {}: stream from {} ended early: {}",
            record.request_id,
            self.target.id,
            error.message
        );
        downstream::fail_stream(session, record, error).await;
        TryResult::Answered
    }
}
