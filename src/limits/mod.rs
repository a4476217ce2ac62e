//! Per-key rate limits (DESIGN.md §2 "Rate-limit semantics"): requests and tokens
//! per minute as GCRA token buckets, exact under concurrency, with token
//! reservations corrected to the real usage.
//!
//! Built on our own small GCRA (`gcra.rs`) rather than a crate: `pingora-limits`
//! is a fixed-window estimator (fine for counting, not for exact quotas), and
//! `governor` cannot give units back, which the token budget needs every time a
//! reservation is corrected or released.

mod estimate;
mod gcra;
mod headers;
mod key_limiter;
mod registry;
mod reservation;

pub use estimate::{prompt_tokens, tokens_in};
pub use registry::Limits;
pub use reservation::Reservation;
