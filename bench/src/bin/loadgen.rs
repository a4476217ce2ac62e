//! `loadgen`: the benchmark's load generator, one tool for every measure so the
//! direct, nginx and gateway targets are driven identically. It runs on one
//! thread (pin it to a core with `taskset`) and only talks to 127.0.0.0/8.
//!
//! Subcommands (results go to stdout as `key=value` pairs, diagnostics to stderr):
//! - `latency`: sequential POSTs on one keep-alive connection; p50/p99/mean in µs.
//!   The first failed request ends the run, unless `--max-errors N` lets up to N
//!   fail (counted in `errors=`; also for `ttfc`).
//! - `throughput`: N connections in a closed loop for a fixed time; requests/s.
//! - `ttfc`: sequential streaming POSTs; time from writing the request to the
//!   first body bytes holding a `data:` event with content, p50/p99 in µs.
//! - `streams`: opens many streams, prints `ready ...` once each got its first
//!   event, then holds them open until killed or `--hold-secs` pass.
//! - `wait`: polls a URL with GET until it answers the expected status.
//! - `free-ports`: prints N currently free TCP ports on 127.0.0.1.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_bench::args::Args;
use switchyard_bench::http::{build_request, connect, read_response, Response, Url};
use switchyard_bench::scan::{find, has_content, has_true};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

const USAGE: &str = "usage:
  loadgen latency    --url URL --body FILE [--header 'K: V']... [--requests 5000] [--warmup 500] [--max-errors 0]
  loadgen throughput --url URL --body FILE [--header 'K: V']... [--connections 32] [--duration-secs 5]
  loadgen ttfc       --url URL --body FILE [--header 'K: V']... [--requests 2000] [--warmup 200] [--max-errors 0]
  loadgen steady     --url URL --body FILE [--header 'K: V']... [--duration-secs 4]
  loadgen streams    --url URL --body FILE [--header 'K: V']... [--count 1000] [--hold-secs 10] [--timeout-secs 30]
  loadgen wait       --url URL [--header 'K: V']... [--status 200] [--timeout-secs 30]
  loadgen free-ports [--count 1]";

/// The longest a single request may take before the run counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(command) = argv.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "latency" => sequential(argv, false).await,
            "ttfc" => sequential(argv, true).await,
            "steady" => steady(argv).await,
            "throughput" => throughput(argv).await,
            "streams" => streams(argv).await,
            "wait" => wait(argv).await,
            "free-ports" => free_ports(argv),
            _ => Err(Failure::Usage(format!("unknown command `{command}`"))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("loadgen {command}: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("loadgen {command}: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed: bad command line (usage is printed) or a failed run.
enum Failure {
    Usage(String),
    Run(String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::Usage(msg)
    }
}

fn run_err(msg: impl Into<String>) -> Failure {
    Failure::Run(msg.into())
}

/// What every request-sending command shares: the parsed target and the
/// request bytes, built once.
struct Job {
    url: Url,
    request: Vec<u8>,
    /// The body asks for a stream (`"stream": true`).
    stream: bool,
}

impl Job {
    fn from_args(args: &Args, method: &str) -> Result<Job, Failure> {
        let url = Url::parse(&args.required::<String>("url")?)?;
        let body = match args.optional::<String>("body")? {
            Some(path) => std::fs::read(&path)
                .map_err(|e| Failure::Usage(format!("cannot read body file `{path}`: {e}")))?,
            None if method == "GET" => Vec::new(),
            None => return Err(Failure::Usage("option `--body` is required".into())),
        };
        let request = build_request(method, &url, &args.all("header"), &body)?;
        let stream = has_true(&body, "stream");
        Ok(Job {
            url,
            request,
            stream,
        })
    }
}

/// One client connection with its read buffers.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    body: Vec<u8>,
}

impl Conn {
    async fn open(url: &Url) -> std::io::Result<Conn> {
        let stream = timeout(REQUEST_TIMEOUT, connect(url.addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            body: Vec::with_capacity(16 * 1024),
        })
    }

    /// Writes `request` and reads the whole response; `on_data` sees the body
    /// received so far after every read.
    async fn exchange(
        &mut self,
        request: &[u8],
        on_data: impl FnMut(&[u8]),
    ) -> std::io::Result<Response> {
        self.stream.write_all(request).await?;
        read_response(&mut self.stream, &mut self.buf, &mut self.body, on_data).await
    }

    /// [`Conn::exchange`] bounded by [`REQUEST_TIMEOUT`].
    async fn exchange_timed(
        &mut self,
        request: &[u8],
        on_data: impl FnMut(&[u8]),
    ) -> std::io::Result<Response> {
        timeout(REQUEST_TIMEOUT, self.exchange(request, on_data))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))?
    }
}

/// `latency` and `ttfc`: sequential requests on one keep-alive connection
/// (re-opened only if the server closes it), timing each one. A failed request
/// ends the run, unless `--max-errors` allows more: then it is counted
/// (`errors=`, warm-up included), gives no sample, and the run goes on after
/// 10 ms, as `steady` does.
async fn sequential(argv: impl Iterator<Item = String>, ttfc: bool) -> Result<(), Failure> {
    let args = Args::parse(
        argv,
        &["url", "body", "header", "requests", "warmup", "max-errors"],
    )?;
    let job = Job::from_args(&args, "POST")?;
    let requests: usize = args.get("requests", if ttfc { 2000 } else { 5000 })?;
    let warmup: usize = args.get("warmup", if ttfc { 200 } else { 500 })?;
    let max_errors: usize = args.get("max-errors", 0)?;
    if requests == 0 {
        return Err(Failure::Usage("--requests must be at least 1".into()));
    }
    let mut samples = Vec::with_capacity(requests);
    let mut errors = 0;
    let mut conn: Option<Conn> = None;
    for i in 0..warmup + requests {
        match timed(&mut conn, &job, ttfc, false).await {
            Ok(took) if i >= warmup => samples.push(took),
            Ok(_) => {}
            Err(e) => {
                let e = format!("request {} of {}: {e}", i + 1, warmup + requests);
                if errors >= max_errors {
                    return Err(run_err(e));
                }
                if errors == 0 {
                    eprintln!("loadgen: first failed request: {e}");
                }
                errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    if samples.is_empty() {
        return Err(run_err(format!("all {requests} requests failed")));
    }
    println!(
        "requests={requests} errors={errors} {}",
        summary(&mut samples)
    );
    Ok(())
}

/// One request on `conn` (opened first when `None`, dropped after an error or
/// when the server will not reuse it), timed to its first content event when
/// `ttfc`, else to the end of the response. A failure, a status other than 200,
/// a stream without content, and with `need_done` a stream without `[DONE]`
/// (OpenAI's terminator) are errors.
async fn timed(
    conn: &mut Option<Conn>,
    job: &Job,
    ttfc: bool,
    need_done: bool,
) -> Result<Duration, String> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            Conn::open(&job.url)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", job.url.addr))?,
        ),
    };
    let mut first_content = None;
    let started = Instant::now();
    let exchanged = c
        .exchange_timed(&job.request, |body| {
            if ttfc && first_content.is_none() && has_content(body) {
                first_content = Some(Instant::now());
            }
        })
        .await;
    let finished = Instant::now();
    let response = match exchanged {
        Ok(response) => response,
        Err(e) => {
            *conn = None;
            return Err(e.to_string());
        }
    };
    let verdict = if response.status != 200 {
        let body = String::from_utf8_lossy(&c.body);
        Err(format!("status {} (want 200): {body}", response.status))
    } else if need_done && find(&c.body, b"[DONE]").is_none() {
        Err("the stream ended without [DONE]".to_string())
    } else if ttfc {
        first_content
            .map(|at| at - started)
            .ok_or_else(|| "the stream had no content event".to_string())
    } else {
        Ok(finished - started)
    };
    if !response.reusable {
        *conn = None;
    }
    verdict
}

/// `steady`: sequential requests on one keep-alive connection for
/// `--duration-secs`, counting failed ones instead of stopping at the first. A
/// streaming request (`"stream": true` in the body) is timed to its first
/// content event and must end with `[DONE]`; any other to its whole response.
async fn steady(argv: impl Iterator<Item = String>) -> Result<(), Failure> {
    let args = Args::parse(argv, &["url", "body", "header", "duration-secs"])?;
    let job = Job::from_args(&args, "POST")?;
    let secs: f64 = args.get("duration-secs", 4.0)?;
    if !(0.1..=600.0).contains(&secs) {
        return Err(Failure::Usage("need 0.1 <= --duration-secs <= 600".into()));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut conn: Option<Conn> = None;
    while Instant::now() < deadline {
        match timed(&mut conn, &job, job.stream, job.stream).await {
            Ok(took) => samples.push(took),
            Err(why) => {
                errors += 1;
                first_error.get_or_insert(why);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    if let Some(why) = &first_error {
        eprintln!("loadgen steady: {errors} failed; the first: {why}");
    }
    if samples.is_empty() {
        return Err(run_err(format!("all {errors} requests failed")));
    }
    println!(
        "requests={} errors={errors} {}",
        samples.len() + errors,
        summary(&mut samples)
    );
    Ok(())
}

/// `p50_us=.. p99_us=.. mean_us=.. max_us=..` of `samples` (sorted in place).
fn summary(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let rank = |p: f64| {
        let idx = (p * samples.len() as f64).ceil() as usize;
        samples[idx.clamp(1, samples.len()) - 1]
    };
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    format!(
        "p50_us={:.1} p99_us={:.1} mean_us={mean:.1} max_us={:.1}",
        us(rank(0.50)),
        us(rank(0.99)),
        us(samples[samples.len() - 1])
    )
}

/// Counts of one throughput worker.
#[derive(Default)]
struct Counts {
    ok: u64,
    non_ok: u64,
    errors: u64,
}

/// `throughput`: a closed loop on N connections until the deadline.
async fn throughput(argv: impl Iterator<Item = String>) -> Result<(), Failure> {
    let args = Args::parse(
        argv,
        &["url", "body", "header", "connections", "duration-secs"],
    )?;
    let job = Arc::new(Job::from_args(&args, "POST")?);
    let connections: usize = args.get("connections", 32)?;
    let secs: f64 = args.get("duration-secs", 5.0)?;
    if connections == 0 || !(0.1..=600.0).contains(&secs) {
        return Err(Failure::Usage(
            "need --connections >= 1 and 0.1 <= --duration-secs <= 600".into(),
        ));
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(throughput_worker(job.clone(), deadline)))
        .collect();
    let mut total = Counts::default();
    for worker in workers {
        let counts = worker
            .await
            .map_err(|e| run_err(format!("worker failed: {e}")))?;
        total.ok += counts.ok;
        total.non_ok += counts.non_ok;
        total.errors += counts.errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "responses={} rps={:.0} non200={} errors={} elapsed_s={elapsed:.3}",
        total.ok + total.non_ok,
        total.ok as f64 / elapsed,
        total.non_ok,
        total.errors
    );
    Ok(())
}

async fn throughput_worker(job: Arc<Job>, deadline: Instant) -> Counts {
    let mut counts = Counts::default();
    let mut conn: Option<Conn> = None;
    while Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&job.url).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    counts.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match c.exchange_timed(&job.request, |_| {}).await {
            Ok(response) => {
                if response.status == 200 {
                    counts.ok += 1;
                } else {
                    counts.non_ok += 1;
                }
                if !response.reusable {
                    conn = None;
                }
            }
            Err(_) => {
                counts.errors += 1;
                conn = None;
            }
        }
    }
    counts
}

/// `streams`: open `--count` streams, report once all got their first event,
/// then keep them open.
async fn streams(argv: impl Iterator<Item = String>) -> Result<(), Failure> {
    let args = Args::parse(
        argv,
        &[
            "url",
            "body",
            "header",
            "count",
            "hold-secs",
            "timeout-secs",
        ],
    )?;
    let job = Arc::new(Job::from_args(&args, "POST")?);
    let count: usize = args.get("count", 1000)?;
    let hold = Duration::from_secs_f64(args.get("hold-secs", 10.0)?);
    let wait_for = Duration::from_secs_f64(args.get("timeout-secs", 30.0)?);
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for i in 0..count {
        let conn = Conn::open(&job.url).await.map_err(|e| {
            run_err(format!(
                "opening connection {} of {count}: {e} (is `ulimit -n` high enough?)",
                i + 1
            ))
        })?;
        tokio::spawn(hold_stream(
            conn,
            job.clone(),
            ready.clone(),
            failed.clone(),
        ));
    }
    loop {
        let (r, f) = (
            ready.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        if r + f == count {
            break;
        }
        if start.elapsed() > wait_for {
            return Err(run_err(format!(
                "after {wait_for:?} only {r} of {count} streams got a first event ({f} failed)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let f = failed.load(Ordering::Relaxed);
    println!(
        "ready streams={} failed={f} open_ms={:.0}",
        count - f,
        start.elapsed().as_secs_f64() * 1e3
    );
    std::io::stdout()
        .flush()
        .map_err(|e| run_err(format!("stdout: {e}")))?;
    tokio::time::sleep(hold).await;
    Ok(())
}

/// One held stream: counts itself ready at its first content event, failed if
/// it ends or breaks before that, and otherwise reads until the stream ends.
async fn hold_stream(
    mut conn: Conn,
    job: Arc<Job>,
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) {
    let mut seen = false;
    let result = conn
        .exchange(&job.request, |body| {
            if !seen && has_content(body) {
                seen = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    if !seen && failed.fetch_add(1, Ordering::Relaxed) == 0 {
        let why = match result {
            Ok(response) => format!("status {} without a content event", response.status),
            Err(e) => e.to_string(),
        };
        eprintln!("loadgen streams: first failed stream: {why}");
    }
}

/// `wait`: GET the URL until it answers `--status`, or fail after the timeout.
async fn wait(argv: impl Iterator<Item = String>) -> Result<(), Failure> {
    let args = Args::parse(argv, &["url", "header", "status", "timeout-secs"])?;
    let job = Job::from_args(&args, "GET")?;
    let want: u16 = args.get("status", 200)?;
    let limit = Duration::from_secs_f64(args.get("timeout-secs", 30.0)?);
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    while start.elapsed() < limit {
        match Conn::open(&job.url).await {
            Ok(mut conn) => match conn.exchange_timed(&job.request, |_| {}).await {
                Ok(response) if response.status == want => return Ok(()),
                Ok(response) => last = format!("status {}", response.status),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(run_err(format!(
        "{} did not answer {want} within {limit:?} (last: {last})",
        job.url.addr
    )))
}

/// `free-ports`: binds `--count` ephemeral ports at once (so they differ),
/// prints them on one line, and releases them.
fn free_ports(argv: impl Iterator<Item = String>) -> Result<(), Failure> {
    let args = Args::parse(argv, &["count"])?;
    let count: usize = args.get("count", 1)?;
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| run_err(format!("cannot bind a port: {e}")))?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port().to_string()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| run_err(format!("cannot read a port: {e}")))?;
    println!("{}", ports.join(" "));
    Ok(())
}
