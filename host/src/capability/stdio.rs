//! A guest's stdout and stderr, turned into `tracing` lines like
//! `wasi:logging`'s: one event per line, tagged with the service, its version
//! and (through the request span) the request id.
//!
//! Output never blocks a worker thread on the host's own stderr, a request
//! may write at most [`OUTPUT_BUDGET`] bytes (the rest is dropped with one
//! warning), and control characters are escaped so a guest cannot forge a
//! line that looks like the host's.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of stdout and stderr together one request may write.
pub const OUTPUT_BUDGET: usize = 64 * 1024;
/// Longest line kept; a longer one is split.
const MAX_LINE: usize = 8 * 1024;

/// Escapes control characters (newlines included) so the text stays on one
/// log line and cannot smuggle terminal escapes.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The output of one request: both streams share its byte budget. A warm
/// instance serving another request gets a fresh budget with [`Self::reset`].
pub struct GuestOutput {
    service: Arc<str>,
    version: Arc<str>,
    budget: Arc<AtomicUsize>,
    /// Counts requests, so the cut is reported once per request.
    request: Arc<AtomicU64>,
    /// The line buffers of the streams handed out, for [`Self::flush`].
    streams: Mutex<Vec<Arc<Mutex<LineBuffer>>>>,
}

impl GuestOutput {
    /// Output of a request to `service` at `version`.
    pub fn new(service: Arc<str>, version: Arc<str>) -> Self {
        Self {
            service,
            version,
            budget: Arc::new(AtomicUsize::new(OUTPUT_BUDGET)),
            request: Arc::new(AtomicU64::new(0)),
            streams: Mutex::default(),
        }
    }

    /// A full budget for the next request of the same instance.
    pub fn reset(&self) {
        self.request.fetch_add(1, Ordering::Relaxed);
        self.budget.store(OUTPUT_BUDGET, Ordering::Relaxed);
    }

    /// Logs what a run left of a line without its newline, while that run's
    /// request is still the one its lines are tagged with: a warm instance
    /// would otherwise carry it into the next request's log, glued to that
    /// request's first line.
    pub fn flush(&self) {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for lines in streams.iter() {
            lines.lock().unwrap_or_else(PoisonError::into_inner).emit();
        }
    }

    /// The stream called `name` (`stdout` or `stderr`).
    pub fn stream(&self, name: &'static str) -> GuestStream {
        let lines = Arc::new(Mutex::new(LineBuffer {
            service: Arc::clone(&self.service),
            version: Arc::clone(&self.version),
            stream: name,
            line: Vec::new(),
            budget: Arc::clone(&self.budget),
            request: Arc::clone(&self.request),
            warned_in: None,
        }));
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&lines));
        GuestStream { lines }
    }
}

/// One stream; its clones write to the same line buffer.
#[derive(Clone)]
pub struct GuestStream {
    lines: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    service: Arc<str>,
    version: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
    budget: Arc<AtomicUsize>,
    request: Arc<AtomicU64>,
    /// The request in which the cut was last reported.
    warned_in: Option<u64>,
}

impl LineBuffer {
    fn write(&mut self, bytes: &[u8]) {
        let allowed = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(bytes.len()))
            })
            .unwrap_or(0)
            .min(bytes.len());
        for &byte in &bytes[..allowed] {
            if byte == b'\n' {
                self.emit();
            } else {
                self.line.push(byte);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        let request = self.request.load(Ordering::Relaxed);
        if allowed < bytes.len() && self.warned_in != Some(request) {
            self.warned_in = Some(request);
            self.emit();
            tracing::warn!(
                target: "bazaar::guest",
                service = %self.service,
                version = %crate::loader::short(&self.version),
                "the service wrote more than {OUTPUT_BUDGET} bytes to stdout/stderr in one request; the rest is dropped"
            );
        }
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = escape_controls(text.trim_end_matches('\r'));
        tracing::info!(
            target: "bazaar::guest",
            service = %self.service,
            version = %crate::loader::short(&self.version),
            stream = %self.stream,
            "{text}"
        );
        self.line.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.emit();
    }
}

impl GuestStream {
    fn write_bytes(&self, bytes: &[u8]) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(bytes);
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable; bytes past the budget are counted and dropped.
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nfake INFO line\x1b[31m"),
            "a\\nfake INFO line\\u{1b}[31m"
        );
    }

    #[test]
    fn the_budget_is_shared_and_enforced() {
        let output = GuestOutput::new("s".into(), "v".into());
        let (out, err) = (output.stream("stdout"), output.stream("stderr"));
        out.write_bytes(&vec![b'x'; OUTPUT_BUDGET - 10]);
        err.write_bytes(&[b'y'; 100]);
        assert_eq!(output.budget.load(Ordering::Relaxed), 0);
        assert_eq!(err.lines.lock().expect("lock").warned_in, Some(0));
        output.reset();
        assert_eq!(output.budget.load(Ordering::Relaxed), OUTPUT_BUDGET);
    }
}
