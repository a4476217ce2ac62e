//! W3C Trace Context (`traceparent`, `tracestate`): the client's headers go
//! upstream untouched.
//!
//! The gateway does not join the trace (it exports no spans), so it must not
//! invent a parent either: the provider sees the app's own span as its parent,
//! and a trace reads app → provider with the gateway's time inside that hop.

use http::HeaderValue;
use pingora::http::RequestHeader;

/// The client's trace headers, if it sent any.
#[derive(Debug, Clone, Default)]
pub struct TraceContext {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// The trace headers among the client's `headers`.
    pub fn from_client(headers: &http::HeaderMap) -> Self {
        TraceContext {
            traceparent: headers.get("traceparent").cloned(),
            tracestate: headers.get("tracestate").cloned(),
        }
    }

    /// Adds the trace headers to an upstream request, before anything signs it.
    pub fn apply(&self, upstream: &mut RequestHeader) -> pingora::Result<()> {
        if let Some(value) = &self.traceparent {
            upstream.insert_header("traceparent", value.clone())?;
        }
        if let Some(value) = &self.tracestate {
            upstream.insert_header("tracestate", value.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_clients_headers_byte_for_byte_and_adds_none_of_its_own() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut client = http::HeaderMap::new();
        client.insert("traceparent", HeaderValue::from_static(parent));
        client.insert(
            "tracestate",
            HeaderValue::from_static("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        );
        let mut upstream = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        TraceContext::from_client(&client)
            .apply(&mut upstream)
            .unwrap();
        assert_eq!(upstream.headers["traceparent"], parent);
        assert_eq!(
            upstream.headers["tracestate"],
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );

        let mut bare = RequestHeader::build("POST", b"/", None).unwrap();
        TraceContext::default().apply(&mut bare).unwrap();
        assert!(bare.headers.get("traceparent").is_none());
        assert!(bare.headers.get("tracestate").is_none());
    }
}
