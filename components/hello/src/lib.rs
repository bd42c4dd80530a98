//! The smallest stock `wasi:http` proxy: answers every request with a
//! greeting naming the method and path. Some paths misbehave, as a guest
//! that leaks handles (or whose runtime drops them late) would: ending in
//! `/leak` it writes the greeting and returns without finishing or
//! dropping the body; in `/leak-all`, the body's stream too; in
//! `/leak-late`, the same after a 50 ms pause once the head is out. A
//! body leaked by `/leak` is kept in the instance's memory, and
//! `/finish-leaked` writes to and finishes the one kept longest and
//! answers with what `write` and `finish` returned, or that it holds none
//! (as a fresh instance does: Bazaar does not reuse one that leaked a body).
//! Ending in `/no-answer` it returns without setting a response; `/served`
//! answers how many requests this instance has been handed, itself
//! included.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Hello);

thread_local! {
    /// Bodies `/leak` returned without finishing, oldest first.
    static LEAKED: RefCell<VecDeque<OutgoingBody>> = const { RefCell::new(VecDeque::new()) };
    /// Requests this instance has been handed.
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let served = SERVED.with(|served| {
            served.set(served.get() + 1);
            served.get()
        });
        let path = request.path_with_query().unwrap_or_default();
        if path.ends_with("/no-answer") {
            // `response_out` is dropped unset.
            return;
        }
        let text = if path.ends_with("/served") {
            format!("served {served}\n")
        } else if path.ends_with("/finish-leaked") {
            match LEAKED.with(|leaked| leaked.borrow_mut().pop_front()) {
                Some(body) => {
                    // Any stream it hands out goes before `finish`.
                    let write = body.write().map(drop);
                    let finish = OutgoingBody::finish(body, None);
                    format!("leaked body: write {write:?}, finish {finish:?}\n")
                }
                None => "no leaked body\n".to_string(),
            }
        } else {
            format!(
                "hello from a stock component: {:?} {path}\n",
                request.method()
            )
        };
        let headers = Fields::new();
        let _ = headers.append("content-type", b"text/plain; charset=utf-8");
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        let late = path.ends_with("/leak-late");
        let leak_stream = late || path.ends_with("/leak-all");
        if let Ok(mut out) = body.write() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            if late {
                wasi::clocks::monotonic_clock::subscribe_duration(50_000_000).block();
            }
            if leak_stream {
                std::mem::forget(out);
            }
        }
        if leak_stream {
            std::mem::forget(body);
            return;
        }
        if path.ends_with("/leak") {
            LEAKED.with(|leaked| leaked.borrow_mut().push_back(body));
            return;
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
