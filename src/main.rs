//! Switchyard: an OpenAI-compatible LLM gateway sidecar on Pingora.
//!
//! `switchyard -c FILE` runs; `switchyard -t -c FILE` validates the whole config and
//! exits. Our config is read before Pingora starts, because Pingora's own `-t` only
//! checks its own settings and would read our file as its `ServerConf`. Signals,
//! reloads and the drain belong to `lifecycle::Supervisor`.

mod access_log;
mod admin;
mod app;
mod attempt;
mod auth;
mod body;
mod circuit;
mod client_watch;
mod config;
mod diagnostics;
mod dialect;
mod dns;
mod downstream;
mod endpoint;
mod errors;
mod gateway;
mod glob;
mod health;
mod json_members;
mod lifecycle;
mod limits;
mod llm_request;
mod metrics;
mod models;
mod pipeline;
mod readiness;
mod record;
mod request_id;
mod routing;
mod server_conf;
mod state;
mod target_state;
mod targets;
mod trace_context;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use pingora::connectors::http::Connector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use lifecycle::{Fingerprint, Handover, KeepOpenWhileDraining, Notifier, Stoppable, Supervisor};

fn main() -> ExitCode {
    diagnostics::init();
    lifecycle::process::hold_off_signals();
    let mut opt = Opt::parse_args();
    let Some(path) = opt.conf.take().map(PathBuf::from) else {
        eprintln!("switchyard: no configuration file; run `switchyard -c FILE`");
        return ExitCode::from(2);
    };
    // `-d` changes to `/`: the file watch and a successor need the full path
    // (not the canonical one: a symlink swapped by a deployment must be followed).
    let path = std::path::absolute(&path).unwrap_or(path);
    let loaded = config::read(&path).and_then(|text| {
        let config = config::parse(&text, &path.display().to_string())?;
        Ok((config, Fingerprint::of(&text)))
    });
    let (config, started_with) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("switchyard: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opt.test {
        eprintln!("switchyard: configuration {} is valid", path.display());
        return ExitCode::SUCCESS;
    }
    lifecycle::process::raise_open_file_limit();
    let upgrading = opt.upgrade;
    let mut server = Server::new_with_opt_and_conf(opt, server_conf::build(&config.pingora));
    // With `-u` this waits for the old process's sockets.
    server.bootstrap();
    let notifier = Notifier::from_env();
    if upgrading {
        // The sockets are ours: claim the unit before the old process exits.
        notifier.main_pid();
    }
    let connector_options = ConnectorOptions::from_server_conf(&server.configuration);
    let connector = Connector::new(Some(connector_options.clone()));
    let app = match app::App::new(config, connector) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            eprintln!("switchyard: cannot start the access-log writer: {e}");
            return ExitCode::FAILURE;
        }
    };

    let proxy = KeepOpenWhileDraining::new(
        pingora::proxy::http_proxy(&server.configuration, gateway::Gateway::new(app.clone())),
        app.drain.clone(),
    );
    let mut api = Service::new("switchyard api".to_string(), proxy);
    api.add_tcp(&app.bound.listen);
    let listen_fds = Arc::new(OnceLock::new());
    let (api_stop, api_stopped) = tokio::sync::watch::channel(false);
    let api = Stoppable::new(api, api_stopped, listen_fds.clone());
    let mut admin = Service::new(
        "switchyard admin".to_string(),
        admin::Admin::new(app.clone()),
    );
    admin.add_tcp(&app.bound.admin_listen);
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin = Stoppable::new(admin, admin_stopped, listen_fds.clone());
    let probes = health::ProbeConnectors {
        http: Connector::new(Some(connector_options.clone())),
        transport: TransportConnector::new(Some(connector_options)),
    };
    let health = health::HealthChecker::new(app.clone(), probes);
    let dns = dns::DnsRefresh::new(app.clone(), dns::REFRESH_INTERVAL);
    server.add_service(api);
    server.add_service(admin);
    server.add_service(background_service("dns refresh", dns));
    server.add_service(background_service("health checks", health));
    let handover = Handover::new(
        listen_fds,
        app.bound.pingora.upgrade_sock.clone(),
        path.clone(),
    );
    log::info!(
        "switchyard listening on {} (admin {})",
        app.bound.listen,
        app.bound.admin_listen
    );
    let supervisor = Supervisor::new(
        app,
        notifier,
        api_stop,
        admin_stop,
        handover,
        path,
        started_with,
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(supervisor),
    });
    ExitCode::SUCCESS
}
