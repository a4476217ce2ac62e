//! Shared test harness: start the gateway, talk HTTP/1.1 to it, fake upstreams.

pub mod gateway;
pub mod http;
pub mod upstream;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
