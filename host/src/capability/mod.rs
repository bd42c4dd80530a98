//! The capabilities Bazaar adds to WASI 0.2, one module each.
//!
//! All of them come from one `bindgen!` of the `bazaar:platform/platform`
//! world in `wit/`. Each module follows the same shape: a view borrowed from
//! the store's data, the generated `Host` traits implemented on that view, and
//! an `add_to_linker`. Every call is a `tracing` span, and a guest-visible
//! error (a missing key, a denied bucket) never becomes a trap.

pub mod auth;
pub mod config;
pub mod events;
pub mod keyvalue;
pub mod logging;
pub mod outbound;
pub mod stdio;
pub mod transaction;

#[allow(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "bazaar:platform/platform",
        imports: {
            // Config values may be secrets: no argument or result logging.
            "wasi:config/store": async | trappable,
            default: async | tracing | trappable,
        },
        exports: { default: async },
        with: {
            "wasi:keyvalue/store.bucket": super::keyvalue::Bucket,
            "bazaar:platform/transaction.transaction": super::transaction::PendingTransaction,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::keyvalue::KeyValueError,
        },
        require_store_data_send: true,
    });
}

/// An instance's `event-handler` export.
pub use generated::Platform as EventHandler;
/// Where a component's `event-handler` export is among an instance's.
pub use generated::PlatformIndices as EventHandlerIndices;
/// An event as the guest's `event-handler` receives it.
pub use generated::bazaar::platform::events::Event as GuestEvent;

use crate::state::RequestState;
use wasmtime::component::Linker;

/// Adds every Bazaar capability to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    keyvalue::add_to_linker(linker)?;
    transaction::add_to_linker(linker)?;
    events::add_to_linker(linker)?;
    auth::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    logging::add_to_linker(linker)?;
    Ok(())
}
