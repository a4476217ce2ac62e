//! Talking to upstream HTTP APIs with Pingora's connector.

pub mod exchange;
pub mod headers;
pub mod peer;
