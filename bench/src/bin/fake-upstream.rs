//! `fake-upstream`: a fast OpenAI-compatible fake for the benchmark, listening on
//! 127.0.0.1 with TCP_NODELAY and HTTP/1.1 keep-alive.
//!
//! - `POST /v1/chat/completions` without `"stream": true`: a small fixed
//!   `chat.completion` with `Content-Length` and `usage`.
//! - the same with `"stream": true`: `text/event-stream`, chunked, one SSE event
//!   per HTTP chunk (`--chunks` content events, `--delay-ms` apart, then a final
//!   event with `finish_reason: "stop"` and `usage`, then `data: [DONE]`). When
//!   the request names the model `bench-hold`, the stream stays open for
//!   `--hold-ms` after its first event (or until the client goes away): the
//!   harness uses it to hold 1,000 streams open while it reads memory use.
//! - `GET /v1/models`: a one-model list.
//! - Azure's shape, `POST /openai/deployments/{deployment}/chat/completions?
//!   api-version=...`: the same answers, for the OpenAI→Azure scenario.
//!
//! - Bedrock's shape, `POST /model/{id}/converse`: a Converse answer; and
//!   `/converse-stream`: an event stream, one frame per HTTP chunk (`messageStart`
//!   with the first content frame, then content frames, then `contentBlockStop`,
//!   `messageStop` and `metadata`). The model id `bench-long` streams
//!   `LONG_FRAMES` content frames at once, to measure how fast the gateway
//!   translates an event stream.
//!
//! With `--hang-port PORT` it also listens on PORT as a broken upstream: it
//! accepts connections and reads requests but never answers, and logs
//! `hang: connection accepted` and `hang: request held` on stderr for each, so
//! the failover benchmark can count what reached it.
//!
//! With `--api-key KEY`, requests without `Authorization: Bearer KEY` (Azure
//! paths: `api-key: KEY` and an `api-version`; Bedrock paths: a SigV4
//! `Authorization` whose access key id is KEY) get 401, so a benchmark run proves
//! the proxy in front really swapped the credential and rewrote the URL. (The
//! signature itself is verified in the end-to-end tests, not here.)

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use switchyard_bench::args::Args;
use switchyard_bench::bedrock;
use switchyard_bench::http::{read_request, Request, MAX_HEAD};
use switchyard_bench::scan::{has_string, has_true};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const USAGE: &str = "usage: fake-upstream --port PORT [--chunks 8] [--delay-ms 0] \
[--hold-ms 10000] [--api-key KEY] [--threads 1] [--hang-port PORT]";

/// The model name that makes a stream stay open for `--hold-ms`.
const HOLD_MODEL: &str = "bench-hold";

/// The Bedrock model id whose stream is `LONG_FRAMES` frames, sent at once.
const LONG_MODEL: &str = "bench-long";

/// Content frames of the long Bedrock stream.
const LONG_FRAMES: usize = 20_000;

/// Prompt tokens reported in every `usage` object.
const PROMPT_TOKENS: usize = 5;

/// A streamed answer, pre-built: the head, the first write (holding the first
/// content), each further content write, and the end with the terminator.
struct StreamParts {
    head: Vec<u8>,
    first: Vec<u8>,
    content: Vec<u8>,
    end: Vec<u8>,
}

/// Everything a connection needs: behaviour settings and pre-built replies.
struct Fake {
    chunks: usize,
    delay: Duration,
    hold: Duration,
    api_key: Option<String>,
    completion: Vec<u8>,
    converse: Vec<u8>,
    models: Vec<u8>,
    unauthorized: Vec<u8>,
    not_found: Vec<u8>,
    openai_stream: StreamParts,
    bedrock_stream: StreamParts,
}

/// One SSE event framed as its own HTTP chunk.
fn chunk(event: &str) -> Vec<u8> {
    http_chunk(format!("data: {event}\n\n").as_bytes())
}

/// `bytes` as one HTTP/1.1 chunk.
fn http_chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// The ConverseStream of the fake: frames as HTTP chunks.
fn bedrock_stream(chunks: usize) -> Result<StreamParts, String> {
    let content = bedrock::event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
    )?;
    let mut first = bedrock::event("messageStart", r#"{"role":"assistant"}"#)?;
    first.extend_from_slice(&content);
    let mut end = bedrock::event("contentBlockStop", r#"{"contentBlockIndex":0}"#)?;
    end.extend_from_slice(&bedrock::event(
        "messageStop",
        r#"{"stopReason":"end_turn"}"#,
    )?);
    end.extend_from_slice(&bedrock::event(
        "metadata",
        &format!(
            r#"{{"usage":{{"inputTokens":{PROMPT_TOKENS},"outputTokens":{chunks},"totalTokens":{}}},"metrics":{{"latencyMs":1}}}}"#,
            PROMPT_TOKENS + chunks
        ),
    )?);
    let mut end = http_chunk(&end);
    end.extend_from_slice(b"0\r\n\r\n");
    Ok(StreamParts {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        first: http_chunk(&first),
        content: http_chunk(&content),
        end,
    })
}

/// A complete JSON response with `Content-Length`.
fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_response(status: &str, message: &str, code: &str) -> Vec<u8> {
    json_response(
        status,
        &format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{code}"}}}}"#
        ),
    )
}

impl Fake {
    fn new(
        chunks: usize,
        delay: Duration,
        hold: Duration,
        api_key: Option<String>,
    ) -> Result<Fake, String> {
        let usage = |completion: usize| {
            format!(
                r#""usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{completion},"total_tokens":{}}}"#,
                PROMPT_TOKENS + completion
            )
        };
        let completion = format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench-model","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}],{}}}"#,
            usage(1)
        );
        let content_event = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        let final_event = format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],{}}}"#,
            usage(chunks)
        );
        let mut stream_end = chunk(&final_event);
        stream_end.extend_from_slice(&chunk("[DONE]"));
        stream_end.extend_from_slice(b"0\r\n\r\n");
        let converse = format!(
            r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"hi"}}]}}}},"stopReason":"end_turn","usage":{{"inputTokens":{PROMPT_TOKENS},"outputTokens":1,"totalTokens":{}}},"metrics":{{"latencyMs":1}}}}"#,
            PROMPT_TOKENS + 1
        );
        Ok(Fake {
            chunks,
            delay,
            hold,
            api_key,
            completion: json_response("200 OK", &completion),
            converse: json_response("200 OK", &converse),
            models: json_response(
                "200 OK",
                r#"{"object":"list","data":[{"id":"bench-model","object":"model","created":1,"owned_by":"bench"}]}"#,
            ),
            unauthorized: error_response("401 Unauthorized", "bad upstream key", "invalid_api_key"),
            not_found: error_response("404 Not Found", "no such path", "not_found"),
            openai_stream: StreamParts {
                head: b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                first: chunk(content_event),
                content: chunk(content_event),
                end: stream_end,
            },
            bedrock_stream: bedrock_stream(chunks)?,
        })
    }

    fn authorized(&self, req: &Request) -> bool {
        if bedrock::operation(&req.path).is_some() {
            return match &self.api_key {
                None => true,
                Some(key) => req.authorization.as_deref().is_some_and(|a| {
                    a.strip_prefix("AWS4-HMAC-SHA256 Credential=")
                        .and_then(|c| c.split_once('/'))
                        .is_some_and(|(id, _)| id == key)
                }),
            };
        }
        if is_azure_chat(&req.path) {
            let versioned = req.query.split('&').any(|p| p.starts_with("api-version="));
            return versioned
                && match &self.api_key {
                    None => true,
                    Some(key) => req.api_key.as_deref() == Some(key.as_str()),
                };
        }
        match &self.api_key {
            None => true,
            Some(key) => {
                req.authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "))
                    == Some(key.as_str())
            }
        }
    }
}

/// `/openai/deployments/{deployment}/chat/completions`.
fn is_azure_chat(path: &str) -> bool {
    path.strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(deployment, op)| !deployment.is_empty() && op == "chat/completions")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fake-upstream: {err}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args = Args::parse(
        std::env::args().skip(1),
        &[
            "port",
            "chunks",
            "delay-ms",
            "hold-ms",
            "api-key",
            "threads",
            "hang-port",
        ],
    )?;
    let port: u16 = args.required("port")?;
    let hang_port: Option<u16> = args.optional("hang-port")?;
    let chunks: usize = args.get("chunks", 8)?;
    if chunks == 0 {
        return Err("--chunks must be at least 1".into());
    }
    let threads: usize = args.get("threads", 1)?;
    let api_key: Option<String> = args.optional("api-key")?;
    let fake = Arc::new(Fake::new(
        chunks,
        Duration::from_millis(args.get("delay-ms", 0)?),
        Duration::from_millis(args.get("hold-ms", 10_000)?),
        api_key,
    )?);
    // The harness reads this line to turn the long stream's time into MB/s.
    let long = &fake.bedrock_stream;
    eprintln!(
        "fake-upstream: bedrock long stream {} bytes of frames",
        long.first.len() + (LONG_FRAMES - 1) * long.content.len() + long.end.len()
    );
    let runtime = match threads {
        0 => return Err("--threads must be at least 1".into()),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(port, hang_port, fake))
}

/// Serves the fake on `port`, and the never-answering listener on `hang_port`.
async fn serve(port: u16, hang_port: Option<u16>, fake: Arc<Fake>) -> Result<(), String> {
    let bind = |port| listen(port).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"));
    let listener = bind(port)?;
    if let Some(hang_port) = hang_port {
        tokio::spawn(accept_loop(bind(hang_port)?, hang));
        eprintln!("fake-upstream: hanging on 127.0.0.1:{hang_port}");
    }
    eprintln!("fake-upstream: listening on 127.0.0.1:{port}");
    accept_loop(listener, move |stream| connection(stream, fake.clone())).await;
    Ok(())
}

/// Accepts connections for ever, each served by its own task running `handle`.
async fn accept_loop<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream));
            }
            Err(err) => {
                // Typically EMFILE under 1,000 streams with a low `ulimit -n`:
                // say so, back off and keep serving the open connections.
                eprintln!("fake-upstream: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    socket.listen(4096)
}

/// A connection on the hanging port: its requests are read, logged and never
/// answered; it stays open until the client gives up.
async fn hang(mut stream: TcpStream) {
    eprintln!("fake-upstream: hang: connection accepted");
    let mut buf = Vec::with_capacity(8 * 1024);
    while let Ok(Some(_)) = read_request(&mut stream, &mut buf).await {
        eprintln!("fake-upstream: hang: request held");
    }
}

async fn connection(mut stream: TcpStream, fake: Arc<Fake>) {
    if let Err(err) = serve_connection(&mut stream, &fake).await {
        if err.kind() == std::io::ErrorKind::InvalidData {
            eprintln!("fake-upstream: bad request: {err}");
        }
    }
}

async fn serve_connection(stream: &mut TcpStream, fake: &Fake) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8 * 1024);
    while let Some(req) = read_request(stream, &mut buf).await? {
        if !fake.authorized(&req) {
            stream.write_all(&fake.unauthorized).await?;
        } else {
            let chat = req.path == "/v1/chat/completions" || is_azure_chat(&req.path);
            let converse = bedrock::operation(&req.path);
            match (req.method.as_str(), req.path.as_str()) {
                ("POST", _) if chat => {
                    if has_true(&req.body, "stream") {
                        let hold = has_string(&req.body, "model", HOLD_MODEL);
                        let parts = &fake.openai_stream;
                        if !stream_reply(stream, &mut buf, fake, parts, hold, fake.chunks).await? {
                            return Ok(());
                        }
                    } else {
                        stream.write_all(&fake.completion).await?;
                    }
                }
                ("POST", _) if converse.is_some() => match converse {
                    Some((model, true)) => {
                        let frames = if model == LONG_MODEL {
                            LONG_FRAMES
                        } else {
                            fake.chunks
                        };
                        let (parts, hold) = (&fake.bedrock_stream, model == HOLD_MODEL);
                        if !stream_reply(stream, &mut buf, fake, parts, hold, frames).await? {
                            return Ok(());
                        }
                    }
                    _ => stream.write_all(&fake.converse).await?,
                },
                ("GET", "/v1/models") => stream.write_all(&fake.models).await?,
                _ => stream.write_all(&fake.not_found).await?,
            }
        }
        if !req.keep_alive {
            break;
        }
    }
    Ok(())
}

/// Writes a streamed answer of `events` content events, one event per write;
/// returns false when the client went away while the stream was held open.
async fn stream_reply(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    fake: &Fake,
    parts: &StreamParts,
    hold: bool,
    events: usize,
) -> std::io::Result<bool> {
    stream.write_all(&parts.head).await?;
    stream.write_all(&parts.first).await?;
    if hold && !hold_open(stream, buf, fake.hold).await? {
        return Ok(false);
    }
    for _ in 1..events {
        pause(fake.delay).await;
        stream.write_all(&parts.content).await?;
    }
    pause(fake.delay).await;
    stream.write_all(&parts.end).await?;
    Ok(true)
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Waits for `hold`, or until the client closes; returns false if it closed.
/// Bytes a client sends meanwhile stay in `buf` for the next request.
async fn hold_open(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    hold: Duration,
) -> std::io::Result<bool> {
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "client sent too much while its stream was held",
            ));
        }
        buf.reserve(4096);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(true),
            read = stream.read_buf(buf) => {
                if read? == 0 {
                    return Ok(false);
                }
            }
        }
    }
}
