//! Starting the real gateway binary with a config, and reading its access log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;
use super::http;

/// The virtual key every test config defines (key name `app`).
pub const KEY: &str = "sk-test-virtual-key-1234567890";

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test's files.
pub fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchyard-it-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `yaml` to a file and runs `switchyard -t -c FILE`.
pub fn check_config(yaml: &str) -> Output {
    let path = temp_dir().join("switchyard.yaml");
    std::fs::write(&path, yaml).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run switchyard -t")
}

/// A running gateway; stopped when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// A config with one key (`app`, allow-list `models` if given) and `body` appended
/// (providers, models, ...).
pub fn config(allow: Option<&str>, body: &str) -> String {
    let allow = allow.map_or(String::new(), |m| format!("    models: {m}\n"));
    format!("keys:\n  - name: app\n    key: {KEY}\n{allow}{body}")
}

impl Gateway {
    /// Starts the binary on free ports with `yaml` (without `listen` lines) and waits
    /// until `/readyz` answers.
    pub async fn start(yaml: &str) -> Gateway {
        Self::start_with_pingora(yaml, "").await
    }

    /// Like [`Gateway::start`], with more lines for the `pingora:` section.
    pub async fn start_with_pingora(yaml: &str, pingora: &str) -> Gateway {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let full = format!(
            "listen: {addr}\nadmin_listen: {admin}\npingora:\n  threads: 2\n{pingora}{yaml}"
        );
        let path = temp_dir().join("switchyard.yaml");
        std::fs::write(&path, full).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchyard");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let gateway = Gateway {
            child,
            addr,
            admin,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = http::get(admin, "/readyz", &[]).await {
                if r.status == 200 {
                    return gateway;
                }
            }
            assert!(Instant::now() < deadline, "gateway did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every access-log line so far, raw.
    pub fn raw_log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        String::from_utf8(http::get(self.admin, "/metrics", &[]).await.unwrap().body).unwrap()
    }

    /// Waits (at most 5 s) until `/metrics` contains `series`: a gauge set just
    /// after the answer went out may lag the client by a moment.
    pub async fn wait_for_metric(&self, series: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics().await;
            if text.contains(series) {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {series} in\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until at least `n` access-log lines were written and returns them parsed.
    pub async fn log_lines(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.raw_log();
            if lines.len() >= n {
                return lines
                    .iter()
                    .map(|l| {
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))
                    })
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} log lines, got {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
