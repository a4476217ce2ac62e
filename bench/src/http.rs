//! Minimal HTTP/1.1 over tokio TCP, just enough for the benchmark: reading a
//! request (Content-Length or chunked body), reading a response (Content-Length,
//! chunked, or until close) while watching its body arrive, building a request,
//! and parsing `http://` URLs that must point at the loopback interface.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::scan::find;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// How much room is made in a buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn closed_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of a message",
    )
}

/// Reads more bytes into `buf`; returns how many (0 at end of stream).
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}

/// Opens a TCP connection with Nagle's algorithm off.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Decoder state for a `Transfer-Encoding: chunked` body.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl Chunked {
    /// Decodes as much of `input` as is complete, appending the payload to `out`;
    /// returns how many bytes of `input` were consumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Size => {
                    let Some(end) = find(rest, b"\r\n") else {
                        return too_long_line(rest).map(|()| pos);
                    };
                    let line = std::str::from_utf8(&rest[..end])
                        .map_err(|_| invalid("chunk size is not ASCII"))?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| invalid(format!("bad chunk size `{hex}`")))?;
                    if out.len().saturating_add(size) > MAX_BODY {
                        return Err(invalid("chunked body too large"));
                    }
                    pos += end + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = left.min(rest.len());
                    if take == 0 {
                        return Ok(pos);
                    }
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(end) = find(rest, b"\r\n") else {
                        return too_long_line(rest).map(|()| pos);
                    };
                    pos += end + 2;
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(pos),
            }
        }
    }

    /// Whether the terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }
}

fn too_long_line(rest: &[u8]) -> io::Result<()> {
    if rest.len() > 4096 {
        Err(invalid("chunk size or trailer line too long"))
    } else {
        Ok(())
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads a body framed by `framing` from `buf` and then `stream` into `body`,
/// calling `on_data` with everything received so far after each step.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    framing: Framing,
    body: &mut Vec<u8>,
    mut on_data: impl FnMut(&[u8]),
) -> io::Result<()> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(len) => {
            if len > MAX_BODY {
                return Err(invalid("body too large"));
            }
            loop {
                let take = (len - body.len()).min(buf.len());
                body.extend(buf.drain(..take));
                on_data(body);
                if body.len() == len {
                    return Ok(());
                }
                if fill(stream, buf).await? == 0 {
                    return Err(closed_early());
                }
            }
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            loop {
                let used = decoder.decode(buf, body)?;
                buf.drain(..used);
                on_data(body);
                if decoder.is_done() {
                    return Ok(());
                }
                if fill(stream, buf).await? == 0 {
                    return Err(closed_early());
                }
            }
        }
        Framing::UntilClose => loop {
            body.append(buf);
            if body.len() > MAX_BODY {
                return Err(invalid("body too large"));
            }
            on_data(body);
            if fill(stream, buf).await? == 0 {
                return Ok(());
            }
        },
    }
}

/// Reads until `buf` holds a complete head; returns its length (with the blank
/// line), or `None` if the stream ended cleanly before any byte arrived.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let mut searched = 0;
    loop {
        if let Some(at) = find(&buf[searched..], b"\r\n\r\n") {
            return Ok(Some(searched + at + 4));
        }
        searched = buf.len().saturating_sub(3);
        if buf.len() > MAX_HEAD {
            return Err(invalid("message head too large"));
        }
        if fill(stream, buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(closed_early())
            };
        }
    }
}

/// The header fields the benchmark cares about.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    authorization: Option<String>,
    api_key: Option<String>,
    expect_continue: bool,
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> io::Result<Fields> {
    let mut fields = Fields::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line `{line}`")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse()
                .map_err(|_| invalid(format!("bad content-length `{value}`")))?;
            fields.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            fields.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            fields.close |= value.contains("close");
            fields.keep_alive |= value.contains("keep-alive");
        } else if name.eq_ignore_ascii_case("authorization") {
            fields.authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("api-key") {
            fields.api_key = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("expect") {
            fields.expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    Ok(fields)
}

/// One request as the fake upstream needs it.
#[derive(Debug)]
pub struct Request {
    /// The method, such as `POST`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, without `?` (empty when there is none).
    pub query: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `api-key` header (Azure's credential), if any.
    pub api_key: Option<String>,
    /// Whether the connection may be reused after the response.
    pub keep_alive: bool,
    /// The whole body, de-chunked.
    pub body: Vec<u8>,
}

/// Reads one request from `stream`, using and refilling `buf` (which keeps any
/// bytes of a following request). Returns `None` when the client closed the
/// connection between requests. Answers `Expect: 100-continue` itself.
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Request>> {
    let Some(head_len) = read_head(stream, buf).await? else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len - 4])
        .map_err(|_| invalid("request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line `{request_line}`")));
    };
    let fields = parse_fields(lines)?;
    let method = method.to_string();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let keep_alive = if version == "HTTP/1.0" {
        fields.keep_alive
    } else {
        !fields.close
    };
    buf.drain(..head_len);

    let framing = if fields.chunked {
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(len) => Framing::Length(len),
            None => Framing::Empty,
        }
    };
    if fields.expect_continue && !matches!(framing, Framing::Empty) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut body = Vec::new();
    read_body(stream, buf, framing, &mut body, |_| {}).await?;
    Ok(Some(Request {
        method,
        path,
        query,
        authorization: fields.authorization,
        api_key: fields.api_key,
        keep_alive,
        body,
    }))
}

/// The outcome of reading one response.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    /// The final (non-1xx) status code.
    pub status: u16,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// Reads one response from `stream` into `body` (cleared first), using and
/// refilling `buf`. `on_data` sees the body received so far after every read,
/// so a caller can stamp the arrival of the first event of a stream.
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    body: &mut Vec<u8>,
    on_data: impl FnMut(&[u8]),
) -> io::Result<Response> {
    body.clear();
    loop {
        let head_len = read_head(stream, buf).await?.ok_or_else(closed_early)?;
        let head = std::str::from_utf8(&buf[..head_len - 4])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.split(' ');
        let http10 = parts.next() == Some("HTTP/1.0");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line `{status_line}`")))?;
        let fields = parse_fields(lines)?;
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            continue;
        }
        let mut reusable = if http10 {
            fields.keep_alive
        } else {
            !fields.close
        };
        let framing = if status == 204 || status == 304 {
            Framing::Empty
        } else if fields.chunked {
            Framing::Chunked
        } else if let Some(len) = fields.content_length {
            Framing::Length(len)
        } else {
            reusable = false;
            Framing::UntilClose
        };
        read_body(stream, buf, framing, body, on_data).await?;
        return Ok(Response { status, reusable });
    }
}

/// An `http://` URL on the loopback interface.
#[derive(Debug, Clone)]
pub struct Url {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port`).
    pub authority: String,
    /// The path with query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://HOST:PORT/path`; HOST must be `localhost` or a 127.x.x.x
    /// address, because the benchmark never sends traffic anywhere else.
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}`: the URL needs an explicit port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{url}`: bad port `{port}`"))?;
        let ip = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| format!("`{url}`: host must be localhost or a 127.x.x.x address"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "`{url}`: refusing a non-loopback address; the benchmark only talks to 127.0.0.0/8"
            ));
        }
        Ok(Url {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Builds the bytes of one request: `headers` are `Name: value` lines, and a
/// non-empty `body` gets `Content-Length` (and `Content-Type: application/json`
/// unless a header sets the content type).
pub fn build_request(
    method: &str,
    url: &Url,
    headers: &[&str],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.path, url.authority
    );
    let mut has_content_type = false;
    for header in headers {
        if header.contains(['\r', '\n']) || !header.contains(':') {
            return Err(format!("bad header `{header}`: expected `Name: value`"));
        }
        has_content_type |= header
            .split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-type"));
        head.push_str(header);
        head.push_str("\r\n");
    }
    if !body.is_empty() {
        if !has_content_type {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decodes_across_splits() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut dec = Chunked::default();
            let mut out = Vec::new();
            let mut pending = wire[..split].to_vec();
            let used = dec.decode(&pending, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&wire[split..]);
            let used = dec.decode(&pending, &mut out).unwrap();
            assert!(dec.is_done(), "split at {split}");
            assert_eq!(out, b"hello world");
            assert_eq!(&pending[used..], b"NEXT");
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut out = Vec::new();
        assert!(Chunked::default().decode(b"zz\r\n", &mut out).is_err());
        assert!(Chunked::default().decode(b"2\r\nabXY", &mut out).is_err());
    }

    #[test]
    fn urls_must_be_loopback() {
        let u = Url::parse("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(u.addr.port(), 8080);
        assert_eq!(u.path, "/v1/chat/completions");
        assert_eq!(Url::parse("http://localhost:1").unwrap().path, "/");
        assert!(Url::parse("http://10.0.0.1:80/").is_err());
        assert!(Url::parse("http://example.com:80/").is_err());
        assert!(Url::parse("https://127.0.0.1:80/").is_err());
        assert!(Url::parse("http://127.0.0.1/").is_err());
    }

    #[test]
    fn builds_requests() {
        let u = Url::parse("http://127.0.0.1:9/x").unwrap();
        let r = build_request("POST", &u, &["Authorization: Bearer k"], b"{}").unwrap();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST /x HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
        assert!(build_request("GET", &u, &["bad"], b"").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_requests_and_responses() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client
                .write_all(b"POST /v1/x?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer k\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
                .await
                .unwrap();
            client
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndata")
                .await
                .unwrap();
            client
        });
        let mut buf = Vec::new();
        let req = read_request(&mut server, &mut buf).await.unwrap().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/x");
        assert_eq!(req.query, "q=1");
        assert_eq!(req.body, b"abc");
        assert_eq!(req.authorization.as_deref(), Some("Bearer k"));
        assert!(req.keep_alive);
        let mut body = Vec::new();
        let mut seen = 0;
        let resp = read_response(&mut server, &mut buf, &mut body, |b| seen = b.len())
            .await
            .unwrap();
        assert_eq!((resp.status, resp.reusable), (200, true));
        assert_eq!(body, b"data");
        assert_eq!(seen, 4);
        drop(writer.await.unwrap());
        assert!(read_request(&mut server, &mut buf).await.unwrap().is_none());
    }
}
