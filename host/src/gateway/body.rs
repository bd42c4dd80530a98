//! The request body's size limit, enforced while it streams: a chunked
//! body that passes the limit fails in the guest, and the gateway answers
//! 413 whatever the guest made of the failure.

use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Whether a limited body went over its limit.
#[derive(Clone, Default)]
pub struct OverLimit(Arc<AtomicBool>);

impl OverLimit {
    /// True once the body passed its limit.
    pub fn is_exceeded(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `request` with its body cut off after `max` bytes.
pub fn limit(
    request: http::Request<Incoming>,
    max: usize,
) -> (http::Request<LimitedBody>, OverLimit) {
    let flag = OverLimit::default();
    let limited = request.map(|inner| LimitedBody {
        inner,
        left: max,
        flag: flag.clone(),
    });
    (limited, flag)
}

/// A body that errors, and raises its flag, past its limit.
pub struct LimitedBody {
    inner: Incoming,
    left: usize,
    flag: OverLimit,
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if len > self.left {
                    self.flag.0.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                        None,
                    ))));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(
                wasmtime_wasi_http::Error::InternalError(Some(e.to_string())),
            ))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
