//! The access-log line of one client request.
//!
//! The keys are always the same, `null` when they do not apply, so log pipelines can
//! rely on the shape. No secret is ever in the record this is built from, and no
//! request or response body is: a line says what happened, not what was said.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::record::RequestRecord;

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    key: Option<&'a str>,
    model: Option<&'a str>,
    provider: Option<&'a str>,
    target: Option<&'a str>,
    attempts: usize,
    status: u16,
    stream: Option<bool>,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    upstream_ms: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// The tokens were estimated from the streamed text, not reported upstream.
    usage_estimated: Option<bool>,
    cost_usd: Option<f64>,
    error: Option<&'a str>,
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The access-log line for `record`, without the trailing newline.
pub fn format(record: &RequestRecord) -> String {
    let last = record.last_try();
    let line = Line {
        time: DateTime::<Utc>::from(record.time).to_rfc3339_opts(SecondsFormat::Millis, true),
        request_id: &record.request_id,
        key: record.key.as_deref(),
        model: record.model.as_deref(),
        provider: last.map(|t| t.provider.as_str()),
        target: last.map(|t| t.target.as_str()),
        attempts: record.tries.len(),
        status: record.final_status(),
        stream: record.stream,
        duration_ms: millis(record.started.elapsed()),
        ttft_ms: record.ttft.map(millis),
        upstream_ms: last.map(|_| millis(record.upstream_wait)),
        input_tokens: record.usage.map(|u| u.input_tokens),
        output_tokens: record.usage.map(|u| u.output_tokens),
        usage_estimated: record.usage.map(|_| record.usage_estimated),
        cost_usd: record.cost_usd(),
        error: record.error.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_present_and_null_when_unknown() {
        let mut r = RequestRecord::start();
        r.request_id = "abc".into();
        r.status = 401;
        r.error = Some("invalid_api_key".into());
        let v: serde_json::Value = serde_json::from_str(&format(&r)).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "attempts",
                "cost_usd",
                "duration_ms",
                "error",
                "input_tokens",
                "key",
                "model",
                "output_tokens",
                "provider",
                "request_id",
                "status",
                "stream",
                "target",
                "time",
                "ttft_ms",
                "upstream_ms",
                "usage_estimated"
            ]
        );
        assert!(obj["key"].is_null() && obj["provider"].is_null() && obj["upstream_ms"].is_null());
        assert_eq!(obj["status"], 401);
        assert_eq!(obj["attempts"], 0);
        assert!(obj["time"].as_str().unwrap().ends_with('Z'));
    }
}
