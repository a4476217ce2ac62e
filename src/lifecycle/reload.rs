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
        let old = parsed("");
        assert!(needs_restart(&old, &parsed("shutdown_timeout: 1s\n")).is_empty());
        assert_eq!(
            needs_restart(&old, &parsed("listen: 127.0.0.1:1234\n")),
            ["listen"]
        );
        assert_eq!(
            needs_restart(
                &old,
                &parsed("admin_listen: 127.0.0.1:1235\npingora:\n  threads: 3\n")
            ),
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
