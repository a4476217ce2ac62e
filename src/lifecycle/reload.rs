//! Applying the config file to the running gateway: read, validate in full,
//! then swap.
//!
//! A rejected file changes nothing but a log line and a metric. An accepted
//! one becomes the snapshot every new request loads; requests in flight keep
//! the snapshot they started with (they hold its `Arc`). State that outlives a
//! snapshot — health, circuits, cooldowns, limiter buckets — is keyed by stable
//! ids and carried over by `App::install`.

use crate::app::App;
use crate::config::{self, Config, ConfigError};

use super::config_file::ConfigFile;

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// The new `switchyard_config_generation`.
    pub generation: i64,
    /// Changed settings that only a restart (or binary upgrade) applies.
    pub needs_restart: Vec<&'static str>,
}

/// Reloads `file` into `app`, counting the result.
pub fn reload(app: &App, file: &mut ConfigFile) -> Result<Reloaded, ConfigError> {
    let config = match read_and_validate(file) {
        Ok(config) => config,
        Err(e) => {
            app.metrics.config_reloaded(false);
            return Err(e);
        }
    };
    let needs_restart = needs_restart(&app.config(), &config);
    app.install(config);
    Ok(Reloaded {
        generation: app.metrics.config_reloaded(true),
        needs_restart,
    })
}

fn read_and_validate(file: &mut ConfigFile) -> Result<Config, ConfigError> {
    let text = config::read(file.path())?;
    file.applied(&text);
    config::parse(&text, &file.path().display().to_string())
}

/// The settings of `new` that differ from `old` and are bound at start-up: the
/// listening sockets, and Pingora's server settings (threads, upgrade socket…).
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("admin_listen");
    }
    if old.pingora != new.pingora {
        changed.push("pingora");
    }
    changed
}
