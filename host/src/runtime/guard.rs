//! Ties a guest task to its response: dropped before its end, the
//! response stops the guest.

use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Aborts the guest task when dropped, unless it was detached or joined.
pub(super) struct AbortOnDrop<T>(Option<JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    pub(super) fn new(task: JoinHandle<T>) -> Self {
        Self(Some(task))
    }

    pub(super) async fn join(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        Some(self.0.take()?.await)
    }

    /// Lets the task run to its own end.
    fn detach(&mut self) {
        self.0 = None;
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A response body that stops its guest when dropped before its end: a
/// client that went away takes its instance with it.
pub(super) struct GuardedBody {
    pub(super) inner: HyperOutgoingBody,
    pub(super) guard: AbortOnDrop<wasmtime::Result<()>>,
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        // hyper may never poll a body that says it is already at its end.
        if self.inner.is_end_stream() {
            self.guard.detach();
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // The whole body went out: the guest may finish what it does
            // after responding, under its deadline.
            self.guard.detach();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
