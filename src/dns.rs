//! Asynchronous, cached, background-refreshed name resolution for upstream hosts.
//!
//! Pingora's `HttpPeer::new("host:port")` resolves with a blocking call and panics
//! when the name does not resolve, so peers are always built from addresses that
//! this resolver found with tokio's non-blocking lookup. Answers are cached and
//! refreshed in the background; a failed refresh keeps the last good answer, so a
//! DNS outage does not become a gateway outage.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::app::App;

/// How long one lookup may take in the background refresh.
const REFRESH_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often every configured upstream host is looked up again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

type Answer = Arc<[SocketAddr]>;

/// Cached answers keyed by `(host, port)`.
#[derive(Default)]
pub struct Resolver {
    answers: RwLock<HashMap<(String, u16), Answer>>,
}

impl Resolver {
    /// The addresses of `host:port`: literal IPs directly, names from the cache, or
    /// from a lookup whose answer is then cached.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Answer, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        if let Some(answer) = self.cached(host, port) {
            return Ok(answer);
        }
        let answer = lookup(host, port).await?;
        self.store(host, port, answer.clone());
        Ok(answer)
    }

    fn cached(&self, host: &str, port: u16) -> Option<Answer> {
        let answers = self.answers.read().unwrap_or_else(|e| e.into_inner());
        answers.get(&(host.to_string(), port)).cloned()
    }

    fn store(&self, host: &str, port: u16, answer: Answer) {
        let mut answers = self.answers.write().unwrap_or_else(|e| e.into_inner());
        answers.insert((host.to_string(), port), answer);
    }

    /// Looks `host:port` up again, keeping the old answer when the lookup fails.
    async fn refresh(&self, host: &str, port: u16) {
        match tokio::time::timeout(REFRESH_LOOKUP_TIMEOUT, lookup(host, port)).await {
            Ok(Ok(answer)) => self.store(host, port, answer),
            Ok(Err(e)) => log::warn!("DNS refresh of {host} failed, keeping the last answer: {e}"),
            Err(_) => log::warn!("DNS refresh of {host} timed out, keeping the last answer"),
        }
    }
}

async fn lookup(host: &str, port: u16) -> Result<Answer, String> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    Ok(Arc::from(found))
}

/// The background task that keeps every configured upstream host's answer fresh.
pub struct DnsRefresh {
    app: Arc<App>,
    interval: Duration,
}

impl DnsRefresh {
    /// A refresher over the hosts of `app`'s current config.
    pub fn new(app: Arc<App>, interval: Duration) -> Self {
        DnsRefresh { app, interval }
    }

    async fn refresh_all(&self) {
        let config = self.app.config();
        for provider in config.providers.values() {
            if let Some(base_url) = provider.kind.upstream_url() {
                if base_url.host.parse::<IpAddr>().is_err() {
                    self.app
                        .state
                        .dns
                        .refresh(&base_url.host, base_url.port)
                        .await;
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.refresh_all().await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_skip_lookup_and_names_are_cached() {
        let r = Resolver::default();
        let a = r.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a[0], "127.0.0.1:80".parse().unwrap());
        let b = r.resolve("localhost", 81).await.unwrap();
        assert!(b.iter().all(|s| s.port() == 81 && s.ip().is_loopback()));
        assert!(r.cached("localhost", 81).is_some());
        assert!(r.resolve("nonexistent.invalid", 80).await.is_err());
    }
}
