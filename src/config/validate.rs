//! The rules of DESIGN.md §2 that need more than one field: defaults, references
//! between sections, cycles, duplicates, and features this build does not run yet.
//!
//! A feature that arrives in a later release is refused by name rather than
//! accepted and ignored: an operator must never believe a limit or a failover is in
//! force when it is not.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::locate::FieldPath;
use super::schema::*;
use super::secret;
use super::types::*;
use crate::dialect::azure::ApiVersion;
use crate::glob::Glob;

/// A rule broken at `path`.
#[derive(Debug)]
pub struct Fault {
    pub path: FieldPath,
    pub message: String,
}

type Checked<T> = Result<T, Fault>;

fn fault<T>(path: FieldPath, message: impl Into<String>) -> Checked<T> {
    Err(Fault {
        path,
        message: message.into(),
    })
}

const DEFAULT_MAX_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// DESIGN.md §2: SIGTERM waits this long for in-flight requests by default.
const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Turns the parsed file into a validated [`Config`].
pub fn validate(raw: RawConfig) -> Checked<Config> {
    let root = FieldPath::default();
    let listen = address(raw.listen, "127.0.0.1:8080", root.key("listen"))?;
    let admin_listen = address(raw.admin_listen, "127.0.0.1:9090", root.key("admin_listen"))?;
    let max_request_bytes = match raw.max_request_bytes {
        Some(n) if n.0 == 0 => return fault(root.key("max_request_bytes"), "must be at least 1"),
        Some(n) => n.0,
        None => DEFAULT_MAX_REQUEST_BYTES,
    };
    let max_request_bytes = usize::try_from(max_request_bytes)
        .or_else(|_| fault(root.key("max_request_bytes"), "is too large"))?;
    let shutdown_timeout = raw
        .shutdown_timeout
        .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0);
    let keys = keys(raw.keys, &root.key("keys"))?;
    let defaults = routing(raw.routing, &root.key("routing"))?;
    let providers = providers(raw.providers, &defaults, &root.key("providers"))?;
    let models = models(raw.models, &providers, &defaults, &root.key("models"))?;
    let pingora = pingora(raw.pingora.unwrap_or_default(), &root.key("pingora"))?;
    let access_log = AccessLogSettings {
        enabled: raw.access_log.and_then(|a| a.enabled).unwrap_or(true),
    };
    Ok(Config {
        loaded_at: std::time::SystemTime::now(),
        listen,
        admin_listen,
        max_request_bytes,
        shutdown_timeout,
        keys,
        providers,
        models,
        access_log,
        pingora,
    })
}

fn address(value: Option<super::expand::Text>, default: &str, path: FieldPath) -> Checked<String> {
    let text = value.map(|t| t.0).unwrap_or_else(|| default.to_string());
    match text.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(text),
        Err(_) => fault(
            path,
            format!("`{text}` is not an address like 127.0.0.1:8080"),
        ),
    }
}

fn keys(raw: Option<Vec<RawKey>>, path: &FieldPath) -> Checked<Vec<VirtualKey>> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return fault(path.clone(), "at least one virtual key is required");
    }
    let mut names = HashSet::new();
    let mut out: Vec<VirtualKey> = Vec::with_capacity(raw.len());
    for (i, key) in raw.into_iter().enumerate() {
        let at = path.index(i);
        let name = key.name.0;
        if name.is_empty() {
            return fault(at.key("name"), "must not be empty");
        }
        if !names.insert(name.clone()) {
            return fault(at.key("name"), format!("key name `{name}` is used twice"));
        }
        let secret = secret::either(key.key, key.key_file, "key")
            .or_else(|m| fault(at.key("key"), m))?
            .ok_or(())
            .or_else(|_| fault(at.clone(), "`key` (or `key_file`) is required"))?;
        if secret.is_empty() {
            return fault(at.key("key"), "must not be empty");
        }
        if let Some(other) = out.iter().find(|k| k.secret == secret) {
            return fault(
                at.key("key"),
                format!("the same secret is already used by key `{}`", other.name),
            );
        }
        let rate_limit = key
            .rate_limit
            .map(|limit| rate_limit(limit, &at.key("rate_limit")))
            .transpose()?;
        let allowed_models = key
            .models
            .map(|globs| globs.into_iter().map(|g| Glob::new(g.0)).collect());
        out.push(VirtualKey {
            name,
            secret,
            allowed_models,
            rate_limit,
        });
    }
    Ok(out)
}

/// The output allowance of a request that names no `max_tokens` (DESIGN.md §2).
const DEFAULT_MAX_TOKENS: u64 = 1024;
/// The largest per-minute limit: one unit per 60 ns is already beyond any
/// provider's quota, and keeps the limiter's nanosecond arithmetic exact.
const MAX_PER_MINUTE: u64 = 1_000_000_000;

fn rate_limit(raw: RawRateLimit, at: &FieldPath) -> Checked<RateLimit> {
    for (field, value) in [
        ("requests_per_minute", raw.requests_per_minute),
        ("tokens_per_minute", raw.tokens_per_minute),
        ("default_max_tokens", raw.default_max_tokens),
    ] {
        match value {
            Some(v) if v.0 == 0 => return fault(at.key(field), "must be at least 1"),
            Some(v) if v.0 > MAX_PER_MINUTE => {
                return fault(at.key(field), format!("must be at most {MAX_PER_MINUTE}"))
            }
            _ => {}
        }
    }
    let limit = RateLimit {
        requests_per_minute: raw.requests_per_minute.map(|n| n.0),
        tokens_per_minute: raw.tokens_per_minute.map(|n| n.0),
        default_max_tokens: raw.default_max_tokens.map_or(DEFAULT_MAX_TOKENS, |n| n.0),
    };
    let explicit_default = raw.default_max_tokens.is_some();
    match (limit.requests_per_minute, limit.tokens_per_minute) {
        (None, None) => fault(
            at.clone(),
            "sets no limit: give `requests_per_minute`, `tokens_per_minute` or both",
        ),
        (_, None) if explicit_default => fault(
            at.key("default_max_tokens"),
            "only applies with `tokens_per_minute`",
        ),
        // Every request that names no max_tokens would be refused as never
        // fitting: the budget could not take its default output allowance.
        (_, Some(tokens)) if limit.default_max_tokens >= tokens => {
            let (field, which) = if explicit_default {
                ("default_max_tokens", "")
            } else {
                ("tokens_per_minute", ", the default")
            };
            fault(
                at.key(field),
                format!(
                    "`default_max_tokens` ({}{which}) must be below `tokens_per_minute` \
                     ({tokens}), or every request that names no max_tokens could never fit",
                    limit.default_max_tokens
                ),
            )
        }
        _ => Ok(limit),
    }
}

fn providers(
    raw: BTreeMap<String, RawProvider>,
    defaults: &RoutingDefaults,
    path: &FieldPath,
) -> Checked<BTreeMap<String, Arc<Provider>>> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let at = path.key(&name);
        let provider = provider(&name, p, defaults, &at)?;
        out.insert(name, Arc::new(provider));
    }
    Ok(out)
}

/// Refuses every field set in `present` that is not in `allowed` for type `kind`.
fn only_fields(
    kind: &str,
    present: &[(&str, bool)],
    allowed: &[&str],
    at: &FieldPath,
) -> Checked<()> {
    match present
        .iter()
        .find(|(field, set)| *set && !allowed.contains(field))
    {
        Some((field, _)) => fault(
            at.key(field),
            format!("`{field}` is not valid for a provider of type `{kind}`"),
        ),
        None => Ok(()),
    }
}

fn required<T>(value: Option<T>, at: &FieldPath, field: &str, kind: &str) -> Checked<T> {
    value.ok_or(()).or_else(|_| {
        fault(
            at.clone(),
            format!("a provider of type `{kind}` needs `{field}`"),
        )
    })
}

fn provider(
    name: &str,
    p: RawProvider,
    defaults: &RoutingDefaults,
    at: &FieldPath,
) -> Checked<Provider> {
    let kind = p.kind.0.as_str();
    let api_key = secret::either(p.api_key, p.api_key_file, "api_key")
        .or_else(|m| fault(at.key("api_key"), m))?;
    let secret_access_key = secret::either(
        p.secret_access_key,
        p.secret_access_key_file,
        "secret_access_key",
    )
    .or_else(|m| fault(at.key("secret_access_key"), m))?;
    let access_key_id = secret::either(p.access_key_id, p.access_key_id_file, "access_key_id")
        .or_else(|m| fault(at.key("access_key_id"), m))?;
    let session_token = secret::either(p.session_token, p.session_token_file, "session_token")
        .or_else(|m| fault(at.key("session_token"), m))?
        .filter(|s| !s.is_empty());
    let present = [
        ("base_url", p.base_url.is_some()),
        ("endpoint", p.endpoint.is_some()),
        ("api_version", p.api_version.is_some()),
        ("region", p.region.is_some()),
        ("api_key", api_key.is_some()),
        ("access_key_id", access_key_id.is_some()),
        ("secret_access_key", secret_access_key.is_some()),
        ("session_token", session_token.is_some()),
    ];
    let kind = match kind {
        "openai" => {
            only_fields(kind, &present, &["base_url", "api_key"], at)?;
            let base = p.base_url.map(|t| t.0);
            let base = base.as_deref().unwrap_or("https://api.openai.com/v1");
            let base_url = upstream_url(base).or_else(|m| fault(at.key("base_url"), m))?;
            ProviderKind::OpenAi {
                base_url,
                api_key: api_key.filter(|k| !k.is_empty()),
            }
        }
        "azure" => {
            only_fields(kind, &present, &["endpoint", "api_version", "api_key"], at)?;
            let endpoint = required(p.endpoint, at, "endpoint", kind)?;
            let endpoint = azure_endpoint(&endpoint.0).or_else(|m| fault(at.key("endpoint"), m))?;
            let api_key = required(api_key, at, "api_key", kind)?;
            if api_key.is_empty() {
                return fault(at.key("api_key"), "must not be empty");
            }
            let api_version = required(p.api_version, at, "api_version", kind)?;
            let api_version =
                ApiVersion::parse(&api_version.0).or_else(|m| fault(at.key("api_version"), m))?;
            ProviderKind::Azure {
                endpoint,
                api_key,
                api_version,
            }
        }
        "bedrock" => {
            only_fields(
                kind,
                &present,
                &[
                    "endpoint",
                    "region",
                    "api_key",
                    "access_key_id",
                    "secret_access_key",
                    "session_token",
                ],
                at,
            )?;
            let region = required(p.region, at, "region", kind)?.0;
            if region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return fault(
                    at.key("region"),
                    format!("`{region}` is not an AWS region name (like us-east-1)"),
                );
            }
            let endpoint = match &p.endpoint {
                Some(endpoint) => endpoint.0.clone(),
                None => bedrock_endpoint(&region),
            };
            let endpoint = upstream_url(&endpoint).or_else(|m| fault(at.key("endpoint"), m))?;
            let auth = match (access_key_id, secret_access_key, api_key) {
                (Some(access_key_id), Some(secret_access_key), None) => {
                    if access_key_id.is_empty() {
                        return fault(at.key("access_key_id"), "must not be empty");
                    }
                    if secret_access_key.is_empty() {
                        return fault(at.key("secret_access_key"), "must not be empty");
                    }
                    BedrockAuth::SigV4 {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    }
                }
                (None, None, Some(key)) if session_token.is_none() => {
                    if key.is_empty() {
                        return fault(at.key("api_key"), "must not be empty");
                    }
                    BedrockAuth::ApiKey(key)
                }
                _ => {
                    return fault(
                        at.clone(),
                        "a `bedrock` provider needs either `access_key_id` with `secret_access_key` (and maybe `session_token`), or `api_key` alone",
                    )
                }
            };
            ProviderKind::Bedrock {
                endpoint,
                region,
                auth,
            }
        }
        "mock" => {
            only_fields(kind, &present, &[], at)?;
            ProviderKind::Mock
        }
        other => {
            return fault(
                at.key("type"),
                format!(
                    "unknown provider type `{other}` (expected openai, azure, bedrock or mock)"
                ),
            )
        }
    };
    let health_check = match (&kind, p.health_check.as_ref()) {
        // The mock answers in-process: there is nothing to probe.
        (ProviderKind::Mock, _) => None,
        (_, Some(raw)) => Some(health_check(
            raw,
            defaults.health_check.unwrap_or_default(),
            &at.key("health_check"),
        )?),
        (_, None) => defaults.health_check,
    };
    let circuit_breaker = match p.circuit_breaker.as_ref() {
        Some(raw) => circuit_breaker(raw, defaults.circuit_breaker, &at.key("circuit_breaker"))?,
        None => defaults.circuit_breaker,
    };
    Ok(Provider {
        name: name.to_string(),
        kind,
        health_check,
        circuit_breaker,
    })
}

/// Bedrock Runtime's public endpoint for `region` (China's regions sit under `.com.cn`).
fn bedrock_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://bedrock-runtime.{region}.{domain}")
}

/// An Azure resource URL. The gateway appends `/openai/deployments/...` itself, so
/// an endpoint that already carries part of that path (the most common Azure
/// misconfiguration) is refused here rather than answered 404 at request time.
fn azure_endpoint(text: &str) -> Result<UpstreamUrl, String> {
    let url = upstream_url(text)?;
    let path = url.base_path.to_ascii_lowercase();
    if path.ends_with("/openai/v1") {
        return Err(format!(
            "`{text}` is Azure's v1 surface, which speaks plain OpenAI: use a provider of type `openai` with this `base_url`, or give the resource URL without `/openai/v1`"
        ));
    }
    if path.ends_with("/openai") || path.contains("/openai/") || path.contains("/deployments") {
        return Err(format!(
            "`{text}` must be the resource URL only (like https://NAME.openai.azure.com); the gateway adds /openai/deployments/DEPLOYMENT/... itself"
        ));
    }
    Ok(url)
}

/// Parses a provider URL: `http://` or `https://`, a host, an optional port and path.
pub fn upstream_url(text: &str) -> Result<UpstreamUrl, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("`{text}` is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{text}` must start with http:// or https://")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{text}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.query().is_some() {
        return Err(format!("`{text}` must not have a query string"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamUrl {
        tls,
        host,
        port,
        base_path,
    })
}

/// The `routing:` section: what every model and provider gets unless it says otherwise.
struct RoutingDefaults {
    retry: Retry,
    timeouts: Timeouts,
    /// `None`: providers are probed only when they ask for it.
    health_check: Option<HealthCheck>,
    circuit_breaker: CircuitBreaker,
}

fn routing(raw: Option<RawRouting>, at: &FieldPath) -> Checked<RoutingDefaults> {
    let raw = raw.unwrap_or_default();
    let retry = match &raw.retry {
        Some(r) => retry(r, Retry::default(), &at.key("retry"))?,
        None => Retry::default(),
    };
    let health_check = match &raw.health_check {
        Some(h) => Some(health_check(
            h,
            HealthCheck::default(),
            &at.key("health_check"),
        )?),
        None => None,
    };
    let circuit_breaker = match &raw.circuit_breaker {
        Some(b) => circuit_breaker(b, CircuitBreaker::default(), &at.key("circuit_breaker"))?,
        None => CircuitBreaker::default(),
    };
    Ok(RoutingDefaults {
        retry,
        timeouts: timeouts(raw.timeouts.as_ref(), Timeouts::default()),
        health_check,
        circuit_breaker,
    })
}

/// `raw` over `base`, field by field. A probe's timeout defaults to the smaller of
/// the base timeout and the interval, so `interval: 1s` alone is valid.
fn health_check(raw: &RawHealthCheck, base: HealthCheck, at: &FieldPath) -> Checked<HealthCheck> {
    if raw.failure_threshold.is_some_and(|n| n.0 == 0) {
        return fault(at.key("failure_threshold"), "must be at least 1");
    }
    let interval = raw.interval.map_or(base.interval, |d| d.0);
    let timeout = match raw.timeout {
        Some(t) if t.0 > interval => return fault(at.key("timeout"), "must not exceed `interval`"),
        Some(t) => t.0,
        None => base.timeout.min(interval),
    };
    Ok(HealthCheck {
        interval,
        timeout,
        failure_threshold: raw
            .failure_threshold
            .map_or(base.failure_threshold, |n| n.0),
    })
}

/// `raw` over `base`, field by field.
fn circuit_breaker(
    raw: &RawCircuitBreaker,
    base: CircuitBreaker,
    at: &FieldPath,
) -> Checked<CircuitBreaker> {
    if raw.failure_threshold.is_some_and(|n| n.0 == 0) {
        return fault(at.key("failure_threshold"), "must be at least 1");
    }
    Ok(CircuitBreaker {
        failure_threshold: raw
            .failure_threshold
            .map_or(base.failure_threshold, |n| n.0),
        recovery_timeout: raw.recovery_timeout.map_or(base.recovery_timeout, |d| d.0),
    })
}

/// `raw` over `base`: a model's `retry` overrides only the fields it names.
fn retry(raw: &RawRetry, base: Retry, at: &FieldPath) -> Checked<Retry> {
    if raw.attempts.is_some_and(|a| a.0 == 0) {
        return fault(at.key("attempts"), "must be at least 1");
    }
    let on = match &raw.on {
        None => base.on,
        Some(tokens) => {
            let mut on = RetryOn {
                connect: false,
                timeout: false,
                rate_limited: false,
                server_error: false,
            };
            for (i, token) in tokens.iter().enumerate() {
                let flag = match token.0.as_str() {
                    "connect" => &mut on.connect,
                    "timeout" => &mut on.timeout,
                    "429" => &mut on.rate_limited,
                    "5xx" => &mut on.server_error,
                    other => {
                        return fault(
                            at.key("on").index(i),
                            format!("`{other}` is not one of connect, timeout, 429, 5xx"),
                        )
                    }
                };
                *flag = true;
            }
            on
        }
    };
    Ok(Retry {
        attempts: raw.attempts.map_or(base.attempts, |n| n.0),
        on,
    })
}

fn timeouts(raw: Option<&RawTimeouts>, base: Timeouts) -> Timeouts {
    let Some(raw) = raw else { return base };
    Timeouts {
        connect: raw.connect.map_or(base.connect, |d| d.0),
        first_byte: raw.first_byte.map_or(base.first_byte, |d| d.0),
        idle: raw.idle.map_or(base.idle, |d| d.0),
        total: raw.total.map_or(base.total, |d| d.0),
    }
}

fn models(
    raw: BTreeMap<String, RawModel>,
    providers: &BTreeMap<String, Arc<Provider>>,
    defaults: &RoutingDefaults,
    path: &FieldPath,
) -> Checked<BTreeMap<String, Model>> {
    if raw.is_empty() {
        return fault(path.clone(), "at least one model is required");
    }
    check_fallbacks(&raw, path)?;
    let mut out = BTreeMap::new();
    // A target id names one upstream everywhere: its state is kept under the id.
    let mut upstream_of_id: BTreeMap<String, String> = BTreeMap::new();
    for (name, m) in raw {
        let at = path.key(&name);
        if m.targets.is_empty() {
            return fault(at.key("targets"), "at least one target is required");
        }
        let mut targets: Vec<Arc<Target>> = Vec::with_capacity(m.targets.len());
        for (i, t) in m.targets.into_iter().enumerate() {
            let target = target(t, providers, &at.key("targets").index(i))?;
            if targets.iter().any(|o| o.id == target.id) {
                return fault(
                    at.key("targets").index(i),
                    format!(
                        "target id `{}` is used twice in this model (set `name`)",
                        target.id
                    ),
                );
            }
            let same = upstream_of_id
                .entry(target.id.clone())
                .or_insert_with(|| target.fingerprint.clone());
            if *same != target.fingerprint {
                return fault(
                    at.key("targets").index(i),
                    format!(
                        "target id `{}` already names another upstream in another model (set a different `name`)",
                        target.id
                    ),
                );
            }
            targets.push(Arc::new(target));
        }
        let retry = match &m.retry {
            Some(r) => retry(r, defaults.retry, &at.key("retry"))?,
            None => defaults.retry,
        };
        out.insert(
            name,
            Model {
                targets,
                fallbacks: m.fallbacks.into_iter().map(|f| f.0).collect(),
                retry,
                timeouts: timeouts(m.timeouts.as_ref(), defaults.timeouts),
            },
        );
    }
    Ok(out)
}

fn target(
    t: RawTarget,
    providers: &BTreeMap<String, Arc<Provider>>,
    at: &FieldPath,
) -> Checked<Target> {
    let provider_name = t.provider.0.clone();
    let Some(provider) = providers.get(&provider_name) else {
        return fault(
            at.key("provider"),
            format!("provider `{provider_name}` is not defined under `providers`"),
        );
    };
    let is_azure = matches!(provider.kind, ProviderKind::Azure { .. });
    let (model, api_version) = if is_azure {
        azure_target(&t, &provider_name, at)?
    } else {
        if t.deployment.is_some() {
            return fault(
                at.key("deployment"),
                format!("`deployment` is only for targets of an `azure` provider; `{provider_name}` takes `model`"),
            );
        }
        if t.api_version.is_some() {
            return fault(
                at.key("api_version"),
                "`api_version` is only for targets of an `azure` provider",
            );
        }
        let Some(model) = t
            .model
            .as_ref()
            .map(|m| m.0.clone())
            .filter(|m| !m.is_empty())
        else {
            return fault(at.clone(), "a target needs `model`");
        };
        (model, None)
    };
    if t.priority.is_some_and(|p| p.0 == 0) {
        return fault(at.key("priority"), "must be at least 1");
    }
    if t.weight.is_some_and(|w| w.0 == 0) {
        return fault(at.key("weight"), "must be at least 1");
    }
    let price = match t.price {
        // A cost counter only goes up, and a sum with NaN or infinity is useless.
        Some(p)
            if ![p.input_per_mtok.0, p.output_per_mtok.0]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0) =>
        {
            return fault(
                at.key("price"),
                "prices must be finite numbers, not negative",
            )
        }
        Some(p) => Some(Price {
            input_per_mtok: p.input_per_mtok.0,
            output_per_mtok: p.output_per_mtok.0,
        }),
        None => None,
    };
    let id = match t.name {
        Some(name) if name.0.is_empty() => return fault(at.key("name"), "must not be empty"),
        Some(name) => name.0,
        None => format!("{provider_name}/{model}"),
    };
    let fingerprint = format!("{provider_name} {:?} {model}", provider.kind.upstream_url());
    Ok(Target {
        id,
        provider: provider.clone(),
        model,
        api_version,
        price,
        priority: t.priority.map_or(1, |p| p.0),
        weight: t.weight.map_or(1, |w| w.0),
        fingerprint,
    })
}

/// An Azure target's deployment and its api-version override.
fn azure_target(
    t: &RawTarget,
    provider_name: &str,
    at: &FieldPath,
) -> Checked<(String, Option<ApiVersion>)> {
    if t.model.is_some() {
        return fault(
            at.key("model"),
            format!(
                "`{provider_name}` is an `azure` provider: name the `deployment`, not a `model`"
            ),
        );
    }
    let Some(deployment) = &t.deployment else {
        return fault(
            at.clone(),
            format!("a target of the `azure` provider `{provider_name}` needs `deployment`"),
        );
    };
    let deployment = deployment.0.clone();
    let valid = !deployment.is_empty()
        && deployment.len() <= 64
        && deployment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return fault(
            at.key("deployment"),
            format!("`{deployment}` is not an Azure deployment name (1 to 64 letters, digits, `-`, `_` or `.`)"),
        );
    }
    let api_version = match &t.api_version {
        Some(v) => Some(ApiVersion::parse(&v.0).or_else(|m| fault(at.key("api_version"), m))?),
        None => None,
    };
    Ok((deployment, api_version))
}

/// Every fallback names a defined model, and following fallbacks never loops.
fn check_fallbacks(raw: &BTreeMap<String, RawModel>, path: &FieldPath) -> Checked<()> {
    for (name, m) in raw {
        for (i, f) in m.fallbacks.iter().enumerate() {
            if !raw.contains_key(&f.0) {
                return fault(
                    path.key(name).key("fallbacks").index(i),
                    format!("fallback `{}` is not a defined model", f.0),
                );
            }
        }
    }
    for start in raw.keys() {
        let mut trail = vec![start.as_str()];
        if let Some(cycle) = find_cycle(raw, &mut trail) {
            return fault(
                path.key(start).key("fallbacks"),
                format!("fallbacks form a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
    Ok(())
}

fn find_cycle<'a>(
    raw: &'a BTreeMap<String, RawModel>,
    trail: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let current = *trail.last()?;
    for f in &raw.get(current)?.fallbacks {
        let next = f.0.as_str();
        if trail.contains(&next) {
            let mut cycle = trail.clone();
            cycle.push(next);
            return Some(cycle);
        }
        trail.push(next);
        if let Some(cycle) = find_cycle(raw, trail) {
            return Some(cycle);
        }
        trail.pop();
    }
    None
}

fn pingora(raw: RawPingora, at: &FieldPath) -> Checked<PingoraSettings> {
    if raw.threads.is_some_and(|t| t.0 == 0) {
        return fault(at.key("threads"), "must be at least 1");
    }
    if raw.grace_period_seconds.is_some_and(|n| n.0 != 0) {
        return fault(
            at.key("grace_period_seconds"),
            "must be 0: Switchyard drains in-flight requests itself and exits as soon as they \
             are done (bounded by `shutdown_timeout`); Pingora's grace period would only add \
             an unconditional sleep",
        );
    }
    if let Some(ca) = &raw.ca_file {
        if let Err(e) = std::fs::metadata(&ca.0) {
            return fault(at.key("ca_file"), format!("cannot read `{}`: {e}", ca.0));
        }
    }
    Ok(PingoraSettings {
        threads: raw.threads.map(|n| n.0),
        work_stealing: raw.work_stealing,
        pid_file: raw.pid_file.map(|t| t.0),
        upgrade_sock: raw.upgrade_sock.map(|t| t.0),
        error_log: raw.error_log.map(|t| t.0),
        user: raw.user.map(|t| t.0),
        group: raw.group.map(|t| t.0),
        ca_file: raw.ca_file.map(|t| t.0),
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds.map(|n| n.0),
        upstream_keepalive_pool_size: raw.upstream_keepalive_pool_size.map(|n| n.0),
        daemon_wait_for_ready: raw.daemon_wait_for_ready,
    })
}
