//! The capabilities Bazaar adds to WASI 0.2, one module each.
//!
//! All of them come from one `bindgen!` of the `bazaar:platform/capabilities`
//! world in `wit/`. Each module follows the same shape: a view borrowed from
//! the store's data, the generated `Host` traits implemented on that view, and
//! an `add_to_linker`. Every call is a `tracing` span, and a guest-visible
//! error (a missing key, a denied bucket) never becomes a trap.

pub mod config;
pub mod keyvalue;
pub mod logging;
pub mod outbound;

#[allow(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "bazaar:platform/capabilities",
        imports: { default: async | tracing | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::keyvalue::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::keyvalue::KeyValueError,
        },
        require_store_data_send: true,
    });
}

use crate::state::HostState;
use wasmtime::component::Linker;

/// Adds every Bazaar capability to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    keyvalue::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    logging::add_to_linker(linker)?;
    Ok(())
}
