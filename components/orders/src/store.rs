//! The bucket.

use bazaar_sdk::{Result, kv};

/// The orders bucket.
pub fn bucket() -> Result<kv::Bucket> {
    Ok(kv::open("orders")?)
}
