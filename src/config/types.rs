//! The validated configuration: what the request path reads.
//!
//! Everything here has been checked and defaulted, so the request path never
//! re-validates. A snapshot is immutable and shared as `Arc<Config>`; a reload
//! builds a new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::secret::Secret;
use crate::dialect::azure::ApiVersion;
use crate::glob::Glob;

/// One loaded config file.
#[derive(Debug)]
pub struct Config {
    /// When this snapshot was loaded; `GET /v1/models` reports it as `created`.
    pub loaded_at: std::time::SystemTime,
    pub listen: String,
    pub admin_listen: String,
    pub max_request_bytes: usize,
    /// SIGTERM: the longest wait for in-flight requests before streams are ended
    /// with an error event.
    pub shutdown_timeout: std::time::Duration,
    pub keys: Vec<VirtualKey>,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub models: BTreeMap<String, Model>,
    pub access_log: AccessLogSettings,
    pub pingora: PingoraSettings,
}

/// The access log on stdout (DESIGN.md §2 "Access log").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Off for a sidecar whose requests are logged elsewhere; metrics still count.
    pub enabled: bool,
}

/// A key an application presents; `name` is what logs and metrics show.
#[derive(Debug)]
pub struct VirtualKey {
    pub name: String,
    pub secret: Secret,
    /// `None`: every model.
    pub allowed_models: Option<Vec<Glob>>,
    /// `None`: no limits.
    pub rate_limit: Option<RateLimit>,
}

/// A key's budget (DESIGN.md §2 "Rate-limit semantics"). At least one of the two
/// limits is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// The output allowance reserved for a request that names no `max_tokens`.
    pub default_max_tokens: u64,
}

impl VirtualKey {
    /// Whether this key may use (and see) `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| g.matches(model)))
    }
}

/// An upstream account.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Active probes of this provider's targets; `None`: not probed.
    pub health_check: Option<HealthCheck>,
    pub circuit_breaker: CircuitBreaker,
}

/// Active health probes (DESIGN.md §2 "Routing semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between two probes of one target.
    pub interval: Duration,
    /// The longest one probe may take; never more than `interval`.
    pub timeout: Duration,
    /// Consecutive failed probes that mark a target unhealthy.
    pub failure_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
        }
    }
}

/// When a target's circuit opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failed tries (connect, timeout, 5xx) that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses traffic before one trial request.
    pub recovery_timeout: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(60),
        }
    }
}

/// What kind of upstream a provider is, with the settings that kind needs.
#[derive(Debug)]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API.
    OpenAi {
        base_url: UpstreamUrl,
        api_key: Option<Secret>,
    },
    /// An Azure OpenAI resource, called on its classic deployments surface.
    Azure {
        /// The resource URL (`https://NAME.openai.azure.com`), maybe behind a path prefix.
        endpoint: UpstreamUrl,
        /// Sent as `api-key`, never as `Authorization`.
        api_key: Secret,
        /// The provider's default; a target may override it.
        api_version: ApiVersion,
    },
    /// AWS Bedrock Runtime in one region, called through Converse / ConverseStream.
    Bedrock {
        /// `https://bedrock-runtime.{region}.amazonaws.com` unless overridden.
        endpoint: UpstreamUrl,
        /// Part of the SigV4 credential scope.
        region: String,
        auth: BedrockAuth,
    },
    /// Answers inside the gateway: demos, tests and health checks.
    Mock,
}

/// How the gateway proves itself to Bedrock.
#[derive(Debug)]
pub enum BedrockAuth {
    /// AWS credentials: every try is signed afresh with SigV4.
    SigV4 {
        access_key_id: Secret,
        secret_access_key: Secret,
        /// Temporary (STS) credentials only.
        session_token: Option<Secret>,
    },
    /// A Bedrock API key, sent as `Authorization: Bearer`.
    ApiKey(Secret),
}

impl ProviderKind {
    /// Where the provider is reached over HTTP; `None` for the in-process mock.
    pub fn upstream_url(&self) -> Option<&UpstreamUrl> {
        match self {
            ProviderKind::OpenAi { base_url, .. } => Some(base_url),
            ProviderKind::Azure { endpoint, .. } => Some(endpoint),
            ProviderKind::Bedrock { endpoint, .. } => Some(endpoint),
            ProviderKind::Mock => None,
        }
    }

    /// The secrets the gateway holds for this provider: an upstream message that
    /// quotes one of them must not reach a log line.
    pub fn credentials(&self) -> Vec<&Secret> {
        match self {
            ProviderKind::OpenAi { api_key, .. } => api_key.iter().collect(),
            ProviderKind::Azure { api_key, .. } => vec![api_key],
            ProviderKind::Bedrock {
                auth:
                    BedrockAuth::SigV4 {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    },
                ..
            } => [access_key_id, secret_access_key]
                .into_iter()
                .chain(session_token)
                .collect(),
            ProviderKind::Bedrock {
                auth: BedrockAuth::ApiKey(key),
                ..
            } => vec![key],
            ProviderKind::Mock => Vec::new(),
        }
    }
}

/// A parsed `http(s)://host[:port][/base/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path prefix without a trailing slash (`/v1`), possibly empty.
    pub base_path: String,
}

impl UpstreamUrl {
    /// The `Host` header value: the port is left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A public model name with its targets, fallbacks, retry rule and time limits.
#[derive(Debug)]
pub struct Model {
    pub targets: Vec<Arc<Target>>,
    /// Other model names whose targets are tried, in order, after these.
    pub fallbacks: Vec<String>,
    pub retry: Retry,
    pub timeouts: Timeouts,
}

/// How many upstream tries one request may make, and after which failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The most tries, first included, across targets and fallbacks.
    pub attempts: u32,
    pub on: RetryOn,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            on: RetryOn {
                connect: true,
                timeout: true,
                rate_limited: true,
                server_error: true,
            },
        }
    }
}

/// The `retry.on` tokens: which failures move on to the next candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// `connect`: refused, reset, DNS, TLS handshake.
    pub connect: bool,
    /// `timeout`: any of the per-try time limits.
    pub timeout: bool,
    /// `429`: throttled, or a per-model quota.
    pub rate_limited: bool,
    /// `5xx`: server errors, broken answers, and the gateway's own credential or
    /// model refused (401/403/404).
    pub server_error: bool,
}

/// One upstream a model may be sent to.
#[derive(Debug)]
pub struct Target {
    /// Stable identity: `name`, or `<provider>/<model or deployment>`.
    pub id: String,
    pub provider: Arc<Provider>,
    /// The model id the upstream knows; for Azure, the deployment name.
    pub model: String,
    /// Azure only: this target's api-version when it overrides the provider's.
    pub api_version: Option<ApiVersion>,
    pub price: Option<Price>,
    /// Lower goes first (default 1).
    pub priority: u32,
    /// Share of traffic among targets of the same priority (default 1).
    pub weight: u32,
    /// What the target's learned state (health, circuit, cooldown) is about: its
    /// provider, where that provider is reached and the upstream model. State kept
    /// under this target's id is reset when a reload changes any of them.
    pub fingerprint: String,
}

/// USD per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of one request's usage.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// Time limits of DESIGN.md §2 "Routing semantics".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Per try: TCP (and TLS) connect.
    pub connect: Duration,
    /// Per try: until the response header (for a stream, its first event).
    pub first_byte: Duration,
    /// Per try: the longest gap between body chunks or stream events.
    pub idle: Duration,
    /// Per request, across every try.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

/// The `pingora:` section, mapped onto Pingora's `ServerConf`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PingoraSettings {
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub error_log: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub ca_file: Option<String>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub upstream_keepalive_pool_size: Option<usize>,
    pub daemon_wait_for_ready: Option<bool>,
}
