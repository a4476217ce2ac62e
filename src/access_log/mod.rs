//! One JSON line per client request on stdout — and nothing else on stdout.
//!
//! `line` builds a request's line from its record; `writer` gets it to stdout
//! without making the request wait.

mod line;
mod writer;

pub use writer::AccessLog;
