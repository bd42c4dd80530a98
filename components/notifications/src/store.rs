//! The bucket.

use bazaar_sdk::kv::{self, KvError};

/// The notifications bucket.
pub fn bucket() -> Result<kv::Bucket, KvError> {
    kv::open("notifications")
}
