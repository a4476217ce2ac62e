//! Whole-file config tests: each rule of DESIGN.md §2, with the line it reports.

use super::*;

const BASE: &str = "\
listen: 127.0.0.1:8080
keys:
  - name: app
    key: sk-app
    models: [\"gpt-*\"]
providers:
  openai:
    type: openai
    base_url: http://127.0.0.1:9999/v1
    api_key: sk-upstream
  demo:
    type: mock
models:
  gpt-4o:
    targets:
      - { provider: openai, model: gpt-4o-2024 }
    timeouts: { first_byte: 250ms }
  demo:
    targets:
      - provider: demo
        model: mock-1
";

fn load_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, "test.yaml")
}

fn error(text: &str) -> ConfigError {
    load_text(text).expect_err("config should be refused")
}

#[test]
fn a_valid_config_loads_with_defaults() {
    let c = load_text(BASE).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.admin_listen, "127.0.0.1:9090");
    assert_eq!(c.max_request_bytes, 16 * 1024 * 1024);
    let m = &c.models["gpt-4o"];
    assert_eq!(m.targets[0].id, "openai/gpt-4o-2024");
    assert_eq!(m.timeouts.first_byte, std::time::Duration::from_millis(250));
    assert_eq!(m.timeouts.connect, std::time::Duration::from_secs(2));
    assert!(c.keys[0].allows("gpt-4o"));
    assert!(!c.keys[0].allows("demo"));
    match &m.targets[0].provider.kind {
        ProviderKind::OpenAi { base_url, api_key } => {
            assert_eq!(base_url.base_path, "/v1");
            assert_eq!(base_url.port, 9999);
            assert_eq!(api_key.as_ref().unwrap().expose(), "sk-upstream");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let text = BASE.replace(
        "    api_key: sk-upstream",
        "    api_key: sk-upstream\n    apikey: typo",
    );
    let e = error(&text);
    assert_eq!(e.line, Some(11), "{e}");
    assert!(e.message.contains("unknown field `apikey`"), "{e}");
    assert!(
        e.to_string().starts_with("test.yaml:11: providers.openai"),
        "{e}"
    );
}

#[test]
fn wrong_types_are_refused_with_their_line() {
    let e = error(&BASE.replace("listen: 127.0.0.1:8080", "listen: [1, 2]"));
    assert_eq!(e.line, Some(1), "{e}");
    let e = error(&format!("{BASE}max_request_bytes: lots\n"));
    assert!(e.message.contains("not a valid number"), "{e}");
}

#[test]
fn unset_variables_are_refused_and_defaults_apply() {
    let e = error(&BASE.replace("sk-upstream", "${SWITCHYARD_TEST_UNSET_VAR}"));
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("SWITCHYARD_TEST_UNSET_VAR"), "{e}");
    assert_eq!(e.field, "providers.openai.api_key", "{e}");
    let c = load_text(&BASE.replace(
        "sk-upstream",
        "\"${SWITCHYARD_TEST_UNSET_VAR:-sk-#default}\"",
    ))
    .unwrap();
    match &c.providers["openai"].kind {
        ProviderKind::OpenAi { api_key, .. } => {
            assert_eq!(api_key.as_ref().unwrap().expose(), "sk-#default")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn secrets_may_come_from_files() {
    let dir = std::env::temp_dir().join(format!("switchyard-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, "sk-from-file\n").unwrap();
    let text = BASE.replace(
        "    key: sk-app",
        &format!("    key_file: {}", file.display()),
    );
    let c = load_text(&text).unwrap();
    assert_eq!(c.keys[0].secret.expose(), "sk-from-file");
    let missing = BASE.replace(
        "    key: sk-app",
        "    key_file: /nonexistent/switchyard/key",
    );
    let e = error(&missing);
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("cannot read the secret file"), "{e}");
    assert_eq!(e.field, "keys[0].key_file", "{e}");
    let both = BASE.replace(
        "    key: sk-app",
        &format!("    key: sk-app\n    key_file: {}", file.display()),
    );
    assert!(error(&both).message.contains("not both"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn references_must_resolve() {
    let e = error(&BASE.replace("provider: demo", "provider: nowhere"));
    assert_eq!(e.line, Some(20), "{e}");
    assert_eq!(e.field, "models.demo.targets[0].provider");
    assert!(e.message.contains("`nowhere` is not defined"), "{e}");
}

#[test]
fn keys_are_required_unique_and_distinct() {
    let no_keys = BASE.replace(
        "keys:\n  - name: app\n    key: sk-app\n    models: [\"gpt-*\"]\n",
        "keys: []\n",
    );
    assert!(error(&no_keys).message.contains("at least one virtual key"));
    let dup = BASE.replace(
        "    models: [\"gpt-*\"]\n",
        "    models: [\"gpt-*\"]\n  - name: other\n    key: sk-app\n",
    );
    let e = error(&dup);
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.message.contains("already used by key `app`"), "{e}");
}

#[test]
fn fallbacks_must_be_defined_and_acyclic() {
    let undefined = BASE.replace(
        "    timeouts: { first_byte: 250ms }",
        "    timeouts: { first_byte: 250ms }\n    fallbacks: [nope]",
    );
    assert!(error(&undefined)
        .message
        .contains("`nope` is not a defined model"));
    let cycle = BASE
        .replace(
            "    timeouts: { first_byte: 250ms }",
            "    timeouts: { first_byte: 250ms }\n    fallbacks: [demo]",
        )
        .replace(
            "        model: mock-1",
            "        model: mock-1\n    fallbacks: [gpt-4o]",
        );
    let e = error(&cycle);
    assert!(e.message.contains("cycle"), "{e}");
}

#[test]
fn targets_follow_their_provider_type() {
    let e = error(&BASE.replace("model: gpt-4o-2024", "deployment: gpt-4o-prod"));
    assert!(
        e.message
            .contains("only for targets of an `azure` provider"),
        "{e}"
    );
    let e = error(&BASE.replace("    type: mock", "    type: mock\n    api_key: x"));
    assert!(
        e.message
            .contains("not valid for a provider of type `mock`"),
        "{e}"
    );
    let e = error(&BASE.replace("http://127.0.0.1:9999/v1", "ftp://x"));
    assert!(e.message.contains("http:// or https://"), "{e}");
    let e = error(&BASE.replace("type: openai", "type: anthropic"));
    assert!(e.message.contains("unknown provider type"), "{e}");
}

/// BASE with an Azure provider, and `gpt-4o` sent to `target` on it.
fn with_azure(provider: &str, target: &str) -> String {
    BASE.replacen(
        "  demo:\n    type: mock\n",
        &format!("  demo:\n    type: mock\n  azure-eu:\n    type: azure\n{provider}"),
        1,
    )
    .replace("{ provider: openai, model: gpt-4o-2024 }", target)
}

const AZURE: &str =
    "    endpoint: https://x.openai.azure.com\n    api_key: k\n    api_version: \"2024-10-21\"\n";

#[test]
fn azure_providers_load_with_their_version_and_deployment() {
    let c = load_text(&with_azure(
        AZURE,
        "{ provider: azure-eu, deployment: gpt-4o-prod, api_version: 2025-01-01-preview }",
    ))
    .unwrap();
    let target = &c.models["gpt-4o"].targets[0];
    assert_eq!(target.id, "azure-eu/gpt-4o-prod");
    assert_eq!(target.model, "gpt-4o-prod");
    assert_eq!(
        target.api_version.as_ref().unwrap().to_string(),
        "2025-01-01-preview"
    );
    match &target.provider.kind {
        ProviderKind::Azure {
            endpoint,
            api_key,
            api_version,
        } => {
            assert_eq!(endpoint.host, "x.openai.azure.com");
            assert_eq!(api_key.expose(), "k");
            assert_eq!(api_version.to_string(), "2024-10-21");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn azure_mistakes_are_named_with_their_line() {
    let target = "{ provider: azure-eu, deployment: gpt-4o-prod }";
    let cases = [
        (
            with_azure(
                &AZURE.replace("    api_version: \"2024-10-21\"\n", ""),
                target,
            ),
            "providers.azure-eu",
            "needs `api_version`",
        ),
        (
            with_azure(&AZURE.replace("2024-10-21", "latest"), target),
            "providers.azure-eu.api_version",
            "expected a dated one",
        ),
        (
            with_azure(&AZURE.replace("azure.com", "azure.com/openai"), target),
            "providers.azure-eu.endpoint",
            "resource URL only",
        ),
        (
            with_azure(
                &AZURE.replace("azure.com", "azure.com/openai/deployments/gpt-4o"),
                target,
            ),
            "providers.azure-eu.endpoint",
            "resource URL only",
        ),
        (
            with_azure(&AZURE.replace("azure.com", "azure.com/openai/v1"), target),
            "providers.azure-eu.endpoint",
            "type `openai`",
        ),
        (
            with_azure(&AZURE.replace("api_key: k", "base_url: https://y"), target),
            "providers.azure-eu.base_url",
            "not valid for a provider of type `azure`",
        ),
        (
            with_azure(AZURE, "{ provider: azure-eu, model: gpt-4o }"),
            "models.gpt-4o.targets[0].model",
            "name the `deployment`",
        ),
        (
            with_azure(AZURE, "{ provider: azure-eu }"),
            "models.gpt-4o.targets[0]",
            "needs `deployment`",
        ),
        (
            with_azure(AZURE, "{ provider: azure-eu, deployment: gpt-4o/chat }"),
            "models.gpt-4o.targets[0].deployment",
            "not an Azure deployment name",
        ),
        (
            with_azure(
                AZURE,
                "{ provider: azure-eu, deployment: d, api_version: v1 }",
            ),
            "models.gpt-4o.targets[0].api_version",
            "expected a dated one",
        ),
        (
            with_azure(AZURE, "{ provider: openai, deployment: d }"),
            "models.gpt-4o.targets[0].deployment",
            "`openai` takes `model`",
        ),
    ];
    for (text, field, message) in cases {
        let e = error(&text);
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn rate_limits_load_with_their_default_allowance() {
    let with = |limit: &str| {
        BASE.replace(
            "    models: [\"gpt-*\"]",
            &format!("    rate_limit: {limit}"),
        )
    };
    let c = load_text(&with(
        "{ requests_per_minute: 600, tokens_per_minute: 200000 }",
    ))
    .unwrap();
    assert_eq!(
        c.keys[0].rate_limit,
        Some(RateLimit {
            requests_per_minute: Some(600),
            tokens_per_minute: Some(200_000),
            default_max_tokens: 1024,
        })
    );
    let c = load_text(&with("{ tokens_per_minute: 9000, default_max_tokens: 50 }")).unwrap();
    let limit = c.keys[0].rate_limit.unwrap();
    assert_eq!(
        (limit.requests_per_minute, limit.default_max_tokens),
        (None, 50)
    );
    assert_eq!(load_text(BASE).unwrap().keys[0].rate_limit, None);
}

#[test]
fn rate_limits_that_limit_nothing_are_refused() {
    let with = |limit: &str| {
        BASE.replace(
            "    models: [\"gpt-*\"]",
            &format!("    rate_limit: {limit}"),
        )
    };
    let cases = [
        ("{}", "keys[0].rate_limit", "sets no limit"),
        (
            "{ requests_per_minute: 0 }",
            "keys[0].rate_limit.requests_per_minute",
            "at least 1",
        ),
        (
            "{ tokens_per_minute: 2000000000 }",
            "keys[0].rate_limit.tokens_per_minute",
            "at most",
        ),
        (
            "{ tokens_per_minute: 1000 }",
            "keys[0].rate_limit.tokens_per_minute",
            "`default_max_tokens` (1024, the default) must be below",
        ),
        (
            "{ tokens_per_minute: 1000, default_max_tokens: 1000 }",
            "keys[0].rate_limit.default_max_tokens",
            "or every request that names no max_tokens could never fit",
        ),
        (
            "{ requests_per_minute: 5, default_max_tokens: 10 }",
            "keys[0].rate_limit.default_max_tokens",
            "only applies with `tokens_per_minute`",
        ),
        (
            "{ requests_per_minte: 5 }",
            "keys[0].rate_limit",
            "unknown field `requests_per_minte`",
        ),
    ];
    for (limit, field, message) in cases {
        let e = error(&with(limit));
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn shutdown_timeout_defaults_to_thirty_seconds_and_reads_durations() {
    assert_eq!(
        load_text(BASE).unwrap().shutdown_timeout,
        std::time::Duration::from_secs(30)
    );
    let set = load_text(&format!("{BASE}shutdown_timeout: 1500ms\n")).unwrap();
    assert_eq!(set.shutdown_timeout, std::time::Duration::from_millis(1500));
    let e = error(&format!("{BASE}shutdown_timeout: soon\n"));
    assert!(e.to_string().contains("shutdown_timeout"), "{e}");
}

#[test]
fn pingoras_grace_period_is_refused_unless_zero() {
    let zero = load_text(&format!("{BASE}pingora:\n  grace_period_seconds: 0\n")).unwrap();
    assert!(zero.pingora.threads.is_none());
    let e = error(&format!("{BASE}pingora:\n  grace_period_seconds: 5\n"));
    assert_eq!(e.field, "pingora.grace_period_seconds", "{e}");
    assert!(e.message.contains("shutdown_timeout"), "{e}");
}

const ROUTING: &str = "\
routing:
  retry: { attempts: 4, on: [connect, 5xx] }
  timeouts: { connect: 1s }
  health_check: { interval: 2s }
  circuit_breaker: { failure_threshold: 2 }
";

#[test]
fn routing_defaults_merge_field_by_field() {
    let text = BASE
        .replace(
            "      - { provider: openai, model: gpt-4o-2024 }",
            "      - { provider: openai, model: gpt-4o-2024, weight: 3 }\n      - { provider: demo, model: m, priority: 2 }\n    retry: { on: [429] }\n    fallbacks: [demo]",
        )
        .replace(
            "    api_key: sk-upstream",
            "    api_key: sk-upstream\n    health_check: { failure_threshold: 5 }\n    circuit_breaker: { recovery_timeout: 250ms }",
        );
    let c = load_text(&format!("{text}{ROUTING}")).unwrap();
    let m = &c.models["gpt-4o"];
    assert_eq!(m.retry.attempts, 4);
    assert!(m.retry.on.rate_limited && !m.retry.on.connect && !m.retry.on.server_error);
    assert_eq!(m.timeouts.connect, std::time::Duration::from_secs(1));
    assert_eq!(m.timeouts.first_byte, std::time::Duration::from_millis(250));
    assert_eq!(m.fallbacks, ["demo"]);
    assert_eq!((m.targets[0].weight, m.targets[0].priority), (3, 1));
    assert_eq!((m.targets[1].weight, m.targets[1].priority), (1, 2));
    let openai = &m.targets[0].provider;
    assert_eq!(
        openai.health_check,
        Some(HealthCheck {
            interval: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(2),
            failure_threshold: 5,
        })
    );
    assert_eq!(
        openai.circuit_breaker,
        CircuitBreaker {
            failure_threshold: 2,
            recovery_timeout: std::time::Duration::from_millis(250),
        }
    );
    // The mock answers in-process: never probed.
    assert_eq!(m.targets[1].provider.health_check, None);
    let demo = &c.models["demo"];
    assert_eq!(demo.retry.attempts, 4);
    assert!(demo.retry.on.connect && demo.retry.on.server_error && !demo.retry.on.timeout);
}

#[test]
fn routing_without_a_section_uses_the_documented_defaults() {
    let c = load_text(BASE).unwrap();
    let m = &c.models["gpt-4o"];
    assert_eq!(m.retry, Retry::default());
    assert_eq!(m.retry.attempts, 3);
    assert!(m.fallbacks.is_empty());
    let provider = &m.targets[0].provider;
    assert_eq!(provider.health_check, None);
    assert_eq!(provider.circuit_breaker.failure_threshold, 5);
    assert_eq!(
        provider.circuit_breaker.recovery_timeout,
        std::time::Duration::from_secs(60)
    );
}

#[test]
fn routing_values_are_checked() {
    let cases = [
        (
            "routing:\n  retry: { attempts: 0 }\n",
            "routing.retry.attempts",
            "at least 1",
        ),
        (
            "routing:\n  retry: { on: [connect, 404] }\n",
            "routing.retry.on[1]",
            "not one of",
        ),
        (
            "routing:\n  health_check: { interval: 1s, timeout: 2s }\n",
            "routing.health_check.timeout",
            "must not exceed",
        ),
        (
            "routing:\n  health_check: { interval: 0s }\n",
            "routing.health_check.interval",
            "greater than zero",
        ),
        (
            "routing:\n  circuit_breaker: { failure_threshold: 0 }\n",
            "routing.circuit_breaker.failure_threshold",
            "at least 1",
        ),
        (
            "routing:\n  circuit_breaker: { recovery_timeout: 0ms }\n",
            "routing.circuit_breaker.recovery_timeout",
            "greater than zero",
        ),
    ];
    for (tail, field, message) in cases {
        let e = error(&format!("{BASE}{tail}"));
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(message), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn a_target_id_names_one_upstream_across_models() {
    let text = BASE.replace(
        "      - provider: demo\n        model: mock-1",
        "      - provider: demo\n        model: mock-1\n        name: primary",
    );
    let text = text.replace(
        "      - { provider: openai, model: gpt-4o-2024 }",
        "      - { provider: openai, model: gpt-4o-2024, name: primary }",
    );
    let e = error(&text);
    assert!(e.message.contains("already names another upstream"), "{e}");
}

#[test]
fn durations_and_numbers_are_checked() {
    let e = error(&BASE.replace("first_byte: 250ms", "first_byte: soon"));
    assert_eq!(e.line, Some(17), "{e}");
    assert!(e.message.contains("not a duration"), "{e}");
    assert_eq!(e.field, "models.gpt-4o.timeouts.first_byte", "{e}");
    let e = error(&format!("{BASE}pingora:\n  threads: 0\n"));
    assert!(e.message.contains("at least 1"), "{e}");
    let e = error(&format!("{BASE}pingora:\n  thread: 2\n"));
    assert!(e.message.contains("unknown field `thread`"), "{e}");
}

#[test]
fn the_access_log_is_on_unless_turned_off() {
    assert!(load_text(BASE).unwrap().access_log.enabled);
    let off = format!("{BASE}access_log: {{ enabled: false }}\n");
    assert!(!load_text(&off).unwrap().access_log.enabled);
    let e = error(&format!(
        "{BASE}access_log: {{ enabled: false, path: /tmp/x }}\n"
    ));
    assert_eq!((e.line, e.field.as_str()), (Some(22), "access_log"), "{e}");
}

#[test]
fn prices_must_be_finite_and_not_negative() {
    for price in ["-1.0", ".nan", ".inf"] {
        let text = BASE.replace(
            "model: mock-1\n",
            &format!("model: mock-1\n        price: {{ input_per_mtok: {price}, output_per_mtok: 1.0 }}\n"),
        );
        let e = error(&text);
        assert_eq!(e.field, "models.demo.targets[0].price", "{e}");
    }
}

#[test]
fn a_secret_that_cannot_be_expanded_is_not_quoted_in_the_error() {
    for broken in ["sk-app-7f3e${oops", "sk-app-7f3e${not a name}"] {
        let e = error(&BASE.replace("key: sk-app", &format!("key: \"{broken}\"")));
        // Without the value to look for, the error names the key's mapping.
        assert_eq!((e.line, e.field.as_str()), (Some(3), "keys[0]"), "{e}");
        assert!(!e.to_string().contains("7f3e"), "{e}");
    }
}
