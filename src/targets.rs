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

use prometheus::{IntGauge, IntGaugeVec};

use crate::config::{Config, Target};
use crate::target_state::TargetState;

/// The state of every configured target.
pub struct Targets {
    entries: RwLock<HashMap<String, Entry>>,
    /// `switchyard_upstream_healthy{provider,target}`.
    healthy: IntGaugeVec,
    /// `switchyard_circuit_open{provider,target}`.
    circuit_open: IntGaugeVec,
    /// A gauge registered nowhere, for the state of a target that is gone.
    unreported: IntGauge,
}

/// One target id's state, with what it was learned about.
struct Entry {
    /// The target's fingerprint when the state was created (see `Target`).
    fingerprint: String,
    /// The `provider` label of its gauge series.
    provider: String,
    state: Arc<TargetState>,
}

impl Targets {
    /// An empty registry that keeps these gauges in step with the state.
    pub fn new(healthy: IntGaugeVec, circuit_open: IntGaugeVec) -> Self {
        Targets {
            entries: RwLock::default(),
            healthy,
            circuit_open,
            unreported: IntGauge::new("unreported", "state of a target that is gone")
                .expect("a constant, valid gauge definition"),
        }
    }

    /// The state of `target`. A target of the live config always has one
    /// (`sync` made it). A request still on an older snapshot may ask for a
    /// target that a reload removed or moved to another upstream: it gets a
    /// fresh state of its own, kept nowhere, so it neither brings back the
    /// gone target's gauge series nor resets the live target's state.
    pub fn get(&self, target: &Target) -> Arc<TargetState> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(&target.id) {
            Some(entry) if entry.fingerprint == target.fingerprint => entry.state.clone(),
            _ => Arc::new(TargetState::new(
                self.unreported.clone(),
                self.unreported.clone(),
            )),
        }
    }

    /// The state of `target`, created (healthy, closed) if it has none or its
    /// fingerprint changed.
    fn install(&self, target: &Target) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(&target.id) {
            if entry.fingerprint == target.fingerprint {
                return;
            }
            // Another upstream under the same id: what was learned is not about it.
            if entry.provider != target.provider.name {
                self.drop_series(&entry.provider, &target.id);
            }
        }
        let labels = [target.provider.name.as_str(), target.id.as_str()];
        let state = Arc::new(TargetState::new(
            self.healthy.with_label_values(&labels),
            self.circuit_open.with_label_values(&labels),
        ));
        let entry = Entry {
            fingerprint: target.fingerprint.clone(),
            provider: target.provider.name.clone(),
            state,
        };
        entries.insert(target.id.clone(), entry);
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
            self.install(target);
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|id, entry| {
            let kept = configured.contains_key(id.as_str());
            if !kept {
                self.drop_series(&entry.provider, id);
            }
            kept
        });
    }

    /// Removes the gauge series of a target that is gone.
    fn drop_series(&self, provider: &str, id: &str) {
        let labels = [provider, id];
        let _ = self.healthy.remove_label_values(&labels);
        let _ = self.circuit_open.remove_label_values(&labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use prometheus::core::Collector;

    fn config(second: &str) -> Config {
        let text = format!(
            "keys: [{{ name: app, key: sk-app }}]\nproviders:\n  a: {{ type: mock }}\n  b: {{ type: mock }}\nmodels:\n  m:\n    targets:\n      - {{ provider: a, model: x }}\n{second}"
        );
        parse(&text, "t.yaml").unwrap()
    }

    fn series(vec: &IntGaugeVec) -> Vec<String> {
        let mut out: Vec<String> = vec.collect()[0]
            .get_metric()
            .iter()
            .map(|m| {
                let labels: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
                labels.join("|")
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn unchanged_targets_keep_their_state_and_gone_ones_lose_their_series() {
        let healthy =
            IntGaugeVec::new(prometheus::Opts::new("h", "h"), &["provider", "target"]).unwrap();
        let circuit =
            IntGaugeVec::new(prometheus::Opts::new("c", "c"), &["provider", "target"]).unwrap();
        let targets = Targets::new(healthy.clone(), circuit.clone());
        let first = config(
            "      - { provider: b, model: y, name: second }\n      - { provider: b, model: z }\n",
        );
        targets.sync(&first);
        assert_eq!(series(&healthy), ["a|a/x", "b|b/z", "b|second"]);
        let kept = targets.get(&first.models["m"].targets[0]);
        let moved = targets.get(&first.models["m"].targets[1]);

        // `second` now names another upstream on another provider; `b/z` is gone.
        let next = config("      - { provider: a, model: y, name: second }\n");
        targets.sync(&next);
        assert_eq!(series(&healthy), ["a|a/x", "a|second"]);
        assert_eq!(series(&circuit), ["a|a/x", "a|second"]);
        assert!(Arc::ptr_eq(
            &kept,
            &targets.get(&next.models["m"].targets[0])
        ));
        assert!(!Arc::ptr_eq(
            &moved,
            &targets.get(&next.models["m"].targets[1])
        ));

        // A request still on the first snapshot asks for what the reload
        // removed or moved: no series comes back, the live state is kept.
        let live = targets.get(&next.models["m"].targets[1]);
        let stale = targets.get(&first.models["m"].targets[2]);
        assert!(!Arc::ptr_eq(
            &stale,
            &targets.get(&first.models["m"].targets[2])
        ));
        targets.get(&first.models["m"].targets[1]);
        assert_eq!(series(&healthy), ["a|a/x", "a|second"]);
        assert!(Arc::ptr_eq(
            &live,
            &targets.get(&next.models["m"].targets[1])
        ));
    }
}
