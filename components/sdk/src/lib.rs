//! Write Bazaar services in a few lines.
//!
//! A service is a [`Router`] of handlers. Handlers take a [`Request`] and
//! return `Result<Response, Error>`; an [`Error`] becomes a JSON body with
//! its HTTP status. Key-value data ([`kv`]), events ([`events`]), calls to
//! other services ([`call`]), outbound HTTP ([`outbound`]), the verified
//! caller and tokens ([`auth`]), config ([`config`]) and logs ([`log`]) come
//! from the host, scoped to the service.
//!
//! 1. Write handlers.
//! 2. Build a [`Router`] in a function.
//! 3. Export it with [`service!`], naming an event handler if the service
//!    subscribes to topics.
//!
//! ```ignore
//! use bazaar_sdk::{Request, Response, Result, Router, events::Event};
//!
//! fn hello(req: Request) -> Result<Response> {
//!     Response::json(200, &serde_json::json!({ "hello": req.param("name")? }))
//! }
//!
//! fn routes() -> Router {
//!     Router::new().get("/hello/{name}", hello)
//! }
//!
//! fn on_event(event: Event) -> Result<()> {
//!     bazaar_sdk::log::info(&format!("got {} on {}", event.id, event.topic));
//!     Ok(())
//! }
//!
//! bazaar_sdk::service!(routes, events = on_event);
//! ```
//!
//! # Layout
//!
//! - `request`, `response`: requests and responses as plain values;
//!   `ids`: ids fit for keys and URL paths ([`valid_id`]).
//! - `router`: most-specific-wins routing (the host's rules).
//! - `serve`, `body`: the glue to `wasi:http` and its streams.
//! - [`kv`]: buckets, scans, compare-and-swap, transactions and the retry
//!   loop of optimistic changes.
//! - [`events`]: publishing, and the event type a handler receives.
//! - [`outbound`]: blocking outbound HTTP, bodies sent whole or streamed;
//!   [`call`]: calls to other services.
//! - [`auth`]: who is calling (user, roles, calling service), the 401 and
//!   403 checks, and host-signed tokens.
//! - [`config`], [`log`], [`platform`]: config values, logs, randomness and time.

mod body;
mod error;
mod ids;
mod percent;
mod request;
mod response;
mod router;
mod serve;

pub mod auth;
pub mod call;
pub mod config;
pub mod events;
pub mod kv;
pub mod log;
pub mod outbound;
pub mod platform;

pub use body::BodyWriter;
pub use error::{Error, Result, request_id};
pub use ids::{MAX_ID_LEN, is_valid_id, valid_id};
pub use request::{Method, Request};
pub use response::Response;
pub use router::Router;

/// Bindings of the `bazaar:platform/service` world; use the helpers above
/// instead where one exists.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "bazaar:platform/service",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "bazaar_sdk::bindings",
    });
}

#[doc(hidden)]
pub use events::{deliver as __deliver, no_events as __no_events};
#[doc(hidden)]
pub use serve::serve as __serve;

/// Exports a service: `service!(routes)` or `service!(routes, events = on_event)`.
///
/// `routes: fn() -> Router` builds the routes, once per instance: the
/// first request an instance serves calls it, and with warm instances
/// (`instance_reuse`) the requests after it reuse what it built. The
/// optional `on_event: fn(events::Event) -> Result<(), E>`, for any
/// `E: Display` (e.g. [`Error`] or `String`), handles the events the
/// service subscribes to; its error text is what the host logs before it
/// delivers the event again. Without one, every event is refused with
/// "this service handles no events".
#[macro_export]
macro_rules! service {
    (@export $routes:path, $events:expr) => {
        const _: () = {
            struct BazaarService;

            impl $crate::bindings::exports::wasi::http::incoming_handler::Guest for BazaarService {
                fn handle(
                    request: $crate::bindings::wasi::http::types::IncomingRequest,
                    response_out: $crate::bindings::wasi::http::types::ResponseOutparam,
                ) {
                    $crate::__serve(request, response_out, $routes)
                }
            }

            impl $crate::bindings::exports::bazaar::platform::event_handler::Guest for BazaarService {
                fn handle(
                    event: $crate::bindings::bazaar::platform::events::Event,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__deliver(event, $events)
                }
            }

            $crate::bindings::export!(BazaarService with_types_in $crate::bindings);
        };
    };
    ($routes:path, events = $events:expr $(,)?) => {
        $crate::service!(@export $routes, $events);
    };
    ($routes:path $(,)?) => {
        $crate::service!(@export $routes, $crate::__no_events);
    };
}
