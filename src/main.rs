//! Switchyard: an OpenAI-compatible LLM gateway sidecar on Pingora.
//!
//! `switchyard -c FILE` runs; `switchyard -t -c FILE` validates the whole config and
//! exits. Our config is read before Pingora starts, because Pingora's own `-t` only
//! checks its own settings and would read our file as its `ServerConf`.

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

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use pingora::connectors::http::Connector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::server::configuration::Opt;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

fn main() -> ExitCode {
    diagnostics::init();
    let mut opt = Opt::parse_args();
    let Some(path) = opt.conf.take() else {
        eprintln!("switchyard: no configuration file; run `switchyard -c FILE`");
        return ExitCode::from(2);
    };
    let config = match config::load(Path::new(&path)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchyard: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opt.test {
        eprintln!("switchyard: configuration {path} is valid");
        return ExitCode::SUCCESS;
    }
    let listen = config.listen.clone();
    let admin_listen = config.admin_listen.clone();
    let mut server = Server::new_with_opt_and_conf(opt, server_conf::build(&config.pingora));
    server.bootstrap();
    let connector_options = ConnectorOptions::from_server_conf(&server.configuration);
    let connector = Connector::new(Some(connector_options.clone()));
    let app = match app::App::new(config, connector) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            eprintln!("switchyard: cannot start the access-log writer: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut api = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway::Gateway::new(app.clone()),
        "switchyard api",
    );
    api.add_tcp(&listen);
    let mut admin = Service::new(
        "switchyard admin".to_string(),
        admin::Admin::new(app.clone()),
    );
    admin.add_tcp(&admin_listen);
    let probes = health::ProbeConnectors {
        http: Connector::new(Some(connector_options.clone())),
        transport: TransportConnector::new(Some(connector_options)),
    };
    let health = health::HealthChecker::new(app.clone(), probes);
    let dns = dns::DnsRefresh::new(app, dns::REFRESH_INTERVAL);
    server.add_service(api);
    server.add_service(admin);
    server.add_service(background_service("dns refresh", dns));
    server.add_service(background_service("health checks", health));
    log::info!("switchyard listening on {listen} (admin {admin_listen})");
    server.run_forever()
}
