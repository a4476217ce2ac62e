//! The process-wide handle every hook and service shares.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::connectors::http::Connector;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::lifecycle::{Bound, Drain};
use crate::metrics::Metrics;
use crate::state::State;

/// Config snapshot, long-lived state, metrics, the access log and the upstream
/// connector.
pub struct App {
    config: ArcSwap<Config>,
    pub state: State,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// The in-flight count and phase that shutdown and upgrades drain.
    pub drain: Arc<Drain>,
    /// The listen addresses and Pingora settings in force since start-up.
    pub bound: Bound,
    /// Pingora's client connector: connection pools, TLS (with the server's CA
    /// settings) and HTTP/1 or h2 sessions for every upstream try.
    pub connector: Connector,
}

impl App {
    /// Wires a loaded config to a connector, and starts the access-log writer.
    pub fn new(config: Config, connector: Connector) -> std::io::Result<Self> {
        let metrics = Metrics::new();
        let state = State::new(&metrics);
        let access_log = AccessLog::to_stdout(metrics.access_log_dropped.clone())?;
        let app = App {
            bound: Bound::of(&config),
            config: ArcSwap::from_pointee(config),
            state,
            metrics,
            access_log,
            drain: Arc::default(),
            connector,
        };
        app.sync_state(&app.config());
        Ok(app)
    }

    /// Makes `config` the snapshot new requests load. The long-lived state is
    /// synced first (entries for new keys and targets, resized limits, gone
    /// ones dropped), so the first request on the new snapshot finds its state.
    pub fn install(&self, config: Config) {
        self.sync_state(&config);
        self.config.store(Arc::new(config));
    }

    fn sync_state(&self, config: &Config) {
        self.state.targets.sync(config);
        self.state.limits.sync(config);
        self.access_log.sync(config);
    }

    /// The current config snapshot; a request loads it once and keeps it.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}
