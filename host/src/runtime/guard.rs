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

    /// Lets the task run to its own end.
    fn detach(&mut self) {
        self.0 = None;
    }

    /// Whether the task has ended, polled so that its end wakes `cx`; a
    /// detached guard, or one whose end was seen, says no.
    fn ended(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(task) = &mut self.0 else {
            return false;
        };
        if Pin::new(task).poll(cx).is_pending() {
            return false;
        }
        // A join handle must not be polled again once it gave its output.
        self.0 = None;
        true
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
    inner: HyperOutgoingBody,
    guard: AbortOnDrop<super::GuestResult>,
    /// The body's `content-length`, when the guest declared one.
    declared: Option<u64>,
    /// Bytes passed on so far.
    sent: u64,
    /// Whether the guest's run was seen to end.
    returned: bool,
}

impl GuardedBody {
    /// `inner`, guarding `guard`'s task; `declared` is its `content-length`.
    pub(super) fn new(
        inner: HyperOutgoingBody,
        guard: AbortOnDrop<super::GuestResult>,
        declared: Option<u64>,
    ) -> Self {
        Self {
            inner,
            guard,
            declared,
            sent: 0,
            returned: false,
        }
    }

    /// Whether every byte went out: the stream ended, or as many bytes as
    /// declared were sent (hyper stops polling there, before the guest has
    /// necessarily finished its body).
    fn complete(&self) -> bool {
        self.inner.is_end_stream() || self.declared == Some(self.sent)
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if self.complete() {
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
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() && !self.returned && self.guard.ended(cx) {
            self.returned = true;
            // Everything it wrote is in the channel by now.
            polled = Pin::new(&mut self.inner).poll_frame(cx);
        }
        if polled.is_pending() && self.returned {
            // It writes nothing more: its handles were leaked, in a warm
            // store that lives on, and the body would never end.
            polled = Poll::Ready(Some(Err(super::settled::unfinished())));
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.sent = self.sent.saturating_add(len);
            }
            Poll::Ready(None) => {
                // The whole body went out: the guest may finish what it
                // does after responding, under its deadline.
                self.guard.detach();
            }
            _ => {}
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
