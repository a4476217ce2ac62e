//! The Prometheus registry and the request metrics fed from the request record.
//!
//! Labels come only from config names (or `unknown` / `none`), so cardinality is
//! bounded whatever clients send.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::record::RequestRecord;

/// Latency buckets from 1 ms to 10 min: LLM answers span that whole range.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];
/// Gateway overhead buckets from 10 µs to 100 ms.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_attempts: IntCounterVec,
    failovers: IntCounterVec,
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
}

impl Metrics {
    /// Registers every metric once at start-up.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_requests_total",
                "Client requests by answer status.",
            ),
            &["model", "provider", "status"],
        )
        .expect("valid metric definition");
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "switchyard_upstream_attempts_total",
                "Upstream tries by how they ended.",
            ),
            &["provider", "outcome"],
        )
        .expect("valid metric definition");
        let failovers = IntCounterVec::new(
            Opts::new(
                "switchyard_failovers_total",
                "Switches from one upstream target to another within a request.",
            ),
            &["model"],
        )
        .expect("valid metric definition");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "switchyard_rate_limited_total",
                "Requests refused with 429 by their key's own limits.",
            ),
            &["key"],
        )
        .expect("valid metric definition");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "switchyard_upstream_healthy",
                "1 while a target passes its active health checks (or has none).",
            ),
            &["provider", "target"],
        )
        .expect("valid metric definition");
        let circuit_open = IntGaugeVec::new(
            Opts::new(
                "switchyard_circuit_open",
                "1 while a target's circuit breaker holds traffic back.",
            ),
            &["provider", "target"],
        )
        .expect("valid metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_request_duration_seconds",
                "Whole client request duration.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "provider"],
        )
        .expect("valid metric definition");
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_time_to_first_token_seconds",
                "Time to the first content event of a stream.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "provider"],
        )
        .expect("valid metric definition");
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_overhead_seconds",
                "Time spent in the gateway itself, upstream waits excluded.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )
        .expect("valid metric definition");
        let config_generation = IntGauge::new(
            "switchyard_config_generation",
            "1 at start, +1 per successful reload.",
        )
        .expect("valid metric definition");
        config_generation.set(1);
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_attempts.clone()),
            Box::new(failovers.clone()),
            Box::new(rate_limited.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(circuit_open.clone()),
            Box::new(duration.clone()),
            Box::new(ttft.clone()),
            Box::new(overhead.clone()),
            Box::new(config_generation.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            upstream_attempts,
            failovers,
            rate_limited,
            upstream_healthy,
            circuit_open,
            duration,
            ttft,
            overhead,
            config_generation,
        }
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
