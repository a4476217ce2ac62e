//! `switchyard -t -c FILE`: validates the whole config before Pingora starts.

use crate::support::gateway::{check_config, config};

const VALID: &str = "providers:\n  demo:\n    type: mock\nmodels:\n  demo:\n    targets:\n      - { provider: demo, model: m }\n";

#[test]
fn a_valid_config_passes_the_test_flag() {
    let out = check_config(&config(None, VALID));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout but access-log lines"
    );
}

#[test]
fn an_invalid_config_names_file_line_and_field() {
    let bad = config(None, &VALID.replace("provider: demo", "provider: nowhere"));
    let out = check_config(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("switchyard.yaml:10: models.demo.targets[0].provider"),
        "{err}"
    );
    assert!(err.contains("`nowhere` is not defined"), "{err}");
}

#[test]
fn a_pingora_grace_period_is_refused_in_favour_of_shutdown_timeout() {
    let drained = config(None, &format!("{VALID}shutdown_timeout: 30s\n"));
    assert!(check_config(&drained).status.success());
    let bad = config(
        None,
        &format!("{VALID}pingora:\n  grace_period_seconds: 60\n"),
    );
    let out = check_config(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pingora.grace_period_seconds") && err.contains("shutdown_timeout"),
        "{err}"
    );
}

#[test]
fn unknown_pingora_settings_are_refused() {
    let out = check_config(&config(None, &format!("{VALID}pingora:\n  treads: 4\n")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `treads`"), "{err}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["-t", "-c", "/nonexistent/switchyard.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}
