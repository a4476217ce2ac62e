//! Every key's limiter, keyed by key name, beside the swappable config.
//!
//! A reload builds new `VirtualKey`s; their limiter is found again here by name,
//! so budgets carry over — and `sync`, run on each new config before it serves,
//! resizes the limiter of a key whose limits changed, in place, so the new limit
//! applies to the very next request.
//! Only configured keys with limits have a limiter: a request with an unknown key
//! is refused before it gets here, so memory stays bounded by the config.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::IntCounterVec;

use super::key_limiter::KeyLimiter;
use crate::config::{Config, VirtualKey};

/// The limiter of every key with limits.
pub struct Limits {
    by_key: RwLock<HashMap<String, Arc<KeyLimiter>>>,
    /// `switchyard_rate_limited_total{key}`.
    refused: IntCounterVec,
}

impl Limits {
    /// An empty registry counting refusals in `refused`.
    pub fn new(refused: IntCounterVec) -> Self {
        Limits {
            by_key: RwLock::default(),
            refused,
        }
    }

    /// The limiter of `key`; `None` when it has no limits.
    pub fn get(&self, key: &VirtualKey) -> Option<Arc<KeyLimiter>> {
        let settings = key.rate_limit?;
        {
            let by_key = self.by_key.read().unwrap_or_else(|e| e.into_inner());
            if let Some(limiter) = by_key.get(&key.name) {
                return Some(limiter.clone());
            }
        }
        let mut by_key = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        let limiter = by_key.entry(key.name.clone()).or_insert_with(|| {
            Arc::new(KeyLimiter::new(
                &key.name,
                settings,
                self.refused.with_label_values(&[key.name.as_str()]),
            ))
        });
        Some(limiter.clone())
    }

    /// Makes the registry match `config`, before it serves: a limiter (and a zero
    /// series) for every key with limits, resized where its limits changed, and
    /// none for keys without limits or gone. Only this resizes, so a request still
    /// on the previous snapshot cannot turn a changed limit back.
    pub fn sync(&self, config: &Config) {
        for key in &config.keys {
            if let (Some(limiter), Some(settings)) = (self.get(key), key.rate_limit) {
                if limiter.settings() != settings {
                    limiter.resize(settings);
                }
            }
        }
        let mut by_key = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        by_key.retain(|name, _| {
            let kept = config
                .keys
                .iter()
                .any(|k| k.name == *name && k.rate_limit.is_some());
            if !kept {
                // The series may already be gone; nothing else to do then.
                let _ = self.refused.remove_label_values(&[name.as_str()]);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;
    use prometheus::Opts;

    use super::*;

    /// A config with these `keys` lines and a mock model.
    fn config(keys: &str) -> Config {
        let text = format!(
            "keys:\n{keys}providers:\n  demo: {{ type: mock }}\nmodels:\n  demo:\n    targets: [{{ provider: demo, model: m }}]\n"
        );
        crate::config::parse(&text, "test.yaml").unwrap()
    }

    #[test]
    fn budgets_carry_over_and_a_changed_limit_applies_at_once() {
        let refused = IntCounterVec::new(Opts::new("r", "t"), &["key"]).unwrap();
        let limits = Limits::new(refused.clone());
        let ten = config("  - { name: app, key: sk-a, rate_limit: { requests_per_minute: 10 } }\n  - { name: free, key: sk-f }\n");
        limits.sync(&ten);
        assert!(limits.get(&ten.keys[1]).is_none());
        let before_reload = limits.get(&ten.keys[0]).unwrap();
        before_reload.admit(0).unwrap();
        let remaining = |key: &VirtualKey| {
            limits
                .get(key)
                .unwrap()
                .levels()
                .requests
                .unwrap()
                .remaining
        };
        assert_eq!(remaining(&ten.keys[0]), 9);
        // 10 → 20 a minute with a tenth used: still a tenth used, on the same
        // limiter the requests admitted before the change settle on.
        let twenty =
            config("  - { name: app, key: sk-a, rate_limit: { requests_per_minute: 20 } }\n");
        limits.sync(&twenty);
        assert_eq!(remaining(&twenty.keys[0]), 18);
        assert!(Arc::ptr_eq(
            &before_reload,
            &limits.get(&twenty.keys[0]).unwrap()
        ));
        // A request still on the old snapshot does not turn the limit back.
        assert_eq!(remaining(&ten.keys[0]), 18);
        assert_eq!(refused.with_label_values(&["app"]).get(), 0);
    }

    #[test]
    fn sync_keeps_only_keys_with_limits_and_their_series() {
        let refused = IntCounterVec::new(Opts::new("r", "t"), &["key"]).unwrap();
        let limits = Limits::new(refused.clone());
        limits.sync(&config(
            "  - { name: a, key: sk-a, rate_limit: { requests_per_minute: 5 } }\n  - { name: b, key: sk-b, rate_limit: { requests_per_minute: 5 } }\n  - { name: c, key: sk-c }\n",
        ));
        let series = |refused: &IntCounterVec| {
            let mut names: Vec<String> = refused
                .collect()
                .iter()
                .flat_map(|family| family.get_metric().to_vec())
                .map(|m| m.get_label()[0].value().to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(series(&refused), ["a", "b"]);
        limits.sync(&config(
            "  - { name: a, key: sk-a, rate_limit: { requests_per_minute: 5 } }\n  - { name: b, key: sk-b }\n",
        ));
        assert_eq!(series(&refused), ["a"]);
        assert_eq!(limits.by_key.read().unwrap().len(), 1);
    }
}
