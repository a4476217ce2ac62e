//! One token bucket, kept as GCRA's single number: the theoretical arrival time.
//!
//! A bucket of capacity N refilled at N per minute frees one unit every
//! `T = 60 s / N`. Instead of a level and a last-refill time it keeps the time at
//! which it would be full again (`tat`): taking `c` units moves it `c·T` later, and
//! a take is allowed while `tat − now` stays within `N·T`. That is the whole
//! algorithm: exact (a burst of 2N inside one interval admits exactly N), with no
//! window boundary to game, and a refund is the same move backwards — which is
//! why this is ours rather than `governor`, which cannot give units back.
//!
//! Plain data with explicit instants (nanoseconds since the limiter's epoch), so
//! every rule is unit-tested without sleeping; the caller holds the lock.

use std::time::Duration;

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// N per minute, as the interval that frees one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_minute: u64,
    /// `T`, in nanoseconds; rounded down, and `capacity_ns` is `N·T` with the
    /// same `T`, so the burst is exactly N whatever the rounding.
    interval_ns: u64,
}

impl Rate {
    /// `per_minute` units a minute; at least 1 (the config guarantees it).
    pub fn per_minute(per_minute: u64) -> Rate {
        let per_minute = per_minute.max(1);
        Rate {
            per_minute,
            interval_ns: (NANOS_PER_MINUTE / per_minute).max(1),
        }
    }

    /// N: the bucket's capacity.
    pub fn limit(self) -> u64 {
        self.per_minute
    }

    fn cost_ns(self, units: u64) -> u64 {
        units.saturating_mul(self.interval_ns)
    }

    fn capacity_ns(self) -> u64 {
        self.cost_ns(self.per_minute)
    }
}

/// Why a take was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It fits once this much has refilled.
    Wait(Duration),
    /// It is larger than the whole bucket: it can never fit.
    Never,
}

/// A token bucket at some level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    rate: Rate,
    /// When the bucket is full again, in nanoseconds since the epoch; at or before
    /// `now` means full. Beyond `now + N·T` means in debt (usage came in above
    /// its estimate).
    tat: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate) -> Bucket {
        Bucket { rate, tat: 0 }
    }

    /// The rate it refills at (and its capacity).
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Whether `units` fit now, without taking them.
    pub fn check(&self, units: u64, now: u64) -> Result<(), Refused> {
        if units > self.rate.limit() {
            return Err(Refused::Never);
        }
        let after = self.tat.max(now).saturating_add(self.rate.cost_ns(units));
        match (after - now).checked_sub(self.rate.capacity_ns()) {
            Some(over) if over > 0 => Err(Refused::Wait(Duration::from_nanos(over))),
            _ => Ok(()),
        }
    }

    /// Takes `units` whether they fit or not: usage that turned out larger than
    /// its reservation was spent all the same, and later requests wait for it.
    pub fn force(&mut self, units: u64, now: u64) {
        self.tat = self.tat.max(now).saturating_add(self.rate.cost_ns(units));
    }

    /// Gives back `units` taken earlier; the bucket never fills beyond full.
    pub fn refund(&mut self, units: u64, now: u64) {
        self.tat = self.tat.saturating_sub(self.rate.cost_ns(units)).max(now);
    }

    /// Whole units that can be taken now.
    pub fn remaining(&self, now: u64) -> u64 {
        let used = self.tat.saturating_sub(now);
        self.rate.capacity_ns().saturating_sub(used) / self.rate.interval_ns
    }

    /// Time until the bucket is full again (OpenAI's `reset`).
    pub fn reset(&self, now: u64) -> Duration {
        Duration::from_nanos(self.tat.saturating_sub(now))
    }

    /// The same bucket under a new rate, as full as this one in proportion: half
    /// used stays half used, so a changed limit applies at once without granting
    /// a fresh burst or a debt the old limit never allowed.
    pub fn resized(&self, rate: Rate, now: u64) -> Bucket {
        let used = u128::from(self.tat.saturating_sub(now));
        let scaled = used * u128::from(rate.capacity_ns()) / u128::from(self.rate.capacity_ns());
        Bucket {
            rate,
            tat: now.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// What the limiter does: take only what fits.
    trait Take {
        fn take(&mut self, units: u64, now: u64) -> Result<(), Refused>;
    }

    impl Take for Bucket {
        fn take(&mut self, units: u64, now: u64) -> Result<(), Refused> {
            self.check(units, now)?;
            self.force(units, now);
            Ok(())
        }
    }

    #[test]
    fn a_full_bucket_admits_exactly_its_capacity_at_once() {
        for limit in [1, 7, 600, 200_000] {
            let mut b = Bucket::full(Rate::per_minute(limit));
            let now = 5 * SECOND;
            assert_eq!(b.remaining(now), limit);
            for _ in 0..limit {
                b.take(1, now).unwrap();
            }
            assert_eq!(b.remaining(now), 0);
            assert!(matches!(b.take(1, now), Err(Refused::Wait(_))), "{limit}");
        }
    }

    #[test]
    fn it_refills_one_unit_per_interval() {
        let mut b = Bucket::full(Rate::per_minute(600));
        for _ in 0..600 {
            b.take(1, 0).unwrap();
        }
        assert_eq!(b.take(1, 0), Err(Refused::Wait(Duration::from_millis(100))));
        assert_eq!(
            b.take(1, 60_000_000),
            Err(Refused::Wait(Duration::from_millis(40)))
        );
        b.take(1, SECOND / 10).unwrap();
        assert!(b.take(1, SECOND / 10).is_err());
        assert_eq!(b.remaining(SECOND / 10 + SECOND), 10);
        assert_eq!(b.reset(SECOND / 10), Duration::from_secs(60));
    }

    #[test]
    fn a_refused_take_changes_nothing() {
        let mut b = Bucket::full(Rate::per_minute(10));
        b.take(8, 0).unwrap();
        let before = b;
        assert!(b.take(3, 0).is_err());
        assert_eq!(b, before);
        b.take(2, 0).unwrap();
    }

    #[test]
    fn more_than_the_capacity_can_never_fit() {
        let mut b = Bucket::full(Rate::per_minute(100));
        assert_eq!(b.take(101, 0), Err(Refused::Never));
        b.take(100, 0).unwrap();
    }

    #[test]
    fn refunds_give_units_back_but_never_beyond_full() {
        let mut b = Bucket::full(Rate::per_minute(60));
        b.take(50, 0).unwrap();
        b.refund(30, 0);
        assert_eq!(b.remaining(0), 40);
        b.refund(1000, 0);
        assert_eq!(b.remaining(0), 60);
        assert_eq!(b.reset(0), Duration::ZERO);
    }

    #[test]
    fn forced_usage_can_put_the_bucket_in_debt() {
        let mut b = Bucket::full(Rate::per_minute(60));
        b.take(10, 0).unwrap();
        b.force(110, 0);
        assert_eq!(b.remaining(0), 0);
        assert_eq!(b.reset(0), Duration::from_secs(120));
        assert_eq!(b.check(1, 0), Err(Refused::Wait(Duration::from_secs(61))));
        b.take(1, 61 * SECOND).unwrap();
    }

    #[test]
    fn a_bucket_deep_in_debt_saturates_instead_of_overflowing() {
        let mut b = Bucket::full(Rate::per_minute(1_000_000_000));
        b.force(u64::MAX, 0);
        assert_eq!(b.remaining(0), 0);
        assert!(matches!(b.check(1, SECOND), Err(Refused::Wait(_))));
        b.refund(u64::MAX, SECOND);
        assert_eq!(b.remaining(SECOND), 1_000_000_000);
    }

    #[test]
    fn a_resized_bucket_keeps_its_proportion() {
        let mut b = Bucket::full(Rate::per_minute(600));
        b.take(300, 0).unwrap();
        let smaller = b.resized(Rate::per_minute(60), 0);
        assert_eq!(smaller.remaining(0), 30);
        assert_eq!(smaller.rate().limit(), 60);
        let full = Bucket::full(Rate::per_minute(600)).resized(Rate::per_minute(6), 0);
        assert_eq!(full.remaining(0), 6);
    }
}
