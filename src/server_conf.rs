//! Pingora's `ServerConf` from the `pingora:` section of our config.
//!
//! Pingora would read its settings from the file's top level and ignore unknown
//! keys; we validate the section ourselves and hand Pingora the result.

use pingora::server::configuration::ServerConf;

use crate::config::PingoraSettings;

/// Pingora's settings, with worker threads defaulting to the machine's cores
/// (Pingora's own default is one per service).
pub fn build(settings: &PingoraSettings) -> ServerConf {
    let threads = settings.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut conf = ServerConf {
        threads,
        error_log: settings.error_log.clone(),
        user: settings.user.clone(),
        group: settings.group.clone(),
        ca_file: settings.ca_file.clone(),
        // Switchyard drains before it hands over to Pingora's shutdown (see
        // `lifecycle`), so Pingora's unconditional grace sleep is skipped, and its
        // runtimes only hold background tasks by then: nothing to wait for.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(
            settings.graceful_shutdown_timeout_seconds.unwrap_or(0),
        ),
        ..ServerConf::default()
    };
    if let Some(v) = settings.work_stealing {
        conf.work_stealing = v;
    }
    if let Some(v) = &settings.pid_file {
        conf.pid_file = v.clone();
    }
    if let Some(v) = &settings.upgrade_sock {
        conf.upgrade_sock = v.clone();
    }
    if let Some(v) = settings.upstream_keepalive_pool_size {
        conf.upstream_keepalive_pool_size = v;
    }
    if let Some(v) = settings.daemon_wait_for_ready {
        conf.daemon_wait_for_ready = v;
    }
    conf
}
