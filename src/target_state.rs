//! What the gateway has learned about one target: health from active probes, its
//! circuit, a 429 cooldown, and when it last failed.
//!
//! Requests ask it for a [`Pass`] before trying the target and report the try's
//! [`Verdict`] through that pass; the health checker reports its probes. One short
//! lock per target: every decision reads and writes a few fields together, and
//! contention is one request's bookkeeping, never an upstream wait. The gauges
//! move with the state, under the same lock, so `/metrics` never disagrees with
//! routing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::circuit::{Admission, Circuit};
use crate::config::CircuitBreaker;

/// What one finished try says about its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered (a success, or the client's own 4xx).
    Up,
    /// Connect error, timeout, 5xx, a broken answer, or the gateway's credential
    /// or model refused: counts toward the circuit breaker.
    Down,
    /// 429: cool down for this long; not a circuit failure.
    Throttled(Duration),
    /// The client left first: nothing learned.
    Unknown,
}

/// One target's learned state; lives in `State` under the target's id.
pub struct TargetState {
    facts: Mutex<Facts>,
    healthy_gauge: IntGauge,
    circuit_gauge: IntGauge,
}

#[derive(Debug, Default)]
struct Facts {
    /// `false` once active probes failed `failure_threshold` times in a row.
    unhealthy: bool,
    probe_failures: u32,
    circuit: Circuit,
    cooldown_until: Option<Instant>,
    last_failure: Option<Instant>,
}

impl TargetState {
    /// A fresh state (healthy, circuit closed) whose gauges are set to match.
    pub fn new(healthy_gauge: IntGauge, circuit_gauge: IntGauge) -> Self {
        healthy_gauge.set(1);
        circuit_gauge.set(0);
        TargetState {
            facts: Mutex::new(Facts::default()),
            healthy_gauge,
            circuit_gauge,
        }
    }

    fn facts(&self) -> MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pass to try this target now, or `None` when it is unhealthy, cooling
    /// down after a 429, or its circuit refuses.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Option<Pass> {
        let mut facts = self.facts();
        if facts.unhealthy || facts.cooldown_until.is_some_and(|until| now < until) {
            return None;
        }
        let leave = match facts.circuit.admit(now) {
            Admission::Refused => return None,
            Admission::Pass => Leave::Regular,
            Admission::Trial => Leave::Trial,
        };
        Some(self.pass(leave))
    }

    /// A pass whatever health and cooldown say: the last-resort try when every
    /// candidate was skipped. It takes the circuit's trial when that is free;
    /// when it is not, its success may close an open circuit but its failure
    /// never keeps one open longer.
    pub fn force(self: &Arc<Self>, now: Instant) -> Pass {
        let leave = match self.facts().circuit.admit(now) {
            Admission::Pass => Leave::Regular,
            Admission::Trial => Leave::Trial,
            Admission::Refused => Leave::LastResort,
        };
        self.pass(leave)
    }

    fn pass(self: &Arc<Self>, leave: Leave) -> Pass {
        Pass {
            state: self.clone(),
            leave,
        }
    }

    /// When a try on this target last failed (`None`: never).
    pub fn last_failure(&self) -> Option<Instant> {
        self.facts().last_failure
    }

    /// Records one active probe; returns the new health when it changed.
    pub fn probed(&self, ok: bool, failure_threshold: u32) -> Option<bool> {
        let mut facts = self.facts();
        let was_healthy = !facts.unhealthy;
        if ok {
            facts.probe_failures = 0;
            facts.unhealthy = false;
        } else {
            // A failed probe is a failure for the last-resort choice too.
            facts.last_failure = Some(Instant::now());
            facts.probe_failures = facts.probe_failures.saturating_add(1);
            if facts.probe_failures >= failure_threshold {
                facts.unhealthy = true;
            }
        }
        let healthy = !facts.unhealthy;
        self.healthy_gauge.set(i64::from(healthy));
        (healthy != was_healthy).then_some(healthy)
    }

    /// Whether the circuit is open (or half-open).
    #[cfg(test)]
    pub fn circuit_open(&self) -> bool {
        self.facts().circuit.is_open()
    }
}

/// Which of the circuit's rules a pass answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// The circuit is closed: outcomes count toward the threshold.
    Regular,
    /// The half-open circuit's single trial: its outcome decides.
    Trial,
    /// A last-resort try past a circuit that refused.
    LastResort,
}

/// Leave to try a target, and the duty to report how the try went. Dropped
/// without a report (the request was cancelled), it gives back a trial it holds.
pub struct Pass {
    state: Arc<TargetState>,
    leave: Leave,
}

impl Pass {
    /// The upstream has proved itself (a stream's first content reached the
    /// client): a trial closes the circuit now rather than when the stream ends,
    /// and the rest of the try counts like any other. Returns the circuit's new
    /// openness when it changed.
    pub fn vouch(&mut self) -> Option<bool> {
        let change = self.record(Verdict::Up, None);
        self.leave = Leave::Regular;
        change
    }

    /// Records how the try went. Returns the circuit's new openness when it changed.
    pub fn report(mut self, verdict: Verdict, breaker: &CircuitBreaker) -> Option<bool> {
        let change = self.record(verdict, Some(breaker));
        // Reported: nothing is left to give back on drop.
        self.leave = Leave::Regular;
        change
    }

    fn record(&self, verdict: Verdict, breaker: Option<&CircuitBreaker>) -> Option<bool> {
        let now = Instant::now();
        let mut facts = self.state.facts();
        let was_open = facts.circuit.is_open();
        let trial = self.leave == Leave::Trial;
        match verdict {
            Verdict::Up if self.leave == Leave::LastResort => facts.circuit.last_resort_succeeded(),
            Verdict::Up => facts.circuit.succeeded(trial),
            Verdict::Down => {
                facts.last_failure = Some(now);
                if let Some(breaker) = breaker {
                    facts.circuit.failed(trial, now, breaker);
                }
            }
            Verdict::Throttled(wait) => {
                facts.last_failure = Some(now);
                let until = now + wait;
                facts.cooldown_until = Some(facts.cooldown_until.map_or(until, |u| u.max(until)));
                if trial {
                    facts.circuit.trial_undecided();
                }
            }
            Verdict::Unknown if trial => facts.circuit.trial_undecided(),
            Verdict::Unknown => {}
        }
        let open = facts.circuit.is_open();
        self.state.circuit_gauge.set(i64::from(open));
        (open != was_open).then_some(open)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.leave == Leave::Trial {
            self.state.facts().circuit.trial_undecided();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BREAKER: CircuitBreaker = CircuitBreaker {
        failure_threshold: 2,
        recovery_timeout: Duration::from_millis(50),
    };

    fn state() -> Arc<TargetState> {
        let healthy = IntGauge::new("h", "h").unwrap();
        let circuit = IntGauge::new("c", "c").unwrap();
        Arc::new(TargetState::new(healthy, circuit))
    }

    /// A state whose circuit two failures just opened (it recovers in 50 ms).
    fn opened() -> Arc<TargetState> {
        let s = state();
        for _ in 0..2 {
            s.admit(Instant::now())
                .unwrap()
                .report(Verdict::Down, &BREAKER);
        }
        s
    }

    #[test]
    fn failures_open_the_circuit_and_move_the_gauge() {
        let s = state();
        let now = Instant::now();
        assert_eq!(s.admit(now).unwrap().report(Verdict::Down, &BREAKER), None);
        assert_eq!(
            s.admit(now).unwrap().report(Verdict::Down, &BREAKER),
            Some(true)
        );
        assert_eq!(s.circuit_gauge.get(), 1);
        assert!(s.admit(Instant::now()).is_none());
        assert!(s.last_failure().is_some());
    }

    #[test]
    fn a_trial_dropped_unreported_is_given_back() {
        let s = opened();
        let later = Instant::now() + Duration::from_millis(60);
        let trial = s.admit(later).expect("the trial");
        assert!(s.admit(later).is_none(), "one trial at a time");
        drop(trial);
        let trial = s.admit(later).expect("the trial again");
        assert_eq!(trial.report(Verdict::Up, &BREAKER), Some(false));
        assert_eq!(s.circuit_gauge.get(), 0);
        assert!(s.admit(later).is_some());
    }

    #[test]
    fn a_429_cools_down_without_counting_toward_the_circuit() {
        let s = state();
        let now = Instant::now();
        for _ in 0..3 {
            s.force(Instant::now())
                .report(Verdict::Throttled(Duration::from_secs(5)), &BREAKER);
        }
        assert!(!s.circuit_open());
        assert!(s.admit(now).is_none());
        assert!(s.admit(now + Duration::from_secs(6)).is_some());
    }

    #[test]
    fn probes_mark_unhealthy_at_the_threshold_and_healthy_at_once() {
        let s = state();
        assert_eq!(s.probed(false, 2), None);
        assert_eq!(s.probed(false, 2), Some(false));
        assert_eq!(s.healthy_gauge.get(), 0);
        assert!(s.admit(Instant::now()).is_none());
        assert_eq!(s.probed(true, 2), Some(true));
        assert_eq!(s.healthy_gauge.get(), 1);
        assert!(s.admit(Instant::now()).is_some());
    }

    #[test]
    fn a_last_resort_success_closes_an_open_circuit_and_its_failure_changes_nothing() {
        let s = opened();
        assert!(s.circuit_open());
        let now = Instant::now();
        assert_eq!(s.force(now).report(Verdict::Down, &BREAKER), None);
        assert_eq!(s.force(now).report(Verdict::Up, &BREAKER), Some(false));
    }

    #[test]
    fn a_last_resort_never_decides_over_a_trial_in_flight() {
        let s = opened();
        let later = Instant::now() + Duration::from_millis(60);
        let trial = s.admit(later).expect("the trial");
        assert_eq!(s.force(later).report(Verdict::Up, &BREAKER), None);
        assert!(s.circuit_open());
        assert_eq!(trial.report(Verdict::Up, &BREAKER), Some(false));
    }

    #[test]
    fn a_vouched_trial_closes_the_circuit_before_the_try_ends() {
        let s = opened();
        let later = Instant::now() + Duration::from_millis(60);
        let mut trial = s.admit(later).expect("the trial");
        assert_eq!(trial.vouch(), Some(false));
        assert!(s.admit(later).is_some(), "closed while the stream goes on");
        // A stall later counts like any failure of a closed circuit.
        assert_eq!(trial.report(Verdict::Down, &BREAKER), None);
        assert!(!s.circuit_open());
    }
}
