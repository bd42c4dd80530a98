//! The body of a guest that finished before its response went out.
//!
//! Most handlers write their whole body and return within the request's
//! first poll: by the time hyper sends the head, every byte already waits
//! in the body's channel. Read ahead then, the body has a known length, so
//! the client gets a `content-length` and the whole response in one write
//! instead of a chunked body read frame by frame through the channel.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A body read ahead without waiting: its frames so far, then the rest.
pub(super) struct SettledBody {
    /// Frames (data, trailers or the error it ended with) read already.
    ready: VecDeque<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>,
    /// The body's own data left in `ready`, when nothing follows it.
    length: Option<u64>,
    /// What was not there yet, if the body did not end cleanly in time.
    rest: Option<HyperOutgoingBody>,
}

impl SettledBody {
    /// Reads `body`, whose guest has finished, as far as it goes without
    /// waiting. Its channel holds at most a few chunks, so this holds no
    /// more memory than the body already did.
    pub(super) fn read_ahead(mut body: HyperOutgoingBody) -> Self {
        let mut cx = Context::from_waker(Waker::noop());
        let mut ready = VecDeque::new();
        let mut length = 0u64;
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => {
                    return Self {
                        ready,
                        length: Some(length),
                        rest: None,
                    };
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.data_ref().map(Bytes::len);
                    length += data.unwrap_or(0) as u64;
                    ready.push_back(Ok(frame));
                    // Trailers end a body: what follows is read as it comes.
                    if data.is_none() {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    ready.push_back(Err(e));
                    break;
                }
                Poll::Pending => break,
            }
        }
        Self {
            ready,
            length: None,
            rest: Some(body),
        }
    }
}

impl Body for SettledBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            if let (Some(length), Ok(frame)) = (&mut self.length, &frame) {
                *length -= frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            return Poll::Ready(Some(frame));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use http_body_util::{BodyExt as _, StreamBody};

    type Item = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

    fn data(text: &'static str) -> Item {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    /// A body of `frames`, then the end, or a wait without end.
    fn body(frames: Vec<Item>, then_waits: bool) -> HyperOutgoingBody {
        let frames = futures_util::stream::iter(frames);
        if then_waits {
            StreamBody::new(frames.chain(futures_util::stream::pending())).boxed_unsync()
        } else {
            StreamBody::new(frames).boxed_unsync()
        }
    }

    /// Everything the body yields, each frame as text (`trailers`,
    /// `error`), polled as hyper would; pending counts as the end.
    fn drain(mut body: SettledBody) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            seen.push(match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(d) => String::from_utf8_lossy(&d).into_owned(),
                    Err(_) => "trailers".to_owned(),
                },
                Err(_) => "error".to_owned(),
            });
        }
        seen
    }

    #[test]
    fn a_body_that_ended_has_its_exact_length() {
        let settled = SettledBody::read_ahead(body(vec![data("abc"), data("de")], false));
        assert_eq!(settled.size_hint().exact(), Some(5));
        assert!(!settled.is_end_stream());
        assert_eq!(drain(settled), ["abc", "de"]);
    }

    #[test]
    fn the_length_counts_down_as_frames_go_out() {
        let mut settled = SettledBody::read_ahead(body(vec![data("abc"), data("de")], false));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut settled).poll_frame(&mut cx);
        assert_eq!(settled.size_hint().exact(), Some(2));
        let _ = Pin::new(&mut settled).poll_frame(&mut cx);
        assert!(settled.is_end_stream());
        assert_eq!(settled.size_hint().exact(), Some(0));
    }

    #[test]
    fn trailers_an_error_or_a_wait_leave_the_length_unknown() {
        let trailers = Ok(Frame::trailers(http::HeaderMap::new()));
        let cases = [
            (vec![data("a"), trailers], false, vec!["a", "trailers"]),
            (
                vec![data("a"), Err(wasmtime_wasi_http::Error::HttpProtocolError)],
                false,
                vec!["a", "error"],
            ),
            (vec![data("a")], true, vec!["a"]),
        ];
        for (frames, waits, expected) in cases {
            let settled = SettledBody::read_ahead(body(frames, waits));
            assert_eq!(settled.size_hint().exact(), None, "{expected:?}");
            assert!(!settled.is_end_stream());
            assert_eq!(drain(settled), expected);
        }
    }

    #[test]
    fn an_empty_body_is_at_its_end() {
        let settled = SettledBody::read_ahead(body(Vec::new(), false));
        assert!(settled.is_end_stream());
        assert_eq!(settled.size_hint().exact(), Some(0));
    }
}
