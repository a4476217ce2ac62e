//! A fake OpenAI-compatible upstream on 127.0.0.1: records every request and
//! answers as the test scripts it, including streams sent in lockstep with the
//! client, broken streams and silence.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How a scripted stream's body ends.
pub enum StreamEnd {
    /// The terminating chunk right after the last event.
    Clean,
    /// The connection closes instead: a broken stream.
    Cut,
    /// The terminating chunk only after this long (an upstream slow to finish).
    Late(Duration),
}

/// How the fake answers one request.
pub enum Reply {
    /// A complete answer with `content-length`.
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// A chunked `text/event-stream`: each event in its own chunk; with a gate,
    /// event k+1 is sent only after the gate released one permit.
    Stream {
        events: Vec<String>,
        gate: Option<Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>>,
        /// How the body ends after the events.
        end: StreamEnd,
    },
    /// A chunked 200 of raw bytes, one chunk per piece: binary streams such as
    /// Bedrock's event stream.
    Chunked {
        content_type: &'static str,
        pieces: Vec<Vec<u8>>,
        end: StreamEnd,
    },
    /// Never answer (until the connection is closed by the gateway).
    Silence,
}

impl Reply {
    /// A 200 JSON answer.
    pub fn ok(body: serde_json::Value) -> Reply {
        Reply::Json {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
        }
    }

    /// An error answer in OpenAI's envelope.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::Json {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}).to_string(),
        }
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A running fake upstream.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Notified whenever a connection to the fake is closed by its peer.
    pub closed: Arc<Notify>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Starts a fake that answers each request with `handler`.
    pub async fn start(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Notify::new());
        let handler: Handler = Arc::new(handler);
        let (recorded, notify) = (requests.clone(), closed.clone());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                let (handler, recorded, notify) =
                    (handler.clone(), recorded.clone(), notify.clone());
                tokio::spawn(async move {
                    serve(stream, handler, recorded).await;
                    notify.notify_waiters();
                    notify.notify_one();
                });
            }
        });
        FakeUpstream {
            addr,
            requests,
            closed,
            connections,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, handler: Handler, recorded: Arc<Mutex<Vec<Recorded>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader).await else {
            return;
        };
        recorded.lock().unwrap().push(request.clone());
        let reply = handler(&request);
        if !write_reply(&mut reader, reply).await {
            return;
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).await.ok()?;
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// Writes `reply`; false when the connection must not be reused.
async fn write_reply(reader: &mut BufReader<TcpStream>, reply: Reply) -> bool {
    let stream = reader.get_mut();
    match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await.is_ok()
                && stream.write_all(body.as_bytes()).await.is_ok()
        }
        Reply::Stream { events, gate, end } => {
            let pieces = events.into_iter().map(String::into_bytes).collect();
            write_chunked(
                stream,
                "text/event-stream; charset=utf-8",
                pieces,
                gate,
                end,
            )
            .await
        }
        Reply::Chunked {
            content_type,
            pieces,
            end,
        } => write_chunked(stream, content_type, pieces, None, end).await,
        Reply::Silence => {
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
            false
        }
    }
}

/// Writes a chunked 200 with `pieces` as its chunks; with a gate, piece k+1 is
/// sent only after the gate released one permit. False when the connection must
/// not be reused.
async fn write_chunked(
    stream: &mut TcpStream,
    content_type: &str,
    pieces: Vec<Vec<u8>>,
    gate: Option<Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>>>,
    end: StreamEnd,
) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nset-cookie: upstream=1\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            if let Some(gate) = &gate {
                // Wait for the permit, but notice the gateway hanging up meanwhile.
                let mut rx = gate.lock().await;
                let mut probe = [0u8; 1];
                tokio::select! {
                    permit = tokio::time::timeout(Duration::from_secs(10), rx.recv()) => {
                        if !matches!(permit, Ok(Some(()))) {
                            return false;
                        }
                    }
                    _ = stream.read(&mut probe) => return false,
                }
            }
        }
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        if stream.write_all(&chunk).await.is_err() {
            return false;
        }
    }
    match end {
        StreamEnd::Clean => {}
        StreamEnd::Cut => return false,
        StreamEnd::Late(wait) => tokio::time::sleep(wait).await,
    }
    stream.write_all(b"0\r\n\r\n").await.is_ok()
}

/// An OpenAI chat completion chunk event with `content`.
pub fn chunk_event(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}
