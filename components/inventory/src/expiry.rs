//! Lazy expiry: before every request, give back the stock of pending
//! reservations whose time is up, oldest first, so every answer already
//! reflects them. There is no timer in a request-driven component; doing it
//! here costs one short scan when nothing is due.

use crate::model::{EXPIRY_PREFIX, Settle, Status, parse_expiry_key};
use crate::settle::settle;
use crate::store;
use bazaar_sdk::kv::Bucket;
use bazaar_sdk::{Result, log, platform};

/// Most reservations one request expires, so a backlog delays no single
/// request for long; the next requests carry on.
const SWEEP_CAP: usize = 100;
/// Index entries read per page; most sweeps find nothing due in the first.
const PAGE: u32 = 25;

/// Expires what is due; a failure is logged and the request goes on, since
/// the next request sweeps again.
pub fn sweep() {
    if let Err(error) =
        store::bucket().and_then(|bucket| sweep_in(&bucket, platform::unix_time_ms()))
    {
        log::warn(&format!("expiry sweep failed: {}", error.message));
    }
}

/// Expires reservations due at `now`, up to [`SWEEP_CAP`]. Two requests
/// sweeping at once is fine: settling requires the reservation as read, so
/// only one of them expires it and the other sees it already expired.
fn sweep_in(bucket: &Bucket, now: u64) -> Result<()> {
    let mut done = 0;
    let mut after: Option<String> = None;
    while done < SWEEP_CAP {
        let page = bucket.scan(EXPIRY_PREFIX, after.as_deref(), PAGE)?;
        for (key, _) in &page.entries {
            let Some((expires_at_ms, order_id)) = parse_expiry_key(key) else {
                log::warn(&format!("dropping malformed expiry key `{key}`"));
                drop_index(bucket, key)?;
                continue;
            };
            if expires_at_ms > now || done >= SWEEP_CAP {
                return Ok(());
            }
            expire(bucket, key, order_id)?;
            done += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Expires one reservation. A committed or already released one only
/// leaves its index entry behind (settling deletes it in the same commit,
/// so that is rare), and a 409 from settling says exactly that.
fn expire(bucket: &Bucket, key: &str, order_id: &str) -> Result<()> {
    match settle(bucket, order_id, Settle::Expire) {
        Ok(Some(reservation)) => {
            if reservation.status == Status::Expired {
                log::info(&format!("expired the reservation of order {order_id}"));
            }
            drop_index(bucket, key)
        }
        Ok(None) => drop_index(bucket, key),
        Err(error) if error.status == 409 => drop_index(bucket, key),
        Err(error) => Err(error),
    }
}

/// Deletes an index entry that no longer points at a pending reservation
/// (usually already gone: settling deletes it in its own commit).
fn drop_index(bucket: &Bucket, key: &str) -> Result<()> {
    Ok(bucket.delete(key)?)
}
