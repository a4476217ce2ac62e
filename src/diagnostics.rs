//! The diagnostic log on stderr (`env_logger`, levels from `RUST_LOG`), with one
//! guard: trace records of the HTTP libraries are dropped, because they print
//! whole request headers: a client's `authorization`, and the gateway's own
//! upstream `authorization`, `api-key` and AWS session token.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Target prefixes of the libraries whose trace records dump headers.
const HEADER_DUMPERS: [&str; 2] = ["pingora", "h2"];

/// `env_logger` without the header dumps.
struct WithoutHeaderDumps(env_logger::Logger);

impl Log for WithoutHeaderDumps {
    fn enabled(&self, metadata: &Metadata) -> bool {
        !dumps_headers(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn dumps_headers(metadata: &Metadata) -> bool {
    metadata.level() == Level::Trace
        && HEADER_DUMPERS
            .iter()
            .any(|prefix| metadata.target().starts_with(prefix))
}

/// Installs the logger: `info` unless `RUST_LOG` says otherwise.
pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .target(env_logger::Target::Stderr)
            .build();
    let max_level: LevelFilter = logger.filter();
    if log::set_boxed_logger(Box::new(WithoutHeaderDumps(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(level: Level, target: &str) -> Metadata<'_> {
        Metadata::builder().level(level).target(target).build()
    }

    #[test]
    fn only_the_http_libraries_trace_records_are_dropped() {
        assert!(dumps_headers(&metadata(Level::Trace, "pingora_proxy")));
        assert!(dumps_headers(&metadata(
            Level::Trace,
            "pingora_core::protocols::http::v1::client"
        )));
        assert!(dumps_headers(&metadata(Level::Trace, "h2::codec")));
        assert!(!dumps_headers(&metadata(Level::Debug, "pingora_proxy")));
        assert!(!dumps_headers(&metadata(
            Level::Trace,
            "switchyard::attempt"
        )));
    }
}
