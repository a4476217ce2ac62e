//! One request's hold on its key's budgets, kept in the request record.
//!
//! It exists from authentication on (so every answer to a key with limits carries
//! the headers), admits the request at the limits step, and is settled exactly
//! once: corrected to the real usage, kept at the estimate when the usage is
//! unknown, or released when the request failed. One that is dropped unsettled
//! (the request task was cancelled) is released.

use std::sync::Arc;

use super::estimate::{self, Estimate};
use super::headers::{openai_duration, rate_limit_headers};
use super::key_limiter::{Budget, KeyLimiter, Refusal};
use crate::errors::ApiError;
use crate::llm_request::LlmRequest;

/// What a request holds of its key's budgets.
pub struct Reservation {
    limiter: Arc<KeyLimiter>,
    /// Tokens reserved on admission; 0 before it (and without a token budget).
    tokens: u64,
    /// Admitted and not settled yet.
    open: bool,
}

impl Reservation {
    /// Nothing held yet: the headers can already be reported.
    pub fn new(limiter: Arc<KeyLimiter>) -> Reservation {
        Reservation {
            limiter,
            tokens: 0,
            open: false,
        }
    }

    /// Admits `request`, reserving its token estimate; the 429 says which budget
    /// refused it, and for how long.
    pub fn admit(&mut self, request: &LlmRequest) -> Result<(), ApiError> {
        let settings = self.limiter.settings();
        let estimate = match settings.tokens_per_minute {
            Some(_) => estimate::request_tokens(request, settings.default_max_tokens),
            None => Estimate {
                prompt: 0,
                output: 0,
            },
        };
        self.limiter
            .admit(estimate.total())
            .map_err(|refusal| self.refused(refusal, estimate))?;
        self.tokens = estimate.total();
        self.open = true;
        Ok(())
    }

    /// Settles the reservation: `Some(used)` corrects it to the real usage
    /// (`Some(0)` releases it), `None` keeps the estimate charged. Only the first
    /// call counts.
    pub fn settle(&mut self, used: Option<u64>) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        if let Some(used) = used {
            self.limiter.correct(self.tokens, used);
        }
    }

    /// The `x-ratelimit-*` headers as of now.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        rate_limit_headers(&self.limiter.levels())
    }

    /// The 429 for `refusal` of a request that reserves `estimate`.
    fn refused(&self, refusal: Refusal, estimate: Estimate) -> ApiError {
        let Refusal {
            budget,
            wait,
            requested,
            limit,
        } = refusal;
        let per_minute = match budget {
            Budget::Requests => "requests per minute",
            Budget::Tokens => "tokens per minute",
        };
        let key = self.limiter.key();
        let Some(wait) = wait else {
            return ApiError::never_fits(format!(
                "Request too large for key '{key}' on {per_minute}: limit {limit}, requested \
                 {requested} (estimated: {} for the prompt, at 4 characters a token, plus {} \
                 for the output: max_tokens, or the key's default, times n). It can never \
                 fit; lower max_tokens or max_completion_tokens, or shorten the prompt.",
                estimate.prompt, estimate.output
            ));
        };
        let retry_after_ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let message = match budget {
            Budget::Requests => format!(
                "Rate limit reached for key '{key}' on {per_minute}: limit {limit}. Please try \
                 again in {}.",
                openai_duration(wait)
            ),
            Budget::Tokens => format!(
                "Rate limit reached for key '{key}' on {per_minute}: limit {limit}, requested \
                 {requested} (estimated). Please try again in {}.",
                openai_duration(wait)
            ),
        };
        ApiError::key_rate_limited(budget.as_str(), message, retry_after_ms)
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.limiter.key())
            .field("tokens", &self.tokens)
            .field("open", &self.open)
            .finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.settle(Some(0));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prometheus::IntCounter;

    use super::*;
    use crate::config::RateLimit;
    use crate::llm_request::Operation;

    fn limiter(requests: Option<u64>, tokens: Option<u64>) -> Arc<KeyLimiter> {
        let settings = RateLimit {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
            default_max_tokens: 100,
        };
        Arc::new(KeyLimiter::new(
            "app",
            settings,
            IntCounter::new("r", "t").unwrap(),
        ))
    }

    fn request(max_tokens: u64) -> LlmRequest {
        let body = format!(
            r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"abcdefgh"}}]}}"#
        );
        LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body)).unwrap()
    }

    fn remaining_tokens(limiter: &KeyLimiter) -> u64 {
        limiter.levels().tokens.unwrap().remaining
    }

    #[test]
    fn a_settled_reservation_is_corrected_once() {
        let l = limiter(None, Some(1000));
        let mut r = Reservation::new(l.clone());
        // "user" + "abcdefgh" = 12 characters → 3 tokens, plus 50.
        r.admit(&request(50)).unwrap();
        assert_eq!(remaining_tokens(&l), 1000 - 53);
        r.settle(Some(20));
        r.settle(Some(0));
        drop(r);
        assert_eq!(remaining_tokens(&l), 980);
    }

    #[test]
    fn unknown_usage_keeps_the_estimate_and_a_dropped_reservation_releases() {
        let l = limiter(None, Some(1000));
        let mut kept = Reservation::new(l.clone());
        kept.admit(&request(97)).unwrap();
        kept.settle(None);
        drop(kept);
        assert_eq!(remaining_tokens(&l), 900);
        let mut dropped = Reservation::new(l.clone());
        dropped.admit(&request(97)).unwrap();
        drop(dropped);
        assert_eq!(remaining_tokens(&l), 900);
    }

    #[test]
    fn refusals_are_openai_429s_with_honest_hints() {
        let l = limiter(Some(1), Some(1000));
        let mut first = Reservation::new(l.clone());
        first.admit(&request(10)).unwrap();
        let e = Reservation::new(l.clone()).admit(&request(10)).unwrap_err();
        assert_eq!((e.status, e.kind.as_str()), (429, "requests"));
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(
            e.message
                .contains("key 'app' on requests per minute: limit 1"),
            "{}",
            e.message
        );
        let wait = e.retry_after_ms.unwrap();
        assert!((59_000..=60_000).contains(&wait), "{wait}");
        let e = Reservation::new(l).admit(&request(5000)).unwrap_err();
        assert_eq!((e.kind.as_str(), e.retry_after_ms), ("tokens", None));
        assert!(e.message.contains("can never fit"), "{}", e.message);
    }

    #[test]
    fn headers_report_the_budgets_after_this_request() {
        let l = limiter(Some(10), None);
        let mut r = Reservation::new(l);
        assert_eq!(
            r.headers()[1],
            ("x-ratelimit-remaining-requests", "10".into())
        );
        r.admit(&request(1)).unwrap();
        let headers = r.headers();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[1], ("x-ratelimit-remaining-requests", "9".into()));
        assert_eq!(headers[2], ("x-ratelimit-reset-requests", "6s".into()));
    }
}
