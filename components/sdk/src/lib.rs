//! Write Bazaar services in a few lines.
//!
//! A service is a [`Router`] of handlers. Handlers take a [`Request`] and
//! return `Result<Response, Error>`; an [`Error`] becomes a JSON body with
//! its HTTP status. Key-value data ([`kv`]), config ([`config`]) and logs
//! ([`log`]) come from the host, scoped to the service.
//!
//! 1. Write handlers.
//! 2. Build a [`Router`] in a function.
//! 3. Export it with [`service!`].
//!
//! ```ignore
//! use bazaar_sdk::{Request, Response, Result, Router};
//!
//! fn hello(req: Request) -> Result<Response> {
//!     Response::json(200, &serde_json::json!({ "hello": req.param("name")? }))
//! }
//!
//! fn routes() -> Router {
//!     Router::new().get("/hello/{name}", hello)
//! }
//!
//! bazaar_sdk::service!(routes);
//! ```

mod error;
mod http;
mod router;

pub mod config;
pub mod kv;
pub mod log;
pub mod platform;

pub use error::{Error, Result};
pub use http::{Method, Request, Response};
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
pub use http::serve as __serve;

/// Exports a service whose routes are built by `$routes: fn() -> Router`.
#[macro_export]
macro_rules! service {
    ($routes:path) => {
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

    $crate::bindings::export!(BazaarService with_types_in $crate::bindings);
        };
    };
}
