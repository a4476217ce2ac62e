//! The admin listener: `/healthz`, `/readyz` and `/metrics`.
//!
//! It runs as its own Pingora service on `admin_listen`, so scraping metrics never
//! competes with API traffic for a connection slot, and the API port serves only the
//! OpenAI surface.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::App;
use crate::errors::ApiError;

/// The admin endpoints.
pub struct Admin {
    app: Arc<App>,
}

impl Admin {
    /// Admin endpoints over the shared app.
    pub fn new(app: Arc<App>) -> Self {
        Admin { app }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.as_str();
        let path = header.uri.path();
        match (method, path) {
            ("GET", "/healthz") => respond(200, "text/plain", b"ok\n".to_vec()),
            ("GET", "/readyz") => {
                let listen = &self.app.bound.listen;
                let (status, state) = if self.app.drain.refuses_requests() {
                    (503, "draining")
                } else if self.app.state.api_listener.is_up(listen).await {
                    (200, "ready")
                } else {
                    (503, "starting")
                };
                let body = serde_json::json!({
                    "status": state,
                    "config_generation": self.app.metrics.config_generation(),
                });
                respond(status, "application/json", body.to_string().into_bytes())
            }
            ("GET", "/metrics") => respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.app.metrics.render(),
            ),
            (_, "/healthz" | "/readyz" | "/metrics") => {
                let e = ApiError::method_not_allowed(method, path);
                respond(e.status, "application/json", e.body().to_vec())
            }
            _ => {
                let e = ApiError::unknown_path(path);
                respond(e.status, "application/json", e.body().to_vec())
            }
        }
    }
}
