//! TLS upstreams: verified against a private CA (`pingora.ca_file`), with the URL's
//! host as SNI; a certificate for another name is refused.

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::gateway::{config, Gateway};
use crate::support::http::{exchange, post};

const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/certs");

/// A one-answer-per-request HTTPS upstream that records the SNI it was asked for.
struct TlsUpstream {
    port: u16,
    sni: Arc<Mutex<Vec<Option<String>>>>,
}

async fn tls_upstream(cert: &str) -> TlsUpstream {
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(format!("{CERTS}/{cert}.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{CERTS}/{cert}.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.lock()
                    .unwrap()
                    .push(tls.get_ref().1.server_name().map(str::to_string));
                let mut reader = BufReader::new(tls);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body).await;
                let answer = r#"{"id":"x","object":"chat.completion","created":1,"model":"tls-model","choices":[{"index":0,"message":{"role":"assistant","content":"over tls"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
                let response = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
                let _ = reader.get_mut().write_all(response.as_bytes()).await;
                let _ = reader.get_mut().shutdown().await;
            });
        }
    });
    TlsUpstream { port, sni }
}

fn tls_config(port: u16) -> String {
    config(
        None,
        &format!(
            "providers:\n  secure:\n    type: openai\n    base_url: https://localhost:{port}/v1\n    api_key: sk-p\nmodels:\n  m:\n    targets:\n      - {{ provider: secure, model: tls-model }}\n"
        ),
    )
}

fn trust_test_ca() -> String {
    format!("  ca_file: {CERTS}/ca.pem\n")
}

#[tokio::test]
async fn a_private_ca_verifies_the_upstream_and_sni_is_the_host() {
    let up = tls_upstream("localhost").await;
    let gw = Gateway::start_with_pingora(&tls_config(up.port), &trust_test_ca()).await;
    let r = exchange(
        gw.addr,
        &post("/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "over tls");
    assert_eq!(up.sni.lock().unwrap()[0].as_deref(), Some("localhost"));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let up = tls_upstream("wrong-name").await;
    let gw = Gateway::start_with_pingora(&tls_config(up.port), &trust_test_ca()).await;
    let r = exchange(
        gw.addr,
        &post("/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error"));
}

#[tokio::test]
async fn an_untrusted_ca_is_refused() {
    let up = tls_upstream("localhost").await;
    let gw = Gateway::start(&tls_config(up.port)).await;
    let r = exchange(
        gw.addr,
        &post("/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error"));
}
