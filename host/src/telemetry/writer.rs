//! Where log lines go: a shared buffer, written to stderr by a thread of
//! its own.
//!
//! A line is appended under a short lock and the request moves on. The log
//! thread is woken only when the buffer goes from empty to not empty, then
//! waits [`GATHER`] for more lines and writes them all at once. At a few
//! thousand requests a second that is one wake-up and one `write` per
//! [`GATHER`] instead of one of each per line: handing every line to a
//! sleeping thread cost a context switch, and in a VM an inter-processor
//! interrupt, per request.
//!
//! Nothing is dropped: past [`MAX_PENDING`] bytes a writer waits for the
//! log thread, and dropping the [`LogFlusher`] writes what is left.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the log thread gathers lines once one arrives: the longest a
/// line waits before it is written.
const GATHER: Duration = Duration::from_millis(10);
/// Bytes queued before writers wait for the log thread (stderr is slower
/// than requests, e.g. a terminal or a full pipe).
const MAX_PENDING: usize = 8 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Rung when the buffer gets its first bytes, or on close.
    arrived: Condvar,
    /// Rung after every write, for writers waiting on a full buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends whole lines to the shared buffer; cheap to clone. It is the
/// `MakeWriter` of the log layers and the access log's sink.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

impl LogWriter {
    /// Queues `line` (one or more whole lines) for the log thread.
    pub fn append(&self, line: &[u8]) {
        let mut pending = self.0.lock();
        while pending.bytes.len() > MAX_PENDING && !pending.closed {
            pending = self
                .0
                .drained
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if pending.closed {
            // Shutting down: the log thread is gone; write it ourselves.
            drop(pending);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        let was_empty = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        drop(pending);
        if was_empty {
            self.0.arrived.notify_one();
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs the log thread; dropping it writes what is queued and stops it.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        self.shared.drained.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A writer of lines to `out` and the thread that writes them.
pub fn spawn(out: impl Write + Send + 'static) -> std::io::Result<(LogWriter, LogFlusher)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("bazaar-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || run(&shared, out)
        })?;
    Ok((
        LogWriter(Arc::clone(&shared)),
        LogFlusher {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut out: impl Write) {
    // Two buffers swap places, so neither is reallocated once grown.
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .arrived
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let closing = pending.closed;
        if !closing {
            // Let more lines join this write.
            drop(pending);
            std::thread::sleep(GATHER);
            pending = shared.lock();
        }
        std::mem::swap(&mut batch, &mut pending.bytes);
        drop(pending);
        shared.drained.notify_all();
        // A log that cannot be written has nowhere to report it.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closing && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the log thread writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_order_per_thread() {
        let sink = Sink::default();
        let (writer, flusher) = spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        writer.append(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(flusher);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..2000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines, whole and in order");
        }
        assert_eq!(text.lines().count(), 8000);
    }

    /// Like [`Sink`], but every write takes a while, as a slow terminal
    /// or a full pipe would.
    #[derive(Clone, Default)]
    struct SlowSink(Sink);

    impl Write for SlowSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(30));
            self.0.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stopping_writes_every_queued_line() {
        let sink = SlowSink::default();
        let (writer, flusher) = spawn(sink.clone()).unwrap();
        writer.append(b"first\n");
        // The log thread is now busy with "first"; these wait in the queue.
        std::thread::sleep(Duration::from_millis(20));
        for i in 0..100 {
            writer.append(format!("queued {i}\n").as_bytes());
        }
        drop(flusher);
        let text = String::from_utf8(sink.0.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 101, "{text}");
        assert!(text.ends_with("queued 99\n"));
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _flusher) = spawn(sink.clone()).unwrap();
        writer.append(b"alone\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"alone\n");
    }
}
