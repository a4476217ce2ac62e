//! Active health checks: one background task for the process probes every target
//! whose provider has a `health_check`, once per `interval`.
//!
//! Each probe is free: the dialect's listing request (`GET /models` for OpenAI,
//! the models listing for Azure), sent with the target's own credential so a
//! revoked key shows up as unhealthy, or a fresh TCP+TLS connect for Bedrock,
//! whose API has no free request. Names resolve through the shared async DNS
//! cache. Results land in the target's state (`target_state.rs`), under its id,
//! so they survive a reload for unchanged targets.
//!
//! Probes run as their own tasks: a slow probe (up to `timeout`) never delays
//! another target's schedule.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::connectors::TransportConnector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::app::App;
use crate::config::{HealthCheck, Target};
use crate::dialect::{self, HealthProbe};
use crate::upstream::exchange::{self, Limits};
use crate::upstream::peer;

/// The longest the checker sleeps, so targets added by a reload are probed soon.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Largest probe answer read (to keep its connection reusable).
const MAX_PROBE_BODY: usize = 4 * 1024 * 1024;

/// The background task that probes every target.
pub struct HealthChecker {
    app: Arc<App>,
    connectors: Arc<ProbeConnectors>,
}

/// The checker's own connections. Not the request path's pool: these sockets
/// belong to the checker's runtime, and requests must never ride on them.
pub struct ProbeConnectors {
    /// HTTP probes.
    pub http: Connector,
    /// Fresh connections for connect-only probes: a pooled one would prove nothing.
    pub transport: TransportConnector,
}

impl HealthChecker {
    /// A checker over `app`'s current config.
    pub fn new(app: Arc<App>, connectors: ProbeConnectors) -> Self {
        HealthChecker {
            app,
            connectors: Arc::new(connectors),
        }
    }

    /// Starts the probes that are due; returns when the next one is.
    fn launch_due(&self, next_probe: &mut HashMap<String, Instant>) -> Instant {
        let config = self.app.config();
        let now = Instant::now();
        let mut wake = now + MAX_SLEEP;
        let mut probed: HashSet<&str> = HashSet::new();
        for target in config.models.values().flat_map(|m| m.targets.iter()) {
            let Some(check) = target.provider.health_check else {
                continue;
            };
            if !probed.insert(&target.id) {
                continue;
            }
            let due = next_probe.entry(target.id.clone()).or_insert(now);
            if *due <= now {
                *due = now + check.interval;
                let (app, connectors, target) =
                    (self.app.clone(), self.connectors.clone(), target.clone());
                tokio::spawn(async move { probe(&app, &connectors, &target, check).await });
            }
            wake = wake.min(*due);
        }
        next_probe.retain(|id, _| probed.contains(id.as_str()));
        wake
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut next_probe = HashMap::new();
        loop {
            let wake = self.launch_due(&mut next_probe);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Probes `target` once and records the result in its state.
async fn probe(app: &App, connectors: &ProbeConnectors, target: &Target, check: HealthCheck) {
    let result = tokio::time::timeout(check.timeout, probe_once(app, connectors, target, check))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", check.timeout)));
    let state = app.state.targets.get(target);
    match (
        state.probed(result.is_ok(), check.failure_threshold),
        result,
    ) {
        (Some(false), Err(why)) => log::warn!(
            "target {} is unhealthy after {} failed probes; last: {why}",
            target.id,
            check.failure_threshold
        ),
        (Some(true), _) => log::info!("target {} is healthy again", target.id),
        (None, Err(why)) => log::debug!("probe of {} failed: {why}", target.id),
        _ => {}
    }
}

async fn probe_once(
    app: &App,
    connectors: &ProbeConnectors,
    target: &Target,
    check: HealthCheck,
) -> Result<(), String> {
    let kind = &target.provider.kind;
    let (Some(dialect), Some(url)) = (dialect::of(kind), kind.upstream_url()) else {
        return Ok(());
    };
    let how = dialect
        .health_probe(target)
        .map_err(|e| format!("cannot build the probe: {}", e.message))?;
    let addrs = app.state.dns.resolve(&url.host, url.port).await?;
    match how {
        HealthProbe::Connect => {
            let mut last = "no address".to_string();
            for addr in addrs.iter() {
                let peer = peer::for_address(*addr, url, check.timeout);
                match connectors.transport.new_stream(&peer).await {
                    Ok(_stream) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        }
        HealthProbe::Request(header) => {
            let limits = Limits {
                connect: check.timeout,
                first_byte: check.timeout,
                idle: check.timeout,
                total_deadline: Instant::now() + check.timeout,
            };
            let mut answer = exchange::open(
                &connectors.http,
                &addrs,
                url,
                &header,
                &Bytes::new(),
                limits,
            )
            .await
            .map_err(|f| format!("{f:?}"))?;
            let status = answer.header().status;
            let _ = answer.read_to_end(&limits, MAX_PROBE_BODY).await;
            answer.finish(&connectors.http).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status} to {}", header.uri))
            }
        }
    }
}
