//! Integration tests: the real `switchyard` binary on 127.0.0.1, real sockets, fake
//! upstreams. One test binary, because each extra one links Pingora again.

mod support;

mod admin_and_log;
mod azure;
mod bedrock;
mod config_cli;
mod errors;
mod failover;
mod health;
mod limits;
mod mock_provider;
mod openai_upstream;
mod streaming;
mod tls;
