//! The per-target circuit breaker of DESIGN.md §2 "Routing semantics".
//!
//! `failure_threshold` consecutive failures open the circuit for
//! `recovery_timeout`; after that exactly one concurrent trial request is let
//! through, and its outcome closes the circuit or opens it again. Only the trial
//! moves an open circuit — except that a last-resort success (a try made while
//! every candidate was skipped) closes it when no trial is in flight. A try
//! admitted before the circuit opened and ending after says nothing about the
//! upstream's present.
//!
//! Plain data with explicit instants, so every transition is unit-tested without
//! sleeping; `target_state.rs` holds it behind its lock.

use std::time::Instant;

use crate::config::CircuitBreaker;

/// Where one target's circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Traffic flows; `failures` counts consecutive failed tries.
    Closed { failures: u32 },
    /// No traffic until `until`.
    Open { until: Instant },
    /// Recovery time is over; `trial_out` while the one trial is in flight.
    HalfOpen { trial_out: bool },
}

/// Whether a request may try the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Pass,
    /// The one trial of a half-open circuit: its outcome decides.
    Trial,
    /// Open, or the trial is already in flight.
    Refused,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit::Closed { failures: 0 }
    }
}

impl Circuit {
    /// Asks to send a try at `now`; an open circuit whose time is up becomes
    /// half-open and hands out its single trial.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match *self {
            Circuit::Closed { .. } => Admission::Pass,
            Circuit::Open { until } if now < until => Admission::Refused,
            Circuit::Open { .. } | Circuit::HalfOpen { trial_out: false } => {
                *self = Circuit::HalfOpen { trial_out: true };
                Admission::Trial
            }
            Circuit::HalfOpen { trial_out: true } => Admission::Refused,
        }
    }

    /// Whether traffic is held back (open or half-open): `switchyard_circuit_open`.
    pub fn is_open(&self) -> bool {
        !matches!(self, Circuit::Closed { .. })
    }

    /// A try succeeded; a deciding one closes the circuit.
    pub fn succeeded(&mut self, deciding: bool) {
        match self {
            Circuit::Closed { failures } => *failures = 0,
            _ if deciding => *self = Circuit::default(),
            _ => {}
        }
    }

    /// A last-resort try (made while every candidate was skipped) succeeded: it
    /// closes a circuit that is open, but never decides over a trial in flight.
    pub fn last_resort_succeeded(&mut self) {
        match self {
            Circuit::HalfOpen { trial_out: true } => {}
            _ => *self = Circuit::default(),
        }
    }

    /// A try failed at `now`: the threshold, or a deciding try, opens the circuit.
    pub fn failed(&mut self, deciding: bool, now: Instant, settings: &CircuitBreaker) {
        let open = Circuit::Open {
            until: now + settings.recovery_timeout,
        };
        match self {
            Circuit::Closed { failures } => {
                *failures += 1;
                if *failures >= settings.failure_threshold {
                    *self = open;
                }
            }
            _ if deciding => *self = open,
            _ => {}
        }
    }

    /// The trial ended without a verdict (the client left, the upstream
    /// throttled): the next request may be the trial.
    pub fn trial_undecided(&mut self) {
        if let Circuit::HalfOpen { trial_out } = self {
            *trial_out = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SETTINGS: CircuitBreaker = CircuitBreaker {
        failure_threshold: 3,
        recovery_timeout: Duration::from_secs(10),
    };

    #[test]
    fn consecutive_failures_open_and_a_success_resets_the_count() {
        let now = Instant::now();
        let mut c = Circuit::default();
        c.failed(false, now, &SETTINGS);
        c.failed(false, now, &SETTINGS);
        c.succeeded(false);
        c.failed(false, now, &SETTINGS);
        c.failed(false, now, &SETTINGS);
        assert_eq!(c, Circuit::Closed { failures: 2 });
        assert_eq!(c.admit(now), Admission::Pass);
        c.failed(false, now, &SETTINGS);
        assert!(c.is_open());
        assert_eq!(c.admit(now + Duration::from_secs(9)), Admission::Refused);
    }

    #[test]
    fn after_recovery_exactly_one_trial_decides() {
        let now = Instant::now();
        let mut c = Circuit::Open { until: now };
        assert_eq!(c.admit(now), Admission::Trial);
        assert_eq!(c.admit(now), Admission::Refused);
        assert_eq!(c.admit(now + Duration::from_secs(60)), Admission::Refused);
        // A try admitted before the circuit opened does not decide.
        c.succeeded(false);
        assert!(c.is_open());
        c.succeeded(true);
        assert_eq!(c, Circuit::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_trial_reopens_for_a_full_recovery_timeout() {
        let now = Instant::now();
        let mut c = Circuit::HalfOpen { trial_out: true };
        c.failed(false, now, &SETTINGS);
        assert_eq!(c, Circuit::HalfOpen { trial_out: true });
        let later = now + Duration::from_secs(3);
        c.failed(true, later, &SETTINGS);
        assert_eq!(
            c,
            Circuit::Open {
                until: later + SETTINGS.recovery_timeout
            }
        );
    }

    #[test]
    fn a_last_resort_success_closes_an_open_circuit_but_leaves_a_trial_to_decide() {
        let now = Instant::now();
        let mut open = Circuit::Open { until: now };
        open.last_resort_succeeded();
        assert_eq!(open, Circuit::default());
        let mut trial = Circuit::HalfOpen { trial_out: true };
        trial.last_resort_succeeded();
        assert_eq!(trial, Circuit::HalfOpen { trial_out: true });
    }

    #[test]
    fn an_undecided_trial_hands_the_trial_to_the_next_request() {
        let now = Instant::now();
        let mut c = Circuit::Open { until: now };
        assert_eq!(c.admit(now), Admission::Trial);
        c.trial_undecided();
        assert_eq!(c.admit(now), Admission::Trial);
        let mut closed = Circuit::default();
        closed.trial_undecided();
        assert_eq!(closed, Circuit::default());
    }
}
