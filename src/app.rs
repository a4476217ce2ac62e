//! The process-wide handle every hook and service shares.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::State;

/// Config snapshot, long-lived state, metrics and the upstream connector.
pub struct App {
    config: ArcSwap<Config>,
    pub state: State,
    pub metrics: Metrics,
    /// Pingora's client connector: connection pools, TLS (with the server's CA
    /// settings) and HTTP/1 or h2 sessions for every upstream try.
    pub connector: Connector,
}

impl App {
    /// Wires a loaded config to a connector.
    pub fn new(config: Config, connector: Connector) -> Self {
        let metrics = Metrics::new();
        let state = State::new(&metrics);
        state.targets.sync(&config);
        state.limits.sync(&config);
        App {
            config: ArcSwap::from_pointee(config),
            state,
            metrics,
            connector,
        }
    }

    /// The current config snapshot; a request loads it once and keeps it.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}
