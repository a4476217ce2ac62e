//! Whether the API listener accepts connections, for `/readyz`.
//!
//! Pingora binds each service's listeners in that service's own thread, so under
//! load the admin listener can answer before the API port is bound. DESIGN.md
//! promises `/readyz` is 200 only once the listeners are up, so readiness connects
//! to the API address itself until that has worked once, then remembers it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

/// How long one readiness check waits for the API listener to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Whether the API listener has been seen accepting connections.
#[derive(Default)]
pub struct ApiListener {
    up: AtomicBool,
}

impl ApiListener {
    /// True once a connection to `listen` has succeeded.
    pub async fn is_up(&self, listen: &str) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(listen)).await;
        let up = matches!(connect, Ok(Ok(_)));
        if up {
            self.up.store(true, Ordering::Relaxed);
        }
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_only_once_something_accepts_and_then_remembered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let api = ApiListener::default();
        assert!(!api.is_up(&addr).await, "nothing listens yet");
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        assert!(api.is_up(&addr).await);
        drop(listener);
        assert!(
            api.is_up(&addr).await,
            "remembered: a bound listener stays bound"
        );
    }
}
