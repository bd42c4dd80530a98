//! Moving bytes through `wasi:io` streams without blocking the host: wait
//! on the stream's pollable for a write permit, write at most that much,
//! then flush and wait for the flush to finish.

use crate::bindings::wasi::io::poll::Pollable;
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use std::io;

/// Most bytes asked of an input stream in one read.
const READ_CHUNK: u64 = 64 * 1024;
/// Most bytes `blocking-write-and-flush` takes in one call (`wasi:io`).
const WRITE_AND_FLUSH_MAX: usize = 4096;

/// Writes all of `bytes` to `stream` and flushes them. A body of up to
/// [`WRITE_AND_FLUSH_MAX`] bytes (most answers) goes in one host call; a
/// larger one through a [`BodyWriter`], which writes as much as the
/// stream's permit allows per call (check, write, flush, check again).
pub(crate) fn write_all(stream: OutputStream, bytes: &[u8]) -> io::Result<()> {
    match bytes.len() {
        0 => Ok(()),
        1..=WRITE_AND_FLUSH_MAX => stream.blocking_write_and_flush(bytes).map_err(io_error),
        _ => BodyWriter::new(stream).send(bytes),
    }
}

/// Writes a body as it is produced: what a [`crate::Response::streaming`]
/// function is given. It implements [`std::io::Write`], so `write!` works;
/// call [`BodyWriter::send`] (or `flush`) to push a chunk to the client now.
///
/// A write fails once the client has gone away; stop producing then.
pub struct BodyWriter {
    // Declared before `stream` so it is dropped first: a pollable is a
    // child of its stream and must not outlive it.
    ready: Pollable,
    stream: OutputStream,
}

impl BodyWriter {
    pub(crate) fn new(stream: OutputStream) -> Self {
        Self {
            ready: stream.subscribe(),
            stream,
        }
    }

    /// Writes all of `bytes` and flushes them, so the client sees them now.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, bytes)?;
        io::Write::flush(self)
    }

    /// How many bytes the stream accepts now, waiting until it is at least one.
    fn permit(&self) -> io::Result<u64> {
        loop {
            match self.stream.check_write() {
                Ok(0) => self.ready.block(),
                Ok(permit) => return Ok(permit),
                Err(error) => return Err(io_error(error)),
            }
        }
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let permit = usize::try_from(self.permit()?).unwrap_or(usize::MAX);
        let len = permit.min(bytes.len());
        let chunk = bytes.get(..len).unwrap_or(bytes);
        self.stream.write(chunk).map_err(io_error)?;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().map_err(io_error)?;
        // `check-write` answers 0 until the flush has completed.
        self.permit().map(drop)
    }
}

fn io_error(error: StreamError) -> io::Error {
    match error {
        StreamError::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "the stream is closed"),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

/// Reads `stream` to its end.
pub(crate) fn read_to_end(stream: &InputStream) -> Result<Vec<u8>, StreamError> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(error) => return Err(error),
        }
    }
}
