//! The YAML schema of DESIGN.md §2, as written by the operator.
//!
//! Every struct refuses unknown keys, every string is expanded (`Text`), and every
//! secret may come from a file. Cross-field rules live in `validate.rs`; this file
//! only says what may be written where.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::expand::{Number, Text};
use super::secret::{Secret, SecretFile};

/// The whole file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    pub max_request_bytes: Option<Number<u64>>,
    pub keys: Option<Vec<RawKey>>,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    pub routing: Option<RawRouting>,
    pub shutdown_timeout: Option<ConfigDuration>,
    pub access_log: Option<RawAccessLog>,
    pub pingora: Option<RawPingora>,
}

/// The access log on stdout.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
}

/// A virtual key held by an application.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: Text,
    pub key: Option<Secret>,
    pub key_file: Option<SecretFile>,
    pub models: Option<Vec<Text>>,
    pub rate_limit: Option<RawRateLimit>,
}

/// Per-key limits.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_minute: Option<Number<u64>>,
    pub tokens_per_minute: Option<Number<u64>>,
    pub default_max_tokens: Option<Number<u64>>,
}

/// An upstream account. One flat shape for every `type`; `validate.rs` checks which
/// fields each type takes, so the error can say "not valid for type X".
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    #[serde(rename = "type")]
    pub kind: Text,
    pub base_url: Option<Text>,
    pub endpoint: Option<Text>,
    pub api_version: Option<Text>,
    pub region: Option<Text>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<SecretFile>,
    pub access_key_id: Option<Secret>,
    pub access_key_id_file: Option<SecretFile>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<SecretFile>,
    pub session_token: Option<Secret>,
    pub session_token_file: Option<SecretFile>,
    pub health_check: Option<RawHealthCheck>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
}

/// A public model name and where it goes.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub fallbacks: Vec<Text>,
    pub retry: Option<RawRetry>,
    pub timeouts: Option<RawTimeouts>,
}

/// One upstream a model may be sent to.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub provider: Text,
    pub model: Option<Text>,
    pub deployment: Option<Text>,
    pub api_version: Option<Text>,
    pub priority: Option<Number<u32>>,
    pub weight: Option<Number<u32>>,
    pub name: Option<Text>,
    pub price: Option<RawPrice>,
}

/// USD per million tokens.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: Number<f64>,
    pub output_per_mtok: Number<f64>,
}

/// Defaults for every model.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub retry: Option<RawRetry>,
    pub timeouts: Option<RawTimeouts>,
    pub health_check: Option<RawHealthCheck>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
}

/// How many tries a request may make, and on which failures.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Number<u32>>,
    pub on: Option<Vec<Text>>,
}

/// Per-try and per-request time limits.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<ConfigDuration>,
    pub first_byte: Option<ConfigDuration>,
    pub idle: Option<ConfigDuration>,
    pub total: Option<ConfigDuration>,
}

/// Active health probes.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub failure_threshold: Option<Number<u32>>,
}

/// Consecutive-failure circuit breaking.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub failure_threshold: Option<Number<u32>>,
    pub recovery_timeout: Option<ConfigDuration>,
}

/// Pingora's own server settings (Pingora ignores unknown keys; we do not).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPingora {
    pub threads: Option<Number<usize>>,
    pub work_stealing: Option<bool>,
    pub pid_file: Option<Text>,
    pub upgrade_sock: Option<Text>,
    pub error_log: Option<Text>,
    pub user: Option<Text>,
    pub group: Option<Text>,
    pub ca_file: Option<Text>,
    pub grace_period_seconds: Option<Number<u64>>,
    pub graceful_shutdown_timeout_seconds: Option<Number<u64>>,
    pub upstream_keepalive_pool_size: Option<Number<usize>>,
    pub daemon_wait_for_ready: Option<bool>,
}
