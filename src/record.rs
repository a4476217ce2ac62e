//! The one record kept per client request.
//!
//! Every step of the pipeline writes into it; `logging` turns it into metrics and the
//! access-log line. Later features (limits, health) read it there too, so there is
//! one path from "what happened" to every report of it.

use std::time::{Duration, Instant, SystemTime};

use crate::config::Price;
use crate::lifecycle::InFlight;
use crate::limits::Reservation;

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    /// Input and output together: what a token budget is charged.
    pub fn total(self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// How one upstream try ended (`switchyard_upstream_attempts_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ConnectError,
    Timeout,
    Http429,
    Http4xx,
    Http5xx,
    StreamError,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Http429 => "http_429",
            Outcome::Http4xx => "http_4xx",
            Outcome::Http5xx => "http_5xx",
            Outcome::StreamError => "stream_error",
        }
    }
}

/// One upstream try.
#[derive(Debug, Clone)]
pub struct TryRecord {
    pub provider: String,
    pub target: String,
    /// `None` when the client left before the try ended.
    pub outcome: Option<Outcome>,
    pub elapsed: Duration,
}

/// Everything known about one client request.
#[derive(Debug)]
pub struct RequestRecord {
    pub started: Instant,
    pub time: SystemTime,
    pub request_id: String,
    /// The virtual key's name, once authenticated.
    pub key: Option<String>,
    /// The model the client asked for.
    pub model: Option<String>,
    /// Whether `model` is configured (metrics label it `unknown` otherwise).
    pub model_known: bool,
    pub stream: Option<bool>,
    pub tries: Vec<TryRecord>,
    /// The status sent to the client; 0 until a header went out.
    pub status: u16,
    /// The client went away before its answer was complete.
    pub client_gone: bool,
    /// Time to the first content written to the client (streams).
    pub ttft: Option<Duration>,
    /// Time spent waiting for upstreams, across every try.
    pub upstream_wait: Duration,
    /// Time spent blocked on the client's socket: reading its body, writing
    /// the answer to it.
    pub client_wait: Duration,
    pub usage: Option<Usage>,
    /// `usage` was estimated from the streamed text: the upstream reported none
    /// (the stream was cut or abandoned, or the upstream cannot report it).
    pub usage_estimated: bool,
    /// The key's budgets, for a key with limits: reported in every answer's
    /// headers, and settled from `usage` when the request ends.
    pub rate_limit: Option<Reservation>,
    /// Price of the target that answered, for `cost_usd`.
    pub price: Option<Price>,
    /// The error code sent to the client, if the answer is an error.
    pub error: Option<String>,
    /// Holds the request in the drain's count until the record is dropped,
    /// after its log line is queued.
    pub in_flight: Option<InFlight>,
}

impl RequestRecord {
    /// A record for a request that starts now.
    pub fn start() -> Self {
        RequestRecord {
            started: Instant::now(),
            time: SystemTime::now(),
            request_id: String::new(),
            key: None,
            model: None,
            model_known: false,
            stream: None,
            tries: Vec::new(),
            status: 0,
            client_gone: false,
            ttft: None,
            upstream_wait: Duration::ZERO,
            client_wait: Duration::ZERO,
            usage: None,
            usage_estimated: false,
            rate_limit: None,
            price: None,
            error: None,
            in_flight: None,
        }
    }

    /// The last try, whose provider and target label the request.
    pub fn last_try(&self) -> Option<&TryRecord> {
        self.tries.last()
    }

    /// Time spent in the gateway itself so far: elapsed minus the waits on
    /// upstreams and on the client, which a direct call would have had too.
    pub fn overhead(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(self.upstream_wait + self.client_wait)
    }

    /// The status for metrics and the log: `499` when the client left first.
    pub fn final_status(&self) -> u16 {
        if self.client_gone {
            499
        } else {
            self.status
        }
    }

    /// Corrects the key's token reservation to `usage`, once it is known; before
    /// a whole answer's header, so its `remaining` counts the real usage.
    pub fn charge_usage(&mut self) {
        if let (Some(reservation), Some(usage)) = (&mut self.rate_limit, self.usage) {
            reservation.settle(Some(usage.total()));
        }
    }

    /// Settles the key's token reservation when the request is over: the usage
    /// when known; the estimate for an answer whose usage is unknown; nothing
    /// for a request that got no answer (refused, failed, or left before it).
    pub fn settle_limits(&mut self) {
        self.charge_usage();
        let answered = (200..300).contains(&self.final_status());
        if let Some(reservation) = &mut self.rate_limit {
            // A no-op once `charge_usage` settled it.
            reservation.settle(if answered { None } else { Some(0) });
        }
    }

    /// USD cost of the usage at the answering target's price.
    pub fn cost_usd(&self) -> Option<f64> {
        let usage = self.usage?;
        Some(self.price?.cost(usage.input_tokens, usage.output_tokens))
    }
}
