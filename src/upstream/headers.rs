//! Which upstream response headers reach the client.
//!
//! An allow-list, not a deny-list: a provider adding a header must not leak account
//! details (organisation and project ids, cookies, its own rate-limit state) to the
//! app. The upstream's `x-request-id` is kept as `x-upstream-request-id`, because
//! `x-request-id` is the gateway's own.

use pingora::http::ResponseHeader;

/// Headers passed through unchanged.
const PASSED: [&str; 8] = [
    "content-type",
    "openai-processing-ms",
    "openai-version",
    "retry-after",
    "retry-after-ms",
    "apim-request-id",
    "x-ms-region",
    "x-amzn-requestid",
];

/// Allowed headers of `upstream`, renamed where needed.
pub fn allowed(upstream: &ResponseHeader) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for name in PASSED {
        if let Some(value) = upstream.headers.get(name).and_then(|v| v.to_str().ok()) {
            out.push((name, value.to_string()));
        }
    }
    if let Some(id) = upstream
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        out.push(("x-upstream-request-id", id.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_diagnostics_and_drops_account_details() {
        let mut h = ResponseHeader::build(200, None).unwrap();
        for (n, v) in [
            ("content-type", "application/json"),
            ("openai-processing-ms", "12"),
            ("x-request-id", "req_1"),
            ("openai-organization", "org-secret"),
            ("openai-project", "proj_1"),
            ("set-cookie", "a=b"),
            ("x-ratelimit-remaining-requests", "5"),
            ("content-length", "99"),
            ("connection", "keep-alive"),
        ] {
            h.append_header(n, v).unwrap();
        }
        let out = allowed(&h);
        assert_eq!(
            out,
            vec![
                ("content-type", "application/json".to_string()),
                ("openai-processing-ms", "12".to_string()),
                ("x-upstream-request-id", "req_1".to_string()),
            ]
        );
    }
}
