//! State that outlives a config snapshot.
//!
//! A reload swaps the config but keeps this, keyed by stable ids (host names now;
//! target ids and key names as health, circuits and limits arrive), so learned
//! facts survive a reload.

use crate::dns::Resolver;
use crate::readiness::ApiListener;

/// Process-wide state beside the swappable config.
#[derive(Default)]
pub struct State {
    pub dns: Resolver,
    /// Whether the API port has been seen accepting, for `/readyz`.
    pub api_listener: ApiListener,
}
