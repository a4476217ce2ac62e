//! Applying the config file to the running gateway: read, validate in full,
//! then swap.
//!
//! A rejected file changes nothing but a log line and a metric. An accepted
//! one becomes the snapshot every new request loads; requests in flight keep
//! the snapshot they started with (they hold its `Arc`). State that outlives a
//! snapshot — health, circuits, cooldowns, limiter buckets — is keyed by stable
//! ids and carried over by `App::install`.

use crate::app::App;
use crate::config::{self, Config, ConfigError, PingoraSettings};

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
    let needs_restart = app.bound.changed_in(&config);
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

/// The settings bound at start-up: the listening sockets, and Pingora's server
/// settings (threads, upgrade socket…). Only a restart or a binary upgrade
/// applies a change to them, so a reload compares with these, not with the
/// last file it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub listen: String,
    pub admin_listen: String,
    pub pingora: PingoraSettings,
}

impl Bound {
    /// What `config` binds.
    pub fn of(config: &Config) -> Self {
        Bound {
            listen: config.listen.clone(),
            admin_listen: config.admin_listen.clone(),
            pingora: config.pingora.clone(),
        }
    }

    /// The settings `config` would bind differently.
    pub fn changed_in(&self, config: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listen != config.listen {
            changed.push("listen");
        }
        if self.admin_listen != config.admin_listen {
            changed.push("admin_listen");
        }
        if self.pingora != config.pingora {
            changed.push("pingora");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Fingerprint;
    use pingora::connectors::http::Connector;

    const BASE: &str = "\
keys:
  - { name: app, key: sk-app, rate_limit: { requests_per_minute: 60 } }
providers:
  demo: { type: mock }
models:
  chat:
    targets:
      - { provider: demo, model: mock-1 }
";

    fn parsed(extra: &str) -> Config {
        config::parse(&format!("{BASE}{extra}"), "test.yaml").unwrap()
    }

    #[test]
    fn only_settings_bound_at_start_up_need_a_restart() {
        let bound = Bound::of(&parsed(""));
        assert!(bound
            .changed_in(&parsed("shutdown_timeout: 1s\n"))
            .is_empty());
        assert_eq!(
            bound.changed_in(&parsed("listen: 127.0.0.1:1234\n")),
            ["listen"]
        );
        assert_eq!(
            bound.changed_in(&parsed(
                "admin_listen: 127.0.0.1:1235\npingora:\n  threads: 3\n"
            )),
            ["admin_listen", "pingora"]
        );
    }

    #[test]
    fn a_reload_swaps_the_snapshot_keeps_state_and_a_bad_file_changes_nothing() {
        let path = std::env::temp_dir().join(format!(
            "switchyard-reload-{}-{}.yaml",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, BASE).unwrap();
        let app = App::new(parsed(""), Connector::new(None)).unwrap();
        let mut file = ConfigFile::new(&path, Fingerprint::of(BASE));
        let key = &app.config().keys[0];
        let limiter = app.state.limits.get(key).unwrap();

        let added =
            format!("{BASE}  embed:\n    targets:\n      - {{ provider: demo, model: e }}\n");
        std::fs::write(&path, &added).unwrap();
        let reloaded = reload(&app, &mut file).unwrap();
        assert_eq!(reloaded.generation, 2);
        assert!(app.config().models.contains_key("embed"));
        let key = &app.config().keys[0];
        assert!(
            std::sync::Arc::ptr_eq(&limiter, &app.state.limits.get(key).unwrap()),
            "the key's buckets carried over"
        );
        assert!(!file.poll() && !file.poll(), "the reload's text is applied");

        std::fs::write(&path, format!("{added}bogus: 1\n")).unwrap();
        let e = reload(&app, &mut file).unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        assert_eq!(app.metrics.config_generation(), 2);
        assert!(app.config().models.contains_key("embed"), "still serving");
        std::fs::remove_file(&path).unwrap();
    }
}
