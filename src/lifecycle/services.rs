//! The listeners, under the supervisor's control rather than Pingora's.
//!
//! Pingora stops every listener at once when it shuts down. Switchyard needs
//! the API listener to stop first — at SIGTERM, or once the sockets went to a
//! successor — while the admin listener keeps answering `/readyz` (503) and
//! `/metrics` for the whole shutdown drain; after a hand-over it stops too, so
//! probes and scrapes reach the successor. So each listener gets a shutdown
//! watch of its own, which the supervisor flips; Pingora's own watch only fires
//! once the drain is over.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service as Listening;
use pingora::services::Service;
use tokio::sync::watch;

use super::Drain;

/// A listening service that stops accepting when `stop` turns true, and lends
/// the process's listening sockets to the hand-over of a binary upgrade.
pub struct Stoppable<A> {
    inner: Listening<A>,
    stop: watch::Receiver<bool>,
    listen_fds: Arc<OnceLock<ListenFds>>,
}

impl<A> Stoppable<A> {
    /// `inner` (its listeners added) under `stop`; `listen_fds` receives the
    /// socket table Pingora shares between services.
    pub fn new(
        inner: Listening<A>,
        stop: watch::Receiver<bool>,
        listen_fds: Arc<OnceLock<ListenFds>>,
    ) -> Self {
        Stoppable {
            inner,
            stop,
            listen_fds,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for Stoppable<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _pingora_shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(fds) = &fds {
            let _ = self.listen_fds.set(fds.clone());
        }
        Service::start_service(&mut self.inner, fds, self.stop.clone(), listeners_per_fd).await
    }

    fn name(&self) -> &str {
        Service::name(&self.inner)
    }

    fn threads(&self) -> Option<usize> {
        Service::threads(&self.inner)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Service::listen_addresses(&self.inner)
    }
}

/// An HTTP app whose idle connections stay open while its drain says so.
///
/// When its listener stops, Pingora's proxy closes every idle keep-alive
/// connection at once. A request a client sends on one of them a moment later
/// then meets a reset, which most clients do not retry for a POST. Kept open,
/// such a request is answered — 503 `shutting_down` during a shutdown, served
/// normally while a successor takes over — and its connection then closes
/// (Pingora turns keep-alive off once the listener's watch fired), so the
/// client reconnects elsewhere. During a shutdown they stay open until the
/// process exits; after a hand-over the supervisor closes them once the
/// successor serves, and then waits for what they still carried.
pub struct KeepOpenWhileDraining<A> {
    inner: Arc<A>,
    drain: Arc<Drain>,
}

impl<A> KeepOpenWhileDraining<A> {
    /// `inner`, whose idle connections outlive its listener until `drain`
    /// releases them.
    pub fn new(inner: A, drain: Arc<Drain>) -> Self {
        KeepOpenWhileDraining {
            inner: Arc::new(inner),
            drain,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for KeepOpenWhileDraining<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.inner.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    /// Called once the listener stopped, which only a drain does.
    async fn http_cleanup(&self) {
        self.drain.idle_connections_released().await;
        self.inner.http_cleanup().await
    }
}
