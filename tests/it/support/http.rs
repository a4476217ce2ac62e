//! A small HTTP/1.1 client over a raw socket, so tests see exactly what the gateway
//! writes: status, headers, chunk boundaries, and when each event arrives.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::gateway::KEY;

/// How long any single read may take before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// `error.code` of an error envelope, after checking all four keys are there.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let e = v["error"].as_object().expect("an error envelope");
        for k in ["message", "type", "param", "code"] {
            assert!(e.contains_key(k), "envelope lacks `{k}`: {v}");
        }
        e["code"].as_str().unwrap_or_default().to_string()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request as raw bytes: `headers` are added after `host`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: gateway.test\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A POST of `body` with the test key.
pub fn post(path: &str, body: &str) -> Vec<u8> {
    let auth = format!("Bearer {KEY}");
    request(
        "POST",
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// A GET with extra headers.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut conn = Conn::open(addr).await?;
    conn.send(&request("GET", path, headers, b"")).await?;
    conn.read_response().await
}

/// POSTs `body` (a streaming chat request) on a new connection and reads the
/// head of its 200 answer: the head, and the events still to read.
pub async fn open_stream(addr: SocketAddr, body: &str) -> (Head, Events) {
    let mut conn = Conn::open(addr).await.expect("connect");
    conn.send(&post("/v1/chat/completions", body))
        .await
        .expect("send");
    let head = conn.read_head().await.expect("response head");
    assert_eq!(head.status, 200, "{:?}", head.headers);
    (head, Events::new(conn))
}

/// Sends raw `bytes` on a new connection and reads one response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut conn = Conn::open(addr).await.expect("connect");
    conn.send(bytes).await.expect("send");
    conn.read_response().await.expect("response")
}

/// One client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

/// A response whose header was read and whose body is still on the wire.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

async fn timed<T>(
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "read timed out",
            ))
        })
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes).await
    }

    /// Reads a status line and headers (skipping `100 Continue` only if `skip_continue`).
    pub async fn read_head(&mut self) -> std::io::Result<Head> {
        timed(async {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed",
                ));
            }
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                self.reader.read_line(&mut h).await?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((n, v)) = h.split_once(':') {
                    headers.push((n.trim().to_string(), v.trim().to_string()));
                }
            }
            Ok(Head { status, headers })
        })
        .await
    }

    /// Reads a whole response (content-length, chunked, or until close).
    pub async fn read_response(&mut self) -> std::io::Result<Response> {
        let head = self.read_head().await?;
        let body = if head.status == 100 {
            Vec::new()
        } else if let Some(len) = head.header("content-length") {
            let len: usize = len.parse().map_err(std::io::Error::other)?;
            let mut body = vec![0; len];
            timed(self.reader.read_exact(&mut body)).await?;
            body
        } else if head
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            let mut body = Vec::new();
            while let Some(chunk) = self.next_chunk().await? {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            let mut body = Vec::new();
            timed(self.reader.read_to_end(&mut body)).await?;
            body
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// The next chunk of a chunked body; `None` after the last (zero) chunk.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        timed(async {
            let mut size_line = String::new();
            if self.reader.read_line(&mut size_line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed mid-body",
                ));
            }
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
            let mut data = vec![0; size + 2];
            self.reader.read_exact(&mut data).await?;
            data.truncate(size);
            Ok((size > 0).then_some(data))
        })
        .await
    }
}

/// Reads SSE events (`data` payloads) from a chunked body, one at a time.
pub struct Events {
    pub conn: Conn,
    pending: Vec<u8>,
    ended: bool,
}

impl Events {
    /// Events of `conn`, whose head was already read.
    pub fn new(conn: Conn) -> Self {
        Events {
            conn,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// The next event's data, or `None` at the end of the body.
    pub async fn next(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.pending.drain(..pos + 2).collect();
                let text = String::from_utf8(event).map_err(std::io::Error::other)?;
                let data = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Ok(Some(data));
            }
            if self.ended {
                assert!(
                    self.pending.is_empty(),
                    "body ended inside an event: {:?}",
                    self.pending
                );
                return Ok(None);
            }
            match self.conn.next_chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => self.ended = true,
            }
        }
    }

    /// Every remaining event.
    pub async fn rest(&mut self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await? {
            out.push(e);
        }
        Ok(out)
    }
}
