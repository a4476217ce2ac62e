//! The supervisor: the process's signals, its config file, and its readiness.
//!
//! Pingora waits for a shutdown signal in `ShutdownSignalWatch::recv` once every
//! service has started, and shuts its runtimes down when `recv` returns. The
//! supervisor is that watch, and returns only when the gateway has drained:
//!
//! - `SIGHUP` or a changed config file: reload (`RELOADING=1` … `READY=1`);
//! - `SIGTERM`: stop accepting, refuse new requests with 503, drain, exit;
//! - `SIGQUIT`: hand the sockets to a successor started with `-u`, then drain;
//! - `SIGUSR2`: start that successor first (systemd upgrades, see `upgrade`);
//! - `SIGINT`: exit at once.
//!
//! `READY=1` goes out once the API port accepts connections and every handler
//! above is installed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use super::config_file::{ConfigFile, Fingerprint, POLL_INTERVAL};
use super::notify::Notifier;
use super::reload;
use super::upgrade::Handover;
use super::Ending;
use crate::app::App;

/// How long requests still running at the cutoff get to write their error
/// event and end.
const CUTOFF_GRACE: Duration = Duration::from_secs(2);
/// How long the access log gets to write its last lines at exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process keeps serving, listeners included, after the
/// sockets went out. The successor polls for them once a second, then starts
/// its listeners and sends `MAINPID=`, which must reach systemd before this
/// process exits, or systemd would take the unit for dead. Pingora's own
/// hand-over keeps both processes accepting for five seconds.
const HANDOVER_OVERLAP: Duration = Duration::from_secs(3);
/// How often readiness checks whether the API port accepts.
const READY_POLL: Duration = Duration::from_millis(20);

/// Everything the supervisor acts on.
pub struct Supervisor {
    app: Arc<App>,
    notifier: Notifier,
    /// Flipped to stop the API listener.
    api_stop: watch::Sender<bool>,
    /// Flipped to stop the admin listener (after a hand-over only).
    admin_stop: watch::Sender<bool>,
    handover: Handover,
    config_path: std::path::PathBuf,
    /// The text the gateway started with.
    started_with: Fingerprint,
    /// Settings the file changed that only a restart applies, for the status
    /// `systemctl status` shows.
    needs_restart: Mutex<Vec<&'static str>>,
}

/// The signals the supervisor handles, installed together.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    quit: Signal,
    upgrade: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            upgrade: signal(SignalKind::user_defined2())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

impl Supervisor {
    /// A supervisor for `app`, whose config came from `config_path` with the
    /// text fingerprinted as `started_with`.
    pub fn new(
        app: Arc<App>,
        notifier: Notifier,
        api_stop: watch::Sender<bool>,
        admin_stop: watch::Sender<bool>,
        handover: Handover,
        config_path: std::path::PathBuf,
        started_with: Fingerprint,
    ) -> Self {
        Supervisor {
            app,
            notifier,
            api_stop,
            admin_stop,
            handover,
            config_path,
            started_with,
            needs_restart: Mutex::default(),
        }
    }

    /// Waits until the API port accepts, then says so to systemd.
    async fn announce_ready(&self) {
        let listen = &self.app.bound.listen;
        while !self.app.state.api_listener.is_up(listen).await {
            tokio::time::sleep(READY_POLL).await;
        }
        log::info!("ready: accepting on {listen}");
        self.notifier.ready(&self.status());
    }

    fn status(&self) -> String {
        let mut status = format!(
            "serving on {} (admin {}), config generation {}",
            self.app.bound.listen,
            self.app.bound.admin_listen,
            self.app.metrics.config_generation()
        );
        let needs_restart = self.needs_restart.lock().unwrap_or_else(|e| e.into_inner());
        if !needs_restart.is_empty() {
            status += &format!("; restart to apply: {}", needs_restart.join(", "));
        }
        status
    }

    /// Reloads the file; `announced`: READY=1 went out already, so systemd is
    /// told about the reload too.
    fn reload(&self, file: &mut ConfigFile, cause: &str, announced: bool) {
        if announced {
            self.notifier.reloading();
        }
        match reload::reload(&self.app, file) {
            Ok(reloaded) => {
                log::info!(
                    "config reloaded ({cause}) from {}: generation {}",
                    file.path().display(),
                    reloaded.generation
                );
                for field in &reloaded.needs_restart {
                    log::warn!(
                        "config reload: `{field}` changed but needs a restart (or a binary \
                         upgrade) to take effect; the rest of the file is applied"
                    );
                }
                *self.needs_restart.lock().unwrap_or_else(|e| e.into_inner()) =
                    reloaded.needs_restart;
            }
            Err(e) => {
                log::error!("config reload rejected ({cause}); the old config keeps serving: {e}")
            }
        }
        if announced {
            self.notifier.ready(&self.status());
        }
    }

    /// Hands the sockets over and keeps serving while the successor takes
    /// them up, closing each answered connection so its client reconnects to
    /// either process; false (still serving) if nobody took them.
    async fn hand_over(&self) -> bool {
        if let Err(e) = self.handover.send_sockets().await {
            log::error!("binary upgrade failed, still serving: {e}");
            return false;
        }
        self.app.drain.begin(Ending::Upgrade);
        log::info!(
            "listening sockets handed over; serving alongside the successor for {HANDOVER_OVERLAP:?}"
        );
        tokio::time::sleep(HANDOVER_OVERLAP).await;
        true
    }

    /// SIGUSR2: starts the successor and hands it the sockets; false (still
    /// serving) if it did not start, did not take them, or died meanwhile.
    async fn upgrade_in_place(&self) -> bool {
        let mut successor = match self.handover.start_successor() {
            Ok(child) => child,
            Err(e) => {
                log::error!(
                    "binary upgrade failed, still serving: cannot start the successor: {e}"
                );
                return false;
            }
        };
        log::info!("binary upgrade: started successor pid {}", successor.id());
        let handed_over = self.hand_over().await;
        match successor.try_wait() {
            Ok(None) if handed_over => return true,
            Ok(Some(status)) => {
                log::error!("binary upgrade failed, still serving: the successor exited ({status})")
            }
            _ => {}
        }
        // Without the sockets it would wait for them; after a failure it is
        // not to be trusted with them.
        let _ = successor.kill();
        let _ = successor.wait();
        self.app.drain.resume();
        false
    }

    /// Stops accepting, waits for in-flight requests (cutting them off after
    /// `shutdown_timeout`), and flushes the access log.
    async fn drain(&self, ending: Ending) {
        let drain = &self.app.drain;
        drain.begin(ending);
        self.api_stop.send_replace(true);
        if ending == Ending::Upgrade {
            // The successor serves by now: probes, scrapes and pooled client
            // connections move to it.
            self.admin_stop.send_replace(true);
            drain.close_idle_connections();
        }
        let timeout = self.app.config().shutdown_timeout;
        let status = format!(
            "draining {} requests (at most {timeout:?})",
            drain.in_flight()
        );
        log::info!("{status}");
        if ending == Ending::Shutdown {
            // After an upgrade the successor is the unit's main process: a
            // STOPPING=1 from here would tell systemd the unit is stopping.
            self.notifier.stopping(&status);
        }
        if !drain.settled(timeout).await {
            log::warn!(
                "shutdown_timeout ({timeout:?}) ran out with {} requests in flight; ending them",
                drain.in_flight()
            );
            drain.cut_off();
            if !drain.settled(CUTOFF_GRACE).await {
                log::warn!("{} requests did not end; exiting anyway", drain.in_flight());
            }
        }
        let app = self.app.clone();
        let flushed = tokio::task::spawn_blocking(move || app.access_log.flush(FLUSH_TIMEOUT));
        if !matches!(flushed.await, Ok(true)) {
            log::warn!("the access log's last lines could not be written within {FLUSH_TIMEOUT:?}");
        }
        log::info!("drained; exiting");
    }
}

#[async_trait]
impl ShutdownSignalWatch for Supervisor {
    async fn recv(&self) -> ShutdownSignal {
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                log::error!("cannot install signal handlers: {e}; exiting");
                return ShutdownSignal::FastShutdown;
            }
        };
        let mut file = ConfigFile::new(&self.config_path, self.started_with);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ready = self.announce_ready();
        tokio::pin!(ready);
        let mut announced = false;
        let ending = loop {
            tokio::select! {
                () = &mut ready, if !announced => announced = true,
                _ = signals.hangup.recv() => self.reload(&mut file, "SIGHUP", announced),
                _ = poll.tick() => {
                    if file.poll() {
                        self.reload(&mut file, "the file changed", announced);
                    }
                }
                _ = signals.terminate.recv() => {
                    log::info!("SIGTERM: shutting down");
                    break Ending::Shutdown;
                }
                _ = signals.quit.recv() => {
                    log::info!("SIGQUIT: handing the sockets to the process started with -u");
                    match interruptible(&mut signals.interrupt, self.hand_over()).await {
                        Some(true) => break Ending::Upgrade,
                        Some(false) => {}
                        None => return ShutdownSignal::FastShutdown,
                    }
                }
                _ = signals.upgrade.recv() => {
                    log::info!("SIGUSR2: upgrading to the binary at this path");
                    match interruptible(&mut signals.interrupt, self.upgrade_in_place()).await {
                        Some(true) => break Ending::Upgrade,
                        Some(false) => {}
                        None => return ShutdownSignal::FastShutdown,
                    }
                }
                _ = signals.interrupt.recv() => {
                    log::info!("SIGINT: exiting at once");
                    return ShutdownSignal::FastShutdown;
                }
            }
        };
        match interruptible(&mut signals.interrupt, self.drain(ending)).await {
            Some(()) => ShutdownSignal::GracefulTerminate,
            None => ShutdownSignal::FastShutdown,
        }
    }
}

/// Runs `work` unless SIGINT comes first (`None`): SIGINT always exits at once,
/// even during a hand-over's retries and overlap or a drain.
async fn interruptible<T>(
    interrupt: &mut Signal,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = interrupt.recv() => {
            log::info!("SIGINT: exiting at once");
            None
        }
    }
}
