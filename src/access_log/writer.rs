//! The access-log writer: requests hand their line to a bounded queue, and one
//! thread of its own writes the queue to stdout.
//!
//! A request never waits on stdout. When the reader of stdout (journald, a pipe, a
//! terminal) falls behind and the queue is full, the line is dropped and counted in
//! `switchyard_access_log_dropped_total`: traffic keeps flowing, and the gap is
//! visible.
//!
//! The writer rests [`BATCH_INTERVAL`] after each write and then takes everything
//! that queued up meanwhile. Under load it is therefore never blocked on the
//! queue, so a request's hand-over is a few atomic operations, not a wake-up of
//! another thread (which profiling showed to cost as much as the rest of the
//! log); and stdout gets one large write per interval, not one per request. Only
//! an idle gateway's writer waits on the queue, to be woken by the next line.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::time::Duration;

use prometheus::IntCounter;

use super::line::Line;
use crate::config::Config;
use crate::record::RequestRecord;

/// Lines that may wait for the writer: several seconds of a busy gateway, a few
/// MB at most.
const QUEUE_LINES: usize = 16 * 1024;
/// The writer's buffer: one write per batch, up to this size.
const WRITE_BUFFER: usize = 64 * 1024;
/// How long the writer gathers lines after a write: the most a line waits
/// beyond its predecessors' write.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// What goes through the queue.
// Lines are the traffic and move by value, as before the flush marker existed;
// boxing them would cost an allocation per request to save bytes on a marker
// sent once per process.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Line(Line),
    /// Everything queued before has been written and flushed: tell the sender.
    Flush(Sender<()>),
}

/// The queue to the writer thread.
pub struct AccessLog {
    queue: SyncSender<Entry>,
    /// `access_log.enabled` of the current config.
    enabled: AtomicBool,
    dropped: IntCounter,
}

impl AccessLog {
    /// Starts the writer thread on stdout.
    pub fn to_stdout(dropped: IntCounter) -> std::io::Result<Self> {
        Self::start(std::io::stdout(), QUEUE_LINES, dropped)
    }

    fn start(
        sink: impl Write + Send + 'static,
        capacity: usize,
        dropped: IntCounter,
    ) -> std::io::Result<Self> {
        let (queue, lines) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(lines, sink))?;
        Ok(AccessLog {
            queue,
            enabled: AtomicBool::new(true),
            dropped,
        })
    }

    /// Applies `config`'s `access_log` settings.
    pub fn sync(&self, config: &Config) {
        self.enabled
            .store(config.access_log.enabled, Ordering::Relaxed);
    }

    /// Queues `record`'s line, unless the access log is off; never blocks. The
    /// line takes the record's strings: call this last.
    pub fn write(&self, record: &mut RequestRecord) {
        if self.enabled.load(Ordering::Relaxed) {
            self.send(Line::take(record));
        }
    }

    fn send(&self, line: Line) {
        // Full, or (never expected) the writer thread is gone: either way the
        // line is lost, and counted.
        if self.queue.try_send(Entry::Line(line)).is_err() {
            self.dropped.inc();
        }
    }

    /// Waits until every line queued so far is written and flushed, at most
    /// `timeout` (stdout's reader may be stuck); true if it was. The process
    /// calls this before it exits, so the last requests' lines are not lost.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = channel();
        let queue = self.queue.clone();
        // Queueing the marker blocks while the queue is full; a thread of its
        // own keeps that wait inside `timeout` too.
        let queued = std::thread::Builder::new()
            .name("access-log-flush".into())
            .spawn(move || {
                let _ = queue.send(Entry::Flush(done));
            });
        queued.is_ok() && flushed.recv_timeout(timeout).is_ok()
    }
}

/// The writer thread: everything queued is written, one flush per batch.
fn write_lines(entries: Receiver<Entry>, sink: impl Write) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, sink);
    let mut failing = false;
    let mut flushed = Vec::new();
    // `recv` blocks only when nothing queued up during the rest.
    while let Ok(first) = entries.recv() {
        let mut result = Ok(());
        for entry in std::iter::once(first).chain(std::iter::from_fn(|| entries.try_recv().ok())) {
            match entry {
                Entry::Line(line) => result = result.and_then(|_| write_line(&mut out, &line)),
                Entry::Flush(done) => flushed.push(done),
            }
        }
        result = result.and_then(|_| out.flush());
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        // One warning per outage, not one per line.
        match result {
            Err(e) if !failing => {
                log::warn!("cannot write the access log: {e}");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
        std::thread::sleep(BATCH_INTERVAL);
    }
}

fn write_line(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
    line.write_json(&mut *out)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Mutex};

    /// A sink whose first write blocks until the test opens it: stdout whose
    /// reader stalled.
    struct StalledSink {
        entered: std::sync::mpsc::Sender<()>,
        open: Option<Receiver<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for StalledSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(open) = self.open.take() {
                self.entered.send(()).unwrap();
                open.recv().unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line of a request whose id is `id`.
    fn line(id: &str) -> Line {
        let mut record = RequestRecord::start();
        record.request_id = id.to_string();
        Line::take(&mut record)
    }

    /// The request ids of the lines written, once there are `want` of them.
    fn written_lines(written: &Mutex<Vec<u8>>, want: usize) -> Vec<String> {
        for _ in 0..500 {
            let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            if text.lines().count() >= want {
                return text
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        v["request_id"].as_str().unwrap().to_string()
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the writer did not write {want} lines");
    }

    #[test]
    fn a_stalled_stdout_drops_and_counts_lines_instead_of_blocking() {
        let (entered, writer_blocked) = channel();
        let (open, opened) = channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = StalledSink {
            entered,
            open: Some(opened),
            written: written.clone(),
        };
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let log = AccessLog::start(sink, 4, dropped.clone()).unwrap();

        log.send(line("line 0"));
        writer_blocked.recv().unwrap();
        // The writer holds line 0; four lines fit the queue, the next three do not.
        for i in 1..=7 {
            log.send(line(&format!("line {i}")));
        }
        assert_eq!(dropped.get(), 3);

        open.send(()).unwrap();
        assert_eq!(
            written_lines(&written, 5),
            ["line 0", "line 1", "line 2", "line 3", "line 4"]
        );
        log.send(line("line 8"));
        assert_eq!(written_lines(&written, 6)[5], "line 8");
        assert_eq!(dropped.get(), 3);
    }

    /// A sink that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_returns_once_every_queued_line_is_written() {
        let kept = Kept::default();
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let log = AccessLog::start(kept.clone(), 64, dropped).unwrap();
        for i in 0..20 {
            log.send(line(&format!("line {i}")));
        }
        assert!(log.flush(Duration::from_secs(5)));
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20, "written before flush returned");
    }

    #[test]
    fn flush_gives_up_after_its_timeout_when_stdout_is_stuck() {
        let (entered, writer_blocked) = channel();
        let (open, opened) = channel();
        let sink = StalledSink {
            entered,
            open: Some(opened),
            written: Arc::default(),
        };
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let log = AccessLog::start(sink, 4, dropped).unwrap();
        log.send(line("line 0"));
        writer_blocked.recv().unwrap();
        assert!(!log.flush(Duration::from_millis(50)));
        open.send(()).unwrap();
        assert!(
            log.flush(Duration::from_secs(5)),
            "and flushes once unstuck"
        );
    }
}
