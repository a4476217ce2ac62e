//! Draining: how the gateway stops without cutting a request.
//!
//! Every client request holds an [`InFlight`] guard from the moment Pingora has
//! read its header until its access-log line is queued. Shutdown (SIGTERM) and a
//! binary upgrade (SIGQUIT, SIGUSR2) begin a drain, wait for the count to reach
//! zero, and only then let the process exit. If `shutdown_timeout` runs out first,
//! [`Drain::cut_off`] tells every upstream wait to stop (see `client_watch`), so
//! streams end with an SSE error event instead of a cut connection.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Why the gateway is draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM: new requests are refused with 503 `shutting_down`.
    Shutdown,
    /// A successor took the listening sockets: requests that still arrive on
    /// open connections are answered normally (their connection then closes).
    Upgrade,
}

const SERVING: u8 = 0;
const SHUTDOWN: u8 = 1;
const UPGRADE: u8 = 2;

/// The in-flight count and the drain's phase, shared by every request.
pub struct Drain {
    in_flight: AtomicUsize,
    /// Woken when the count drops to zero during a drain.
    idle: Notify,
    phase: AtomicU8,
    /// Turns true when `shutdown_timeout` ran out: upstream waits stop.
    cutoff: watch::Sender<bool>,
    /// Turns true when idle client connections should close (see
    /// `KeepOpenWhileDraining`).
    close_idle: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            phase: AtomicU8::new(SERVING),
            cutoff: watch::Sender::new(false),
            close_idle: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// Counts a request as in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// How many requests are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Starts draining for `ending`; the first ending sticks.
    pub fn begin(&self, ending: Ending) {
        let phase = match ending {
            Ending::Shutdown => SHUTDOWN,
            Ending::Upgrade => UPGRADE,
        };
        let _ = self
            .phase
            .compare_exchange(SERVING, phase, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Back to serving: the hand-over to a successor failed.
    pub fn resume(&self) {
        self.phase.store(SERVING, Ordering::Release);
    }

    /// Whether a drain has begun: answers close their connection.
    pub fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Acquire) != SERVING
    }

    /// Whether new requests are refused with 503 `shutting_down` (and `/readyz`
    /// is 503): a shutdown, not a hand-over to a successor.
    pub fn refuses_requests(&self) -> bool {
        self.phase.load(Ordering::Acquire) == SHUTDOWN
    }

    /// Waits until no request is in flight, at most `timeout`; true if none is.
    pub async fn settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a drop to zero in between
            // still wakes this wait.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Tells every upstream wait to stop now: the drain ran out of time.
    pub fn cut_off(&self) {
        self.cutoff.send_replace(true);
    }

    /// Lets idle client connections close.
    pub fn close_idle_connections(&self) {
        self.close_idle.send_replace(true);
    }

    /// Resolves once idle client connections may close.
    pub async fn idle_connections_released(&self) {
        let _ = self.close_idle.subscribe().wait_for(|&close| close).await;
    }

    /// A receiver whose value turns true at [`Drain::cut_off`].
    pub fn cutoff(&self) -> watch::Receiver<bool> {
        self.cutoff.subscribe()
    }
}

/// One request in flight; dropping it ends the request's part in a drain.
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && self.0.is_draining() {
            self.0.idle.notify_waiters();
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settles_when_the_last_request_ends_not_before() {
        let drain = Arc::new(Drain::default());
        let first = drain.enter();
        let second = drain.enter();
        drain.begin(Ending::Shutdown);
        assert!(!drain.settled(Duration::from_millis(20)).await);
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.settled(Duration::from_secs(5)).await })
        };
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one request is still in flight");
        drop(second);
        assert!(waiter.await.unwrap());
        assert_eq!(drain.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_idle_gateway_is_settled_at_once() {
        let drain = Drain::default();
        drain.begin(Ending::Upgrade);
        assert!(drain.settled(Duration::ZERO).await);
    }

    #[test]
    fn the_first_ending_sticks_and_only_shutdown_refuses() {
        let drain = Drain::default();
        assert!(!drain.is_draining() && !drain.refuses_requests());
        drain.begin(Ending::Upgrade);
        drain.begin(Ending::Shutdown);
        assert!(drain.is_draining());
        assert!(!drain.refuses_requests(), "an upgrade still answers");
    }

    #[test]
    fn a_failed_hand_over_resumes_serving() {
        let drain = Drain::default();
        drain.begin(Ending::Upgrade);
        drain.resume();
        assert!(!drain.is_draining());
        drain.begin(Ending::Shutdown);
        assert!(drain.refuses_requests(), "a later shutdown still begins");
    }

    #[tokio::test]
    async fn cut_off_reaches_every_receiver() {
        let drain = Drain::default();
        let mut early = drain.cutoff();
        drain.cut_off();
        let mut late = drain.cutoff();
        assert!(*early.wait_for(|&cut| cut).await.unwrap());
        assert!(*late.wait_for(|&cut| cut).await.unwrap());
    }
}
