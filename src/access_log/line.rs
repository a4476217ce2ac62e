//! The access-log line of one client request.
//!
//! The keys are always the same, `null` when they do not apply, so log pipelines can
//! rely on the shape. No secret is ever in the record this is built from, and no
//! request or response body is: a line says what happened, not what was said.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::record::RequestRecord;

/// One request's line, taken out of its record when the request ends: the
/// request path only moves strings, and the writer thread does the formatting.
#[derive(Serialize)]
pub struct Line {
    #[serde(serialize_with = "rfc3339")]
    time: SystemTime,
    request_id: String,
    key: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    target: Option<String>,
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
    error: Option<String>,
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&DateTime::<Utc>::from(*time).to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Line {
    /// The line of a finished request. Its strings are moved out of `record`,
    /// which nothing reads after the access log.
    pub fn take(record: &mut RequestRecord) -> Line {
        let attempts = record.tries.len();
        let upstream_ms = (attempts > 0).then(|| millis(record.upstream_wait));
        let (provider, target) = match record.tries.pop() {
            Some(last) => (Some(last.provider), Some(last.target)),
            None => (None, None),
        };
        Line {
            time: record.time,
            request_id: std::mem::take(&mut record.request_id),
            key: record.key.take(),
            model: record.model.take(),
            upstream_ms,
            provider,
            target,
            attempts,
            status: record.final_status(),
            stream: record.stream,
            duration_ms: millis(record.started.elapsed()),
            ttft_ms: record.ttft.map(millis),
            input_tokens: record.usage.map(|u| u.input_tokens),
            output_tokens: record.usage.map(|u| u.output_tokens),
            usage_estimated: record.usage.map(|_| record.usage_estimated),
            cost_usd: record.cost_usd(),
            error: record.error.take(),
        }
    }

    /// Writes the JSON line, without the trailing newline.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(out, self).map_err(std::io::Error::from)
    }
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
        let mut json = Vec::new();
        Line::take(&mut r).write_json(&mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
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
