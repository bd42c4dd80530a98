//! The body of a guest that finished before its response went out.
//!
//! Most handlers write their whole body and return within the request's
//! first poll: by the time hyper sends the head, every byte already waits
//! in the body's channel. Read ahead then, the body has a known length, so
//! the client gets a `content-length` instead of a chunked body, and hyper
//! takes it in one piece instead of frame by frame through the channel.
//! A guest that has returned writes nothing more, so a body still open
//! then (its handles leaked, in a warm instance whose store lives on) is
//! ended with an error here rather than left waiting.

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// `response`, whose guest has finished, with its body read ahead. Its
/// length is claimed (hyper then sends `content-length`) only where the
/// head leaves the length to the body: no `content-length` of the guest's
/// own (hyper frames by the header, as it always did, and the two must
/// not disagree), a status that has a body, and not the answer to a HEAD
/// request (whose length is the GET's).
pub(super) fn settle(
    response: http::Response<HyperOutgoingBody>,
    head_request: bool,
) -> http::Response<HyperOutgoingBody> {
    let status = response.status();
    let claim = !head_request
        && !response
            .headers()
            .contains_key(http::header::CONTENT_LENGTH)
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    response.map(|body| SettledBody::read_ahead(body, claim).boxed_unsync())
}

/// How a body still open after its guest returned ends.
pub(super) fn unfinished() -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(
        "the service returned with its response body unfinished".into(),
    ))
}

/// A frame of a body read ahead: data, trailers, or the error it ended with.
type Ready = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

/// A body read ahead whole: its frames, ending with its error if it had one.
pub(super) struct SettledBody {
    /// The first frame not yet sent; most bodies are one frame, kept
    /// without an allocation.
    first: Option<Ready>,
    /// The frames after it.
    rest: VecDeque<Ready>,
    /// The data left in `first` and `rest`, when the body ended cleanly without
    /// trailers and its length is claimed.
    length: Option<u64>,
}

impl SettledBody {
    /// Reads `body`, whose guest has finished, to its end; with
    /// `claim_length`, a body that ended cleanly without trailers tells its
    /// exact length. Its channel holds at most a few chunks, so this holds
    /// no more memory than the body already did.
    fn read_ahead(mut body: HyperOutgoingBody, claim_length: bool) -> Self {
        let mut cx = Context::from_waker(Waker::noop());
        let mut settled = Self {
            first: None,
            rest: VecDeque::new(),
            length: None,
        };
        let mut length = Some(0u64);
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => break,
                Poll::Ready(Some(Ok(frame))) => {
                    length = match frame.data_ref() {
                        Some(data) => length.map(|l| l + data.len() as u64),
                        // Trailers need a chunked body.
                        None => None,
                    };
                    settled.push(Ok(frame));
                }
                Poll::Ready(Some(Err(e))) => {
                    settled.push(Err(e));
                    length = None;
                    break;
                }
                Poll::Pending => {
                    settled.push(Err(unfinished()));
                    length = None;
                    break;
                }
            }
        }
        settled.length = length.filter(|_| claim_length);
        settled
    }

    fn push(&mut self, frame: Ready) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }
}

impl Body for SettledBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.first.take() {
            Some(frame) => Some(frame),
            None => self.rest.pop_front(),
        };
        if let (Some(length), Some(Ok(frame))) = (&mut self.length, &frame) {
            *length -= frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
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
    use http_body_util::StreamBody;

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
    /// `error`), polled as hyper would.
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
        let settled = SettledBody::read_ahead(body(vec![data("abc"), data("de")], false), true);
        assert_eq!(settled.size_hint().exact(), Some(5));
        assert!(!settled.is_end_stream());
        assert_eq!(drain(settled), ["abc", "de"]);
    }

    #[test]
    fn the_length_counts_down_as_frames_go_out() {
        let mut settled = SettledBody::read_ahead(body(vec![data("abc"), data("de")], false), true);
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut settled).poll_frame(&mut cx);
        assert_eq!(settled.size_hint().exact(), Some(2));
        let _ = Pin::new(&mut settled).poll_frame(&mut cx);
        assert!(settled.is_end_stream());
        assert_eq!(settled.size_hint().exact(), Some(0));
    }

    #[test]
    fn trailers_an_error_or_an_open_end_leave_the_length_unknown() {
        let trailers = Ok(Frame::trailers(http::HeaderMap::new()));
        let cases = [
            (vec![data("a"), trailers], false, vec!["a", "trailers"]),
            (
                vec![data("a"), Err(wasmtime_wasi_http::Error::HttpProtocolError)],
                false,
                vec!["a", "error"],
            ),
            // Still open after its guest returned: never to end by itself.
            (vec![data("a")], true, vec!["a", "error"]),
        ];
        for (frames, waits, expected) in cases {
            let settled = SettledBody::read_ahead(body(frames, waits), true);
            assert_eq!(settled.size_hint().exact(), None, "{expected:?}");
            assert!(!settled.is_end_stream());
            assert_eq!(drain(settled), expected);
        }
    }

    #[test]
    fn a_length_is_claimed_only_where_the_head_leaves_it_to_the_body() {
        let response = |status: u16, declared: Option<&'static str>| {
            let mut response = http::Response::new(body(vec![data("abc")], false));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(length) = declared {
                response.headers_mut().insert(
                    http::header::CONTENT_LENGTH,
                    http::HeaderValue::from_static(length),
                );
            }
            response
        };
        let exact =
            |response: http::Response<HyperOutgoingBody>| response.body().size_hint().exact();
        assert_eq!(exact(settle(response(200, None), false)), Some(3));
        // The guest's own length, even a wrong one, frames the body.
        assert_eq!(exact(settle(response(200, Some("10")), false)), None);
        assert_eq!(exact(settle(response(204, None), false)), None);
        assert_eq!(exact(settle(response(304, None), false)), None);
        assert_eq!(exact(settle(response(200, None), true)), None, "HEAD");
        // Unclaimed, the body still goes out whole.
        let mut unclaimed = settle(response(204, None), false).into_body();
        let mut cx = Context::from_waker(Waker::noop());
        let first = Pin::new(&mut unclaimed).poll_frame(&mut cx);
        assert!(
            matches!(&first, Poll::Ready(Some(Ok(f))) if f.data_ref().is_some_and(|d| d == "abc")),
            "{first:?}"
        );
        assert!(matches!(
            Pin::new(&mut unclaimed).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn an_empty_body_is_at_its_end() {
        let settled = SettledBody::read_ahead(body(Vec::new(), false), true);
        assert!(settled.is_end_stream());
        assert_eq!(settled.size_hint().exact(), Some(0));
    }
}
