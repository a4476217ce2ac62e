//! The attempt loop: walk the plan, try each candidate, and either answer the
//! client or fail over — deciding on plain control flow, because the exchange is
//! ours (see `upstream/exchange.rs`).
//!
//! Nothing is written to the client until a try commits: a 2xx whole answer, a
//! stream's first content event, or an error that is the client's own fault. Until
//! then a failed try can still move on to the next candidate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use tokio::time::Instant;

use crate::app::App;
use crate::client_watch::{await_upstream, Raced};
use crate::config::{Config, Model, RetryOn, Target};
use crate::dialect::mock::{self, MockAnswer};
use crate::dialect::{self, Dialect, UpstreamFault};
use crate::downstream::{self, ClientGone};
use crate::errors::ApiError;
use crate::llm_request::LlmRequest;
use crate::record::{Outcome, RequestRecord, TryRecord};
use crate::routing;
use crate::target_state::{Pass, TargetState, Verdict};
use crate::upstream::exchange::{self, Exchange, Failure, Limits};
use crate::upstream::headers;

mod stream;

/// Largest whole (non-streamed) upstream answer accepted.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Largest upstream error body read for its message.
const MAX_ERROR_BYTES: usize = 1024 * 1024;
/// `retry-after` assumed for an upstream 429 that names none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest upstream `retry-after` believed: a larger one (or garbage) would
/// keep a target out of rotation for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How one try ended.
enum TryResult {
    /// The client has its answer (or is gone): stop.
    Answered,
    /// Nothing was written; `error` is what the client gets if no candidate is left.
    Failed { error: ApiError, retryable: bool },
}

/// Where the walk over the candidates stands after one of them.
enum Step {
    /// The client has its answer (or is gone).
    Answered,
    /// The target cannot take this request (nothing was sent): not a try.
    NotSent(ApiError),
    /// A try failed; `go_on` when the retry rule lets the walk continue.
    Failed { error: ApiError, go_on: bool },
}

/// Everything one try needs to know about the request.
struct Attempt<'a> {
    app: &'a App,
    request: &'a LlmRequest,
    target: &'a Target,
    limits: Limits,
    started: Instant,
}

/// One request's walk over its candidates.
struct Walk<'a> {
    app: &'a App,
    request: &'a LlmRequest,
    model: &'a Model,
    /// When `timeouts.total` runs out.
    deadline: Instant,
}

/// Serves `request` for `model`, writing the answer (or the final error).
pub async fn run(
    app: &App,
    session: &mut Session,
    record: &mut RequestRecord,
    request: &LlmRequest,
    config: &Config,
    model: &Model,
) {
    let walk = Walk {
        app,
        request,
        model,
        deadline: Instant::from_std(record.started) + model.timeouts.total,
    };
    let mut failures = Failures::default();
    let mut skipped: Vec<(Arc<Target>, Arc<TargetState>)> = Vec::new();
    let mut tries = 0;
    for target in routing::plan(config, model) {
        if Instant::now() >= walk.deadline {
            failures.not_sent(ApiError::upstream_timeout("total"));
            break;
        }
        if tries >= model.retry.attempts {
            break;
        }
        let state = app.state.targets.get(&target);
        let Some(pass) = state.admit(std::time::Instant::now()) else {
            skipped.push((target, state));
            continue;
        };
        match walk.try_target(session, record, &target, pass).await {
            Step::Answered => return,
            Step::NotSent(error) => failures.not_sent(error),
            Step::Failed { error, go_on } => {
                tries += 1;
                failures.tried(error, record);
                if !go_on {
                    break;
                }
            }
        }
    }
    // Every candidate was skipped: health data can be stale, and a monitoring
    // fault must not become an outage, so the one that failed least recently
    // gets a try anyway.
    if tries == 0 && Instant::now() < walk.deadline {
        if let Some((target, state)) = skipped.iter().min_by_key(|(_, s)| s.last_failure()) {
            log::warn!(
                "request {}: every target of `{}` is unhealthy, open or cooling down; last resort: {}",
                record.request_id,
                request.model,
                target.id
            );
            match walk
                .try_target(
                    session,
                    record,
                    target,
                    state.force(std::time::Instant::now()),
                )
                .await
            {
                Step::Answered => return,
                Step::NotSent(error) => failures.not_sent(error),
                Step::Failed { error, .. } => failures.tried(error, record),
            }
        }
    }
    downstream::send_error(session, record, &failures.into_error()).await;
}

impl Walk<'_> {
    /// Makes one try on `target` and reports what it says about the target.
    async fn try_target(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        target: &Target,
        mut pass: Pass,
    ) -> Step {
        let attempt = Attempt {
            app: self.app,
            request: self.request,
            target,
            limits: Limits::new(&self.model.timeouts, self.deadline),
            started: Instant::now(),
        };
        let before = record.tries.len();
        let result = match dialect::of(&target.provider.kind) {
            None => attempt.mock(session, record).await,
            Some(dialect) => attempt.upstream(session, record, dialect, &mut pass).await,
        };
        if record.tries.len() == before {
            // Nothing was sent, so nothing was learned; a trial pass is given back.
            drop(pass);
            return match result {
                TryResult::Answered => Step::Answered,
                TryResult::Failed { error, .. } => Step::NotSent(error),
            };
        }
        let outcome = record.last_try().and_then(|t| t.outcome);
        let verdict = match (&result, outcome) {
            (_, None) => Verdict::Unknown,
            // The request's own budget ran out: nothing learned about the target.
            (_, Some(Outcome::Timeout)) if Instant::now() >= self.deadline => Verdict::Unknown,
            (TryResult::Answered, Some(Outcome::Success | Outcome::Http4xx)) => Verdict::Up,
            (TryResult::Failed { error, .. }, Some(Outcome::Http429)) => Verdict::Throttled(
                error
                    .retry_after_ms
                    .map_or(DEFAULT_RETRY_AFTER, Duration::from_millis),
            ),
            _ => Verdict::Down,
        };
        log_circuit(
            target,
            pass.report(verdict, &target.provider.circuit_breaker),
        );
        match result {
            TryResult::Answered => Step::Answered,
            TryResult::Failed { error, retryable } => Step::Failed {
                error,
                go_on: retryable && outcome.is_some_and(|o| retries_on(&self.model.retry.on, o)),
            },
        }
    }
}

/// Logs a change of `target`'s circuit (`Some(true)`: it opened).
fn log_circuit(target: &Target, change: Option<bool>) {
    match change {
        Some(true) => log::warn!(
            "circuit of {} opened: no traffic for {:?}, then one trial",
            target.id,
            target.provider.circuit_breaker.recovery_timeout
        ),
        Some(false) => log::info!("circuit of {} closed: the upstream answered", target.id),
        None => {}
    }
}

/// Whether `retry.on` lets a try that ended with `outcome` move on (DESIGN.md §2:
/// a refused credential or model, and a broken answer, count as 5xx).
fn retries_on(on: &RetryOn, outcome: Outcome) -> bool {
    match outcome {
        Outcome::ConnectError => on.connect,
        Outcome::Timeout => on.timeout,
        Outcome::Http429 => on.rate_limited,
        Outcome::Http5xx | Outcome::Http4xx | Outcome::StreamError => on.server_error,
        Outcome::Success => false,
    }
}

/// What the client gets when no try answered: the last failure — unless every
/// try was throttled, then the 429 with the earliest retry-after.
#[derive(Default)]
struct Failures {
    last: Option<ApiError>,
    /// A try failed with something other than a 429.
    not_only_429: bool,
    earliest_429: Option<ApiError>,
}

impl Failures {
    /// A failed try; `record` tells how it ended.
    fn tried(&mut self, error: ApiError, record: &RequestRecord) {
        let throttled = record
            .last_try()
            .is_some_and(|t| t.outcome == Some(Outcome::Http429));
        if !throttled {
            self.not_only_429 = true;
        } else if let Some(wait) = error.retry_after_ms {
            if self
                .earliest_429
                .as_ref()
                .is_none_or(|e| e.retry_after_ms.is_some_and(|w| wait < w))
            {
                self.earliest_429 = Some(error.clone());
            }
        }
        self.last = Some(error);
    }

    /// A candidate that could not take the request: its refusal is the answer
    /// only when no try said more.
    fn not_sent(&mut self, error: ApiError) {
        if self.last.is_none() {
            self.last = Some(error);
        }
    }

    fn into_error(self) -> ApiError {
        match (self.not_only_429, self.earliest_429) {
            (false, Some(earliest)) => earliest,
            _ => self.last.unwrap_or_else(ApiError::internal),
        }
    }
}

impl Attempt<'_> {
    /// Records the try as started, so headers written during it name its provider.
    fn begin(&self, record: &mut RequestRecord) {
        record.tries.push(TryRecord {
            provider: self.target.provider.name.clone(),
            target: self.target.id.clone(),
            outcome: None,
            elapsed: Default::default(),
        });
    }

    /// Records how the try ended (`None`: the client left first).
    fn note(&self, record: &mut RequestRecord, outcome: Option<Outcome>) {
        if let Some(last) = record.tries.last_mut() {
            last.outcome = outcome;
            last.elapsed = self.started.elapsed();
        }
    }

    fn failed(&self, record: &mut RequestRecord, outcome: Outcome, error: ApiError) -> TryResult {
        self.note(record, Some(outcome));
        if let Some(t) = record.last_try() {
            log::warn!(
                "request {}: try on {} ended {} after {:?}",
                record.request_id,
                t.target,
                outcome.as_str(),
                t.elapsed
            );
        }
        TryResult::Failed {
            error,
            retryable: true,
        }
    }

    fn failure(&self, record: &mut RequestRecord, failure: Failure) -> TryResult {
        match failure {
            Failure::Connect(e) => {
                log::warn!("upstream {} connect failed: {e}", self.target.id);
                self.failed(
                    record,
                    Outcome::ConnectError,
                    ApiError::upstream_error("connection failed"),
                )
            }
            Failure::Timeout(which) => {
                self.failed(record, Outcome::Timeout, ApiError::upstream_timeout(which))
            }
            Failure::Stream(e) => {
                log::warn!("upstream {} broke: {e}", self.target.id);
                self.failed(
                    record,
                    Outcome::StreamError,
                    ApiError::upstream_error("invalid or broken response"),
                )
            }
        }
    }

    fn client_left(&self, record: &mut RequestRecord) -> TryResult {
        record.client_gone = true;
        self.note(record, None);
        TryResult::Answered
    }

    /// The drain ran out of time during this try: nothing is learned about the
    /// target, and the client gets `shutting_down` — as an error event if its
    /// stream has begun, as an answer otherwise — instead of a cut connection.
    async fn cut_off(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        streaming: bool,
    ) -> TryResult {
        self.note(record, None);
        let error = ApiError::shutting_down();
        if streaming {
            downstream::fail_stream(session, record, &error).await;
        } else {
            downstream::send_error(session, record, &error).await;
        }
        TryResult::Answered
    }

    async fn mock(&self, session: &mut Session, record: &mut RequestRecord) -> TryResult {
        self.begin(record);
        let answer = match mock::answer(self.request, &self.target.model, &record.request_id) {
            Ok(answer) => answer,
            Err(error) => {
                self.note(record, Some(Outcome::Http4xx));
                downstream::send_error(session, record, &error).await;
                return TryResult::Answered;
            }
        };
        self.note(record, Some(Outcome::Success));
        record.price = self.target.price;
        match answer {
            MockAnswer::Whole { body, usage } => {
                record.usage = Some(usage);
                record.charge_usage();
                let _ = downstream::send_json(session, record, 200, &[], body).await;
            }
            MockAnswer::Stream { events, usage } => {
                record.usage = Some(usage);
                record.charge_usage();
                let _ = self.send_mock_stream(session, record, events).await;
            }
        }
        TryResult::Answered
    }

    async fn send_mock_stream(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        events: Vec<Bytes>,
    ) -> Result<(), ClientGone> {
        downstream::start_stream(session, record, &[]).await?;
        for (i, event) in events.into_iter().enumerate() {
            if i == 1 {
                record.ttft = Some(record.started.elapsed());
            }
            downstream::send_chunk(session, record, event, false).await?;
        }
        downstream::send_chunk(session, record, Bytes::new(), true).await
    }

    async fn upstream(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        dialect: &dyn Dialect,
        pass: &mut Pass,
    ) -> TryResult {
        // A request this target cannot take (say, a field its api-version refuses)
        // is not a try: nothing was sent, so nothing is recorded.
        let encoded = match dialect.encode(self.request, self.target, &record.request_id) {
            Ok(encoded) => encoded,
            Err(error) => {
                return TryResult::Failed {
                    error,
                    retryable: true,
                }
            }
        };
        self.begin(record);
        let Some(base_url) = self.target.provider.kind.upstream_url() else {
            return self.failed(record, Outcome::ConnectError, ApiError::internal());
        };
        let resolve = self.app.state.dns.resolve(&base_url.host, base_url.port);
        let addrs = match tokio::time::timeout(self.limits.connect, resolve).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => return self.failure(record, Failure::Connect(e)),
            Err(_) => return self.failure(record, Failure::Timeout("connect")),
        };
        let open = exchange::open(
            &self.app.connector,
            &addrs,
            base_url,
            &encoded.header,
            &encoded.body,
            self.limits,
        );
        let opened = await_upstream(session, &self.app.drain, open).await;
        record.upstream_wait += self.started.elapsed();
        let exchange = match opened {
            Raced::ClientGone => return self.client_left(record),
            Raced::CutOff => return self.cut_off(session, record, false).await,
            Raced::Done(Err(failure)) => return self.failure(record, failure),
            Raced::Done(Ok(exchange)) => exchange,
        };
        let status = exchange.header().status.as_u16();
        if (200..=299).contains(&status) {
            return if self.request.stream && dialect.is_stream(&exchange.header().headers) {
                self.stream(session, record, dialect, exchange, pass).await
            } else {
                self.whole(session, record, dialect, exchange).await
            };
        }
        let wait = retry_after(exchange.header()).unwrap_or(DEFAULT_RETRY_AFTER);
        let headers = exchange.header().headers.clone();
        let body = self.read_and_release(exchange).await;
        let fault = dialect.classify(status, &headers, &body);
        let upstream_id = ["x-amzn-requestid", "x-request-id", "apim-request-id"]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()));
        let source = match upstream_id {
            Some(id) => format!("HTTP {status} to {} (upstream id {id})", encoded.header.uri),
            None => format!("HTTP {status} to {}", encoded.header.uri),
        };
        self.on_fault(session, record, fault, wait, &source).await
    }

    /// Acts on an upstream failure, whether it came as an HTTP error answer or as
    /// an error event before the stream committed: fail over, or answer the
    /// client's own fault. `source` says where it came from, for the log.
    async fn on_fault(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        fault: UpstreamFault,
        wait: Duration,
        source: &str,
    ) -> TryResult {
        match fault {
            UpstreamFault::QuotaExhausted { retryable } => {
                self.note(record, Some(Outcome::Http429));
                TryResult::Failed {
                    error: ApiError::upstream_quota_exhausted(),
                    retryable,
                }
            }
            UpstreamFault::RateLimited { kind } => {
                let error = ApiError::upstream_rate_limited(kind, wait.as_millis() as u64);
                self.failed(record, Outcome::Http429, error)
            }
            UpstreamFault::AuthRefused { said } => {
                self.log_refusal(record, source, &said);
                let error = ApiError::upstream_auth_failed(&self.target.provider.name);
                self.failed(record, Outcome::Http4xx, error)
            }
            UpstreamFault::ModelNotFound { said } => {
                self.log_refusal(record, source, &said);
                let error = ApiError::upstream_model_not_found(&self.target.provider.name);
                self.failed(record, Outcome::Http4xx, error)
            }
            UpstreamFault::Timeout => self.failed(
                record,
                Outcome::Timeout,
                ApiError::upstream_timeout("the model timed out"),
            ),
            UpstreamFault::Server { detail } => {
                log::warn!(
                    "request {}: {} failed, {source}: {detail}",
                    record.request_id,
                    self.target.id
                );
                self.failed(record, Outcome::Http5xx, ApiError::upstream_error(&detail))
            }
            UpstreamFault::Client(error) => {
                self.note(record, Some(Outcome::Http4xx));
                downstream::send_error(session, record, &error).await;
                TryResult::Answered
            }
        }
    }

    /// The gateway's own configuration is wrong (credential, endpoint, model or
    /// deployment, api-version): the operator needs the upstream's words and the
    /// URL that failed, so they go to the log — unless the words quote a provider
    /// credential (OpenAI's 401 does; AWS's signature errors print the canonical
    /// request, session token included).
    fn log_refusal(&self, record: &RequestRecord, source: &str, said: &str) {
        let quoted = self
            .target
            .provider
            .kind
            .credentials()
            .iter()
            .any(|c| c.quoted_in(said));
        log::warn!(
            "request {}: {} refused the request, {source}: {}",
            record.request_id,
            self.target.id,
            if quoted {
                "(message withheld: it quotes a provider credential)"
            } else {
                said
            }
        );
    }

    /// The rest of an upstream answer (empty when it cannot be read), read to its
    /// end so the connection goes back to the pool.
    async fn read_and_release(&self, mut exchange: Exchange) -> Bytes {
        let body = exchange
            .read_to_end(&self.limits, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        exchange.finish(&self.app.connector).await;
        body
    }

    async fn whole(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        dialect: &dyn Dialect,
        mut exchange: Exchange,
    ) -> TryResult {
        let waited = Instant::now();
        let read = await_upstream(
            session,
            &self.app.drain,
            exchange.read_to_end(&self.limits, MAX_RESPONSE_BYTES),
        )
        .await;
        record.upstream_wait += waited.elapsed();
        let body = match read {
            Raced::ClientGone => return self.client_left(record),
            Raced::CutOff => return self.cut_off(session, record, false).await,
            Raced::Done(Err(failure)) => return self.failure(record, failure),
            Raced::Done(Ok(body)) => body,
        };
        let answer = match dialect
            .translator(self.request, self.target, &record.request_id)
            .whole(body)
        {
            Ok(answer) => answer,
            Err(e) => return self.failure(record, Failure::Stream(e)),
        };
        let status = exchange.header().status.as_u16();
        let extra = headers::allowed(exchange.header());
        exchange.finish(&self.app.connector).await;
        self.note(record, Some(Outcome::Success));
        record.usage = answer.usage;
        record.price = self.target.price;
        record.charge_usage();
        if let Ok(header) = downstream::header(status, record, &extra) {
            let _ = downstream::send_whole(session, record, header, answer.body).await;
        }
        TryResult::Answered
    }
}

/// `retry-after-ms` (milliseconds) or `retry-after` (seconds) of an upstream answer,
/// at most [`MAX_RETRY_AFTER`]; zero, negative (Azure has sent `-1` in its
/// rate-limit headers) or unreadable values count as absent.
fn retry_after(header: &pingora::http::ResponseHeader) -> Option<Duration> {
    let value = |name: &str| {
        header
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let seconds = value("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| value("retry-after"))?;
    Some(Duration::try_from_secs_f64(seconds).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, value: &str) -> pingora::http::ResponseHeader {
        let mut h = pingora::http::ResponseHeader::build(429, None).unwrap();
        h.insert_header(name.to_string(), value).unwrap();
        h
    }

    #[test]
    fn retry_after_is_read_in_either_unit_and_bounded() {
        assert_eq!(
            retry_after(&answer("retry-after-ms", "250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&answer("retry-after", "2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_after(&answer("retry-after", "-1")), None);
        assert_eq!(retry_after(&answer("retry-after", "soon")), None);
        assert_eq!(
            retry_after(&answer("retry-after-ms", "1e23")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&answer("retry-after", "1e9")),
            Some(MAX_RETRY_AFTER)
        );
    }
}
