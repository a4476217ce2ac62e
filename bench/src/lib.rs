//! Shared pieces of Switchyard's benchmark tools (`fake-upstream` and `loadgen`):
//! a tiny option parser, a minimal HTTP/1.1 reader and writer over tokio TCP,
//! byte-level scans of JSON and SSE text (no JSON parser, to stay fast and small),
//! and Bedrock's paths and event frames.

pub mod args;
pub mod bedrock;
pub mod http;
pub mod scan;
