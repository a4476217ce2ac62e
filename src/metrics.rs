//! The Prometheus registry and the request metrics fed from the request record.
//!
//! Labels come only from config names (or `unknown` / `none`), so cardinality is
//! bounded whatever clients send.

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::record::RequestRecord;

/// Latency buckets from 1 ms to 10 min: LLM answers span that whole range.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];
/// Gateway overhead buckets from 10 µs to 100 ms: the gateway's own share of a
/// request is tens of microseconds when all is well.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_attempts: IntCounterVec,
    failovers: IntCounterVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    /// Counted by the key limiters (`limits/`), which own the series.
    pub rate_limited: IntCounterVec,
    /// Set by the target state (`targets.rs`), which owns the series.
    pub upstream_healthy: IntGaugeVec,
    /// Set by the target state, like `upstream_healthy`.
    pub circuit_open: IntGaugeVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    overhead: Histogram,
    config_generation: IntGauge,
    /// Counted by the config reload, `result` `success` or `error`.
    config_reloads: IntCounterVec,
    /// Counted by the access-log writer when its queue is full.
    pub access_log_dropped: IntCounter,
}

/// Registers `collector` in `registry` and hands it back. The definitions are
/// constants of this file, so a failure is a programming error caught by any test.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    let collector = collector.expect("valid metric definition");
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// Registers every metric once at start-up.
    pub fn new() -> Self {
        let r = Registry::new();
        let metrics = Metrics {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_requests_total",
                        "Client requests by answer status.",
                    ),
                    &["model", "provider", "status"],
                ),
            ),
            upstream_attempts: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_upstream_attempts_total",
                        "Upstream tries by how they ended.",
                    ),
                    &["provider", "outcome"],
                ),
            ),
            failovers: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_failovers_total",
                        "Switches from one upstream target to another within a request.",
                    ),
                    &["model"],
                ),
            ),
            tokens: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_tokens_total",
                        "Tokens used, as the upstream reported them (or estimated for streams it cut short).",
                    ),
                    &["model", "provider", "kind"],
                ),
            ),
            cost: register(
                &r,
                CounterVec::new(
                    Opts::new(
                        "switchyard_cost_usd_total",
                        "USD spent at the answering targets' configured prices.",
                    ),
                    &["model", "provider"],
                ),
            ),
            rate_limited: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_rate_limited_total",
                        "Requests refused with 429 by their key's own limits.",
                    ),
                    &["key"],
                ),
            ),
            upstream_healthy: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchyard_upstream_healthy",
                        "1 while a target passes its active health checks (or has none).",
                    ),
                    &["provider", "target"],
                ),
            ),
            circuit_open: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchyard_circuit_open",
                        "1 while a target's circuit breaker holds traffic back.",
                    ),
                    &["provider", "target"],
                ),
            ),
            duration: register(
                &r,
                HistogramVec::new(
                    histogram_opts(
                        "switchyard_request_duration_seconds",
                        "Whole client request duration.",
                        LATENCY_BUCKETS,
                    ),
                    &["model", "provider"],
                ),
            ),
            ttft: register(
                &r,
                HistogramVec::new(
                    histogram_opts(
                        "switchyard_time_to_first_token_seconds",
                        "Time to the first content event of a stream.",
                        LATENCY_BUCKETS,
                    ),
                    &["model", "provider"],
                ),
            ),
            overhead: register(
                &r,
                Histogram::with_opts(histogram_opts(
                    "switchyard_overhead_seconds",
                    "Time spent in the gateway itself: waits on upstreams and on the client's socket excluded.",
                    OVERHEAD_BUCKETS,
                )),
            ),
            config_generation: register(
                &r,
                IntGauge::new(
                    "switchyard_config_generation",
                    "1 at start, +1 per successful reload.",
                ),
            ),
            config_reloads: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "switchyard_config_reloads_total",
                        "Config reloads by result: applied (success) or rejected (error).",
                    ),
                    &["result"],
                ),
            ),
            access_log_dropped: register(
                &r,
                IntCounter::new(
                    "switchyard_access_log_dropped_total",
                    "Access-log lines dropped because the writer fell behind.",
                ),
            ),
            registry: r,
        };
        metrics.config_generation.set(1);
        // Both results exist from start-up, so an alert on errors has a series.
        for result in ["success", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        metrics
    }

    /// Counts one finished request.
    pub fn observe(&self, record: &RequestRecord) {
        let model = match (&record.model, record.model_known) {
            (Some(m), true) => m.as_str(),
            _ => "unknown",
        };
        let provider = record.last_try().map_or("none", |t| t.provider.as_str());
        let status = record.final_status().to_string();
        self.requests
            .with_label_values(&[model, provider, &status])
            .inc();
        self.duration
            .with_label_values(&[model, provider])
            .observe(record.started.elapsed().as_secs_f64());
        if let Some(ttft) = record.ttft {
            self.ttft
                .with_label_values(&[model, provider])
                .observe(ttft.as_secs_f64());
        }
        self.overhead.observe(record.overhead().as_secs_f64());
        if let Some(usage) = record.usage {
            self.tokens
                .with_label_values(&[model, provider, "input"])
                .inc_by(usage.input_tokens);
            self.tokens
                .with_label_values(&[model, provider, "output"])
                .inc_by(usage.output_tokens);
        }
        if let Some(cost) = record.cost_usd() {
            self.cost.with_label_values(&[model, provider]).inc_by(cost);
        }
        if record.tries.len() > 1 {
            self.failovers
                .with_label_values(&[model])
                .inc_by(record.tries.len() as u64 - 1);
        }
        for t in &record.tries {
            if let Some(outcome) = t.outcome {
                self.upstream_attempts
                    .with_label_values(&[t.provider.as_str(), outcome.as_str()])
                    .inc();
            }
        }
    }

    /// The current config generation (1 at start).
    pub fn config_generation(&self) -> i64 {
        self.config_generation.get()
    }

    /// Counts a reload; a successful one starts the next generation, which it
    /// returns.
    pub fn config_reloaded(&self, success: bool) -> i64 {
        let result = if success { "success" } else { "error" };
        self.config_reloads.with_label_values(&[result]).inc();
        if success {
            self.config_generation.inc();
        }
        self.config_generation.get()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
