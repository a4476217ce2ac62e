//! The `x-ratelimit-*` headers of DESIGN.md §2, in OpenAI's formats.
//!
//! OpenAI writes resets as Go-style durations: `120ms` below a second, otherwise
//! hours, minutes and seconds with a fractional second (`1s`, `1.5s`, `6m0s`).
//! Apps and SDK helpers parse that shape, so it is kept exactly.

use std::time::Duration;

use super::key_limiter::{Level, Levels};

/// The header pairs for `levels`: a trio per budget the key has.
pub fn rate_limit_headers(levels: &Levels) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    let mut trio = |names: [&'static str; 3], level: &Level| {
        out.push((names[0], level.limit.to_string()));
        out.push((names[1], level.remaining.to_string()));
        out.push((names[2], openai_duration(level.reset)));
    };
    if let Some(level) = &levels.requests {
        trio(
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            level,
        );
    }
    if let Some(level) = &levels.tokens {
        trio(
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
            level,
        );
    }
    out
}

/// `d` in OpenAI's duration format, rounded up to the millisecond (so a wait that
/// is not over never reads `0s`).
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms < 1000 {
        return if ms == 0 {
            "0s".to_string()
        } else {
            format!("{ms}ms")
        };
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let fraction = match ms % 1000 {
        0 => String::new(),
        f => format!(".{f:03}").trim_end_matches('0').to_string(),
    };
    match (hours, minutes) {
        (0, 0) => format!("{seconds}{fraction}s"),
        (0, _) => format!("{minutes}m{seconds}{fraction}s"),
        _ => format!("{hours}h{minutes}m{seconds}{fraction}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openai_s() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_micros(119_001), "120ms"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(2_384), "2.384s"),
            (Duration::from_millis(17_050), "17.05s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(90_250), "1m30.25s"),
            (Duration::from_secs(3_600), "1h0m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(openai_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn each_budget_the_key_has_gets_its_trio() {
        let levels = Levels {
            requests: Some(Level {
                limit: 600,
                remaining: 599,
                reset: Duration::from_millis(100),
            }),
            tokens: None,
        };
        assert_eq!(
            rate_limit_headers(&levels),
            [
                ("x-ratelimit-limit-requests", "600".to_string()),
                ("x-ratelimit-remaining-requests", "599".to_string()),
                ("x-ratelimit-reset-requests", "100ms".to_string()),
            ]
        );
        let tokens_only = Levels {
            requests: None,
            tokens: Some(Level {
                limit: 200_000,
                remaining: 0,
                reset: Duration::from_secs(360),
            }),
        };
        assert_eq!(rate_limit_headers(&tokens_only)[2].1, "6m0s");
    }
}
