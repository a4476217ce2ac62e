//! Every target's learned state, keyed by target id, beside the swappable config.
//!
//! A reload builds new `Target`s; their state is found again here under the same
//! id, so health, circuits and cooldowns carry over — unless the target's
//! fingerprint (provider, URL, upstream model) changed, in which case what was
//! learned is about another upstream and starts afresh. `sync` also drops the
//! state (and the gauge series) of targets no longer configured, so memory stays
//! bounded by the config.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::IntGaugeVec;

use crate::config::{Config, Target};
use crate::target_state::TargetState;

/// The state of every configured target.
pub struct Targets {
    states: RwLock<HashMap<String, Arc<TargetState>>>,
    /// `switchyard_upstream_healthy{provider,target}`.
    healthy: IntGaugeVec,
    /// `switchyard_circuit_open{provider,target}`.
    circuit_open: IntGaugeVec,
}

impl Targets {
    /// An empty registry that keeps these gauges in step with the state.
    pub fn new(healthy: IntGaugeVec, circuit_open: IntGaugeVec) -> Self {
        Targets {
            states: RwLock::default(),
            healthy,
            circuit_open,
        }
    }

    /// The state of `target`, created (healthy, closed) on first use.
    pub fn get(&self, target: &Target) -> Arc<TargetState> {
        {
            let states = self.states.read().unwrap_or_else(|e| e.into_inner());
            if let Some(state) = states.get(&target.id) {
                if state.fingerprint == target.fingerprint {
                    return state.clone();
                }
            }
        }
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        match states.get(&target.id) {
            Some(state) if state.fingerprint == target.fingerprint => state.clone(),
            _ => {
                let labels = [target.provider.name.as_str(), target.id.as_str()];
                let state = Arc::new(TargetState::new(
                    target.fingerprint.clone(),
                    self.healthy.with_label_values(&labels),
                    self.circuit_open.with_label_values(&labels),
                ));
                states.insert(target.id.clone(), state.clone());
                state
            }
        }
    }

    /// Makes the registry match `config`: state for every target (so the gauges
    /// exist from start-up on), none for targets it no longer has.
    pub fn sync(&self, config: &Config) {
        let configured: HashMap<&str, &Target> = config
            .models
            .values()
            .flat_map(|m| m.targets.iter())
            .map(|t| (t.id.as_str(), t.as_ref()))
            .collect();
        for target in configured.values() {
            self.get(target);
        }
        let mut states = self.states.write().unwrap_or_else(|e| e.into_inner());
        states.retain(|id, _| configured.contains_key(id.as_str()));
        drop(states);
        self.drop_stale_series(&configured);
    }

    /// Removes gauge series whose (provider, target) pair is no longer configured.
    fn drop_stale_series(&self, configured: &HashMap<&str, &Target>) {
        use prometheus::core::Collector;
        for family in self.healthy.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let (provider, target) = (label("provider"), label("target"));
                let current = configured
                    .get(target.as_str())
                    .is_some_and(|t| t.provider.name == provider);
                if !current {
                    let labels = [provider.as_str(), target.as_str()];
                    let _ = self.healthy.remove_label_values(&labels);
                    let _ = self.circuit_open.remove_label_values(&labels);
                }
            }
        }
    }
}
