//! The Pingora `ProxyHttp` implementation: thin on purpose.
//!
//! Every request is answered from `request_filter` (the pipeline drives upstream
//! exchanges itself; see `upstream/exchange.rs`), so Pingora's own proxy loop never
//! runs and `upstream_peer` is unreachable. `logging` runs for every request and
//! turns the request record into metrics and the access-log line.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::app::App;
use crate::pipeline;
use crate::record::RequestRecord;

/// The API listener's request handler.
pub struct Gateway {
    app: Arc<App>,
}

impl Gateway {
    /// A handler over the shared app.
    pub fn new(app: Arc<App>) -> Self {
        Gateway { app }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestRecord;

    fn new_ctx(&self) -> RequestRecord {
        let mut record = RequestRecord::start();
        record.in_flight = Some(self.app.drain.enter());
        record
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
    ) -> Result<bool> {
        pipeline::handle(&self.app, session, record).await;
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut RequestRecord) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            InternalError,
            "every request is answered in request_filter; Pingora's proxy loop is not used",
        )
    }

    async fn logging(
        &self,
        session: &mut Session,
        error: Option<&Error>,
        record: &mut RequestRecord,
    ) {
        if record.status == 0 {
            record.status = match (session.response_written(), error) {
                (Some(header), _) => header.status.as_u16(),
                (None, Some(_)) => 500,
                (None, None) => 0,
            };
        }
        record.settle_limits();
        self.app.metrics.observe(record);
        // Last: the line takes the record's strings.
        self.app.access_log.write(record);
    }
}
