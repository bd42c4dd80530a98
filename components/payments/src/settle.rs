//! After a charge: reading a payment, refunding it, and voiding a charge
//! whose outcome its caller never learned.

use crate::model::{
    IdemRecord, Payment, PaymentStatus, idem_key, payment_key, valid_idempotency_key,
};
use crate::store::{self, Attempt, with_retries};
use bazaar_sdk::kv::{Bucket, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, log};
use serde::Deserialize;

/// `GET /api/payments/{id}`.
pub fn get(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    let (payment, _) = load(&store::bucket()?, id)?;
    Response::json(200, &payment)
}

/// `POST /api/payments/{id}/refund`: a succeeded payment becomes
/// `refunded`; refunding again answers it unchanged; a declined one, which
/// charged nothing, is a 409.
pub fn refund(req: Request) -> Result<Response> {
    let id = req.param("id")?;
    let bucket = store::bucket()?;
    let payment = with_retries(|| {
        let (mut payment, stored) = load(&bucket, id)?;
        match payment.status {
            PaymentStatus::Refunded => return Ok(Attempt::Done(payment)),
            PaymentStatus::Declined => {
                return Err(Error::conflict(
                    "a declined payment charged nothing and cannot be refunded",
                ));
            }
            PaymentStatus::Succeeded => payment.status = PaymentStatus::Refunded,
        }
        let key = payment_key(&payment.id);
        let tx = Transaction::new()
            .require(&bucket, &key, Some(&stored))
            .set_json(&bucket, &key, &payment);
        store::commit(tx, payment)
    })?;
    log::info(&format!("payment {} is refunded", payment.id));
    Response::json(200, &payment)
}

/// The body of a void.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidInput {
    idempotency_key: String,
}

/// `POST /internal/payments/void`: for a caller whose charge with this
/// key failed or timed out, so it cannot know whether money moved. Refunds
/// the payment the key made, if it succeeded, and marks the key voided, so
/// a charge with it that is still on its way is refused when it arrives.
/// Answers `{"voided": true, "refunded_payment": id|null}`; repeating it is
/// harmless.
pub fn void(req: Request) -> Result<Response> {
    let input: VoidInput = req.json()?;
    let key = valid_idempotency_key(&input.idempotency_key)?;
    let bucket = store::bucket()?;
    let refunded = with_retries(|| void_once(&bucket, key))?;
    log::info(&format!(
        "voided idempotency key {key} (refunded payment: {})",
        refunded.as_deref().unwrap_or("none")
    ));
    Response::json(
        200,
        &serde_json::json!({ "voided": true, "refunded_payment": refunded }),
    )
}

/// One try at a void; its answer is the id of the key's payment if that
/// payment is now refunded.
fn void_once(bucket: &Bucket, key: &str) -> Result<Attempt<Option<String>>> {
    let record_key = idem_key(key);
    let Some(stored) = bucket.get(&record_key)? else {
        // No charge yet: the tombstone's `require_absent` makes a charge
        // racing this void either commit first (the retry refunds it) or
        // find the tombstone.
        let tombstone = IdemRecord {
            voided: true,
            ..IdemRecord::default()
        };
        let tx = Transaction::new()
            .require_absent(bucket, &record_key)
            .set_json(bucket, &record_key, &tombstone);
        return store::commit(tx, None);
    };
    let mut record: IdemRecord = store::decode(&record_key, &stored)?;
    let mut tx = Transaction::new().require(bucket, &record_key, Some(&stored));
    let mut refunded = None;
    let mut refunds_now = false;
    if let Some(payment_id) = &record.payment_id {
        let (mut payment, payment_bytes) = load(bucket, payment_id).map_err(|error| {
            Error::internal(format!(
                "payment of idempotency key {key}: {}",
                error.message
            ))
        })?;
        match payment.status {
            PaymentStatus::Declined => {}
            PaymentStatus::Refunded => refunded = Some(payment.id),
            PaymentStatus::Succeeded => {
                payment.status = PaymentStatus::Refunded;
                let key = payment_key(&payment.id);
                tx = tx
                    .require(bucket, &key, Some(&payment_bytes))
                    .set_json(bucket, &key, &payment);
                refunded = Some(payment.id);
                refunds_now = true;
            }
        }
    }
    if record.voided && !refunds_now {
        // A repeat of an earlier void: nothing left to write.
        return Ok(Attempt::Done(refunded));
    }
    record.voided = true;
    store::commit(tx.set_json(bucket, &record_key, &record), refunded)
}

/// A payment and its bytes as stored; 404 if there is none.
fn load(bucket: &Bucket, id: &str) -> Result<(Payment, Vec<u8>)> {
    let key = payment_key(id);
    let stored = bucket
        .get(&key)?
        .ok_or_else(|| Error::not_found(format!("no payment with id {id}")))?;
    Ok((store::decode(&key, &stored)?, stored))
}
