//! One key's two budgets, requests and tokens per minute, decided together.
//!
//! Both buckets sit under one mutex: a request is admitted only if both have room,
//! and then takes from both in the same critical section, so a request refused by
//! its tokens never holds a request unit another request was refused for. The
//! lock is held for a few arithmetic operations, never across an await.
//!
//! A key keeps one limiter for as long as it is configured; a changed limit
//! resizes it in place, so requests admitted before the change still settle
//! their reservations on the same buckets.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use super::gcra::{Bucket, Rate, Refused};
use crate::config::RateLimit;

/// Which budget ran out: OpenAI's error `type` for the 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `requests_per_minute`.
    Requests,
    /// `tokens_per_minute`.
    Tokens,
}

impl Budget {
    /// The error `type`, also the word in the header names.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Requests => "requests",
            Budget::Tokens => "tokens",
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The budget that has no room (the one that takes longest to make room).
    pub budget: Budget,
    /// How long until it fits; `None`: it never can (larger than the budget).
    pub wait: Option<Duration>,
    /// What the request asked of that budget.
    pub requested: u64,
    /// The budget's size: its limit per minute.
    pub limit: u64,
}

/// A budget's state as the `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// The limit per minute (the bucket's capacity).
    pub limit: u64,
    /// Whole units that can be taken now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// Both budgets' levels; `None` for a budget the key does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub requests: Option<Level>,
    pub tokens: Option<Level>,
}

/// The limits and the buckets that enforce them, changed together.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    settings: RateLimit,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// The limiter of one virtual key.
pub struct KeyLimiter {
    /// The key's name, for the 429's message.
    key: String,
    /// Bucket times are nanoseconds since this instant.
    epoch: Instant,
    buckets: Mutex<Buckets>,
    /// `switchyard_rate_limited_total{key}` for this key.
    refused: IntCounter,
}

impl KeyLimiter {
    /// Full buckets for `settings` of the key named `key`.
    pub fn new(key: &str, settings: RateLimit, refused: IntCounter) -> KeyLimiter {
        KeyLimiter {
            key: key.to_string(),
            epoch: Instant::now(),
            buckets: Mutex::new(Buckets {
                settings,
                requests: settings.requests_per_minute.map(full),
                tokens: settings.tokens_per_minute.map(full),
            }),
            refused,
        }
    }

    /// The name of the key this limiter is for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The limits this limiter enforces now.
    pub fn settings(&self) -> RateLimit {
        self.lock().settings
    }

    /// Enforces `settings` from now on: each budget is kept as full as it is in
    /// proportion, so a changed limit applies at once without granting a fresh
    /// burst (a budget the key did not have starts full).
    pub fn resize(&self, settings: RateLimit) {
        let now = self.now();
        let mut buckets = self.lock();
        let resize = |old: Option<Bucket>, per_minute: Option<u64>| {
            per_minute.map(|n| match old {
                Some(bucket) => bucket.resized(Rate::per_minute(n), now),
                None => full(n),
            })
        };
        *buckets = Buckets {
            settings,
            requests: resize(buckets.requests, settings.requests_per_minute),
            tokens: resize(buckets.tokens, settings.tokens_per_minute),
        };
    }

    /// Admits one request that reserves `tokens`, or says which budget refused
    /// it. A refused request takes nothing.
    pub fn admit(&self, tokens: u64) -> Result<(), Refusal> {
        let now = self.now();
        let mut buckets = self.lock();
        let checks = [
            (Budget::Requests, buckets.requests.as_ref(), 1),
            (Budget::Tokens, buckets.tokens.as_ref(), tokens),
        ];
        let mut refusal: Option<Refusal> = None;
        for (budget, bucket, units) in checks {
            let Some(bucket) = bucket else { continue };
            let Err(refused) = bucket.check(units, now) else {
                continue;
            };
            let this = Refusal {
                budget,
                wait: match refused {
                    Refused::Wait(wait) => Some(wait),
                    Refused::Never => None,
                },
                requested: units,
                limit: bucket.rate().limit(),
            };
            // Both must fit: the answer names the one that takes longest.
            refusal = match refusal {
                Some(earlier) if longer(earlier.wait, this.wait) => Some(earlier),
                _ => Some(this),
            };
        }
        if let Some(refusal) = refusal {
            drop(buckets);
            self.refused.inc();
            return Err(refusal);
        }
        if let Some(bucket) = buckets.requests.as_mut() {
            bucket.force(1, now);
        }
        if let Some(bucket) = buckets.tokens.as_mut() {
            bucket.force(tokens, now);
        }
        Ok(())
    }

    /// Corrects a reservation of `reserved` tokens to `used`: the difference is
    /// given back, or taken even beyond the budget (it was spent).
    pub fn correct(&self, reserved: u64, used: u64) {
        let now = self.now();
        let mut buckets = self.lock();
        if let Some(bucket) = buckets.tokens.as_mut() {
            if used > reserved {
                bucket.force(used - reserved, now);
            } else {
                bucket.refund(reserved - used, now);
            }
        }
    }

    /// The budgets' levels now.
    pub fn levels(&self) -> Levels {
        let now = self.now();
        let buckets = self.lock();
        let level = |bucket: &Bucket| Level {
            limit: bucket.rate().limit(),
            remaining: bucket.remaining(now),
            reset: bucket.reset(now),
        };
        Levels {
            requests: buckets.requests.as_ref().map(level),
            tokens: buckets.tokens.as_ref().map(level),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The critical sections cannot panic half-way (plain arithmetic), so a
        // poisoned lock still guards consistent buckets.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn full(per_minute: u64) -> Bucket {
    Bucket::full(Rate::per_minute(per_minute))
}

/// Whether waiting `a` is longer than waiting `b` (`None`: forever).
fn longer(a: Option<Duration>, b: Option<Duration>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: Option<u64>, tokens: Option<u64>) -> KeyLimiter {
        let settings = RateLimit {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
            default_max_tokens: 1024,
        };
        KeyLimiter::new("app", settings, IntCounter::new("refused", "test").unwrap())
    }

    #[test]
    fn a_request_refused_by_its_tokens_takes_no_request() {
        let l = limiter(Some(2), Some(100));
        l.admit(60).unwrap();
        let refusal = l.admit(60).unwrap_err();
        assert_eq!(refusal.budget, Budget::Tokens);
        assert_eq!((refusal.requested, refusal.limit), (60, 100));
        assert!(refusal.wait.unwrap() > Duration::from_secs(11));
        let levels = l.levels();
        assert_eq!(levels.requests.unwrap().remaining, 1);
        assert_eq!(levels.tokens.unwrap().remaining, 40);
        l.admit(40).unwrap();
        assert_eq!(l.admit(0).unwrap_err().budget, Budget::Requests);
        assert_eq!(l.refused.get(), 2);
    }

    #[test]
    fn the_longer_wait_names_the_refusal_and_never_beats_any_wait() {
        let l = limiter(Some(1), Some(100));
        l.admit(10).unwrap();
        let refusal = l.admit(200).unwrap_err();
        assert_eq!((refusal.budget, refusal.wait), (Budget::Tokens, None));
        let refusal = l.admit(10).unwrap_err();
        assert_eq!(refusal.budget, Budget::Requests);
    }

    #[test]
    fn corrections_refund_or_charge_beyond_the_budget() {
        let l = limiter(None, Some(1000));
        l.admit(600).unwrap();
        l.correct(600, 100);
        assert_eq!(l.levels().tokens.unwrap().remaining, 900);
        l.admit(100).unwrap();
        l.correct(100, 2500);
        assert_eq!(l.levels().tokens.unwrap().remaining, 0);
        assert!(l.admit(1).unwrap_err().wait.unwrap() > Duration::from_secs(96));
        assert_eq!(l.levels().requests, None);
    }

    #[test]
    fn a_resized_limiter_applies_the_new_limit_at_once() {
        let l = limiter(Some(10), None);
        for _ in 0..5 {
            l.admit(0).unwrap();
        }
        let settings = RateLimit {
            requests_per_minute: Some(4),
            tokens_per_minute: Some(50),
            default_max_tokens: 1024,
        };
        l.resize(settings);
        let resized = l;
        let levels = resized.levels();
        assert_eq!(
            (
                levels.requests.unwrap().limit,
                levels.requests.unwrap().remaining
            ),
            (4, 2)
        );
        assert_eq!(levels.tokens.unwrap().remaining, 50);
        assert_eq!(resized.settings(), settings);
    }
}
