//! Every key's limiter, keyed by key name, beside the swappable config.
//!
//! A reload builds new `VirtualKey`s; their limiter is found again here by name,
//! so budgets carry over — and when a key's limits changed, its limiter is resized
//! in place of the old one, so the new limit applies to the very next request.
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
                if limiter.settings() == settings {
                    return Some(limiter.clone());
                }
            }
        }
        let mut by_key = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        let limiter = match by_key.get(&key.name) {
            Some(limiter) if limiter.settings() == settings => return Some(limiter.clone()),
            Some(old) => Arc::new(old.resized(settings)),
            None => Arc::new(KeyLimiter::new(
                settings,
                self.refused.with_label_values(&[key.name.as_str()]),
            )),
        };
        by_key.insert(key.name.clone(), limiter.clone());
        Some(limiter)
    }

    /// Makes the registry match `config`: a limiter (and a zero series) for every
    /// key with limits, none for keys without or gone.
    pub fn sync(&self, config: &Config) {
        for key in &config.keys {
            self.get(key);
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
    use crate::config::{RateLimit, Secret};

    fn key(name: &str, requests: Option<u64>) -> VirtualKey {
        VirtualKey {
            name: name.into(),
            secret: Secret::new(format!("sk-{name}")),
            allowed_models: None,
            rate_limit: requests.map(|n| RateLimit {
                requests_per_minute: Some(n),
                tokens_per_minute: None,
                default_max_tokens: 1024,
            }),
        }
    }

    fn remaining(limits: &Limits, key: &VirtualKey) -> u64 {
        limits
            .get(key)
            .unwrap()
            .levels()
            .requests
            .unwrap()
            .remaining
    }

    #[test]
    fn budgets_carry_over_and_a_changed_limit_applies_at_once() {
        let refused = IntCounterVec::new(Opts::new("r", "t"), &["key"]).unwrap();
        let limits = Limits::new(refused.clone());
        assert!(limits.get(&key("free", None)).is_none());
        let app = key("app", Some(10));
        limits.get(&app).unwrap().admit(0).unwrap();
        assert_eq!(remaining(&limits, &key("app", Some(10))), 9);
        // 10 → 20 per minute with a tenth used: still a tenth used.
        assert_eq!(remaining(&limits, &key("app", Some(20))), 18);
        assert_eq!(refused.with_label_values(&["app"]).get(), 0);
    }

    #[test]
    fn sync_keeps_only_keys_with_limits_and_their_series() {
        let config = |keys: &str| {
            let text = format!(
                "keys:\n{keys}providers:\n  demo: {{ type: mock }}\nmodels:\n  demo:\n    targets: [{{ provider: demo, model: m }}]\n"
            );
            crate::config::parse(&text, "test.yaml").unwrap()
        };
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
