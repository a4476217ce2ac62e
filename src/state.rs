//! State that outlives a config snapshot.
//!
//! A reload swaps the config but keeps this, keyed by stable ids (host names,
//! target ids, key names), so learned facts survive a reload.

use crate::dns::Resolver;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::readiness::ApiListener;
use crate::targets::Targets;

/// Process-wide state beside the swappable config.
pub struct State {
    pub dns: Resolver,
    /// Health, circuit and cooldown of every target.
    pub targets: Targets,
    /// Every key's rate-limit budgets.
    pub limits: Limits,
    /// Whether the API port has been seen accepting, for `/readyz`.
    pub api_listener: ApiListener,
}

impl State {
    /// Empty state whose target gauges and limit counters are `metrics`' own.
    pub fn new(metrics: &Metrics) -> Self {
        State {
            dns: Resolver::default(),
            targets: Targets::new(
                metrics.upstream_healthy.clone(),
                metrics.circuit_open.clone(),
            ),
            limits: Limits::new(metrics.rate_limited.clone()),
            api_listener: ApiListener::default(),
        }
    }
}
