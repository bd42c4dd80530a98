//! Responses as plain values, buffered or streamed.

use crate::body::BodyWriter;
use crate::error::{Error, Result};
use serde::Serialize;

/// A function that writes a streamed body.
type StreamBody = Box<dyn FnOnce(&mut BodyWriter)>;

/// A response to send.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers. `content-length` is set by the SDK for buffered bodies.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body; empty and unused for a [`Response::streaming`] response.
    pub body: Vec<u8>,
    /// Set by [`Response::streaming`]: writes the body after the head is sent.
    stream: Option<StreamBody>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            stream: None,
        }
    }

    /// `value` as a JSON body.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value).map_err(Error::internal)?;
        Ok(Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body))
    }

    /// A response whose body is written by `write` after the status and
    /// headers have been sent, e.g. slowly, in chunks:
    ///
    /// ```ignore
    /// Response::streaming(200, vec![], |body| {
    ///     for i in 0..3 {
    ///         if body.send(format!("chunk {i}\n").as_bytes()).is_err() {
    ///             return; // the client went away
    ///         }
    ///     }
    /// })
    /// ```
    ///
    /// No `content-length` is added (the body is sent chunked) unless
    /// `headers` has one, which the body must then match exactly.
    pub fn streaming(
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        write: impl FnOnce(&mut BodyWriter) + 'static,
    ) -> Self {
        Self {
            status,
            headers,
            body: Vec::new(),
            stream: Some(Box::new(write)),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether the body is streamed by a function rather than buffered.
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// The same head with no body and no `content-length`: the answer to a
    /// HEAD request served by a GET handler. It is marked streaming (with
    /// nothing to stream) so that no length is added for the missing body.
    pub(crate) fn without_body(self) -> Self {
        let headers = self
            .headers
            .into_iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
            .collect();
        Self::streaming(self.status, headers, |_| {})
    }

    /// Takes the streaming function out, leaving a buffered response.
    pub(crate) fn take_stream(&mut self) -> Option<StreamBody> {
        self.stream.take()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("streaming", &self.is_streaming())
            .finish()
    }
}
