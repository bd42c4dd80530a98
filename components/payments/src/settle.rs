//! After a charge: reading a payment, refunding it, and voiding a charge
//! whose outcome its caller never learned.

use crate::model::{
    IdemRecord, Payment, PaymentStatus, idem_key, payment_key, valid_idempotency_key,
};
use crate::store::{self, with_retries};
use bazaar_sdk::kv::{self, Attempt, Bucket, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, log};
use serde::Deserialize;

/// `GET /api/payments/{id}`: 401 without a caller, 404 when absent, 403
/// unless [`authorize`]d.
pub fn get(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let id = req.param("id")?;
    let (payment, _) = load(&store::bucket()?, id)?;
    authorize(&req, &payment)?;
    Response::json(200, &payment)
}

/// `POST /api/payments/{id}/refund`: a succeeded payment becomes
/// `refunded`; refunding again answers it unchanged; a declined one, which
/// charged nothing, is a 409. Checked like [`get`] (`orders` refunds as a
/// service call).
pub fn refund(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let id = req.param("id")?;
    let bucket = store::bucket()?;
    // Whose a payment is never changes, so one check before the retries.
    authorize(&req, &load(&bucket, id)?.0)?;
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
        tx.commit_or_retry(payment)
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
        return tx.commit_or_retry(None);
    };
    let mut record: IdemRecord = kv::decode_json(&record_key, &stored)?;
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
    tx.set_json(bucket, &record_key, &record)
        .commit_or_retry(refunded)
}

/// Nothing if the caller may see and refund `payment`: its user, an
/// `admin`, or another service; one made without a user only the latter
/// two. A 403 otherwise.
fn authorize(req: &Request, payment: &Payment) -> Result<()> {
    match &payment.user_id {
        Some(owner) => req.require_self_or_admin(owner),
        None if req.caller().is_some() || req.is_admin() => Ok(()),
        None => Err(Error::forbidden("this payment belongs to no user")),
    }
}

/// A payment and its bytes as stored; 404 if there is none.
fn load(bucket: &Bucket, id: &str) -> Result<(Payment, Vec<u8>)> {
    let key = payment_key(id);
    let stored = bucket
        .get(&key)?
        .ok_or_else(|| Error::not_found(format!("no payment with id {id}")))?;
    Ok((kv::decode_json(&key, &stored)?, stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bazaar_sdk::Method;

    fn payment(user_id: Option<&str>) -> Payment {
        Payment {
            id: "p1".into(),
            order_id: "o1".into(),
            user_id: user_id.map(str::to_owned),
            amount_cents: 100,
            currency: "USD".into(),
            card_last4: "4242".into(),
            status: PaymentStatus::Succeeded,
            created_at: 1,
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut request = Request::new(Method::Get, "/api/payments/p1");
        request.headers = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect();
        request
    }

    fn status(req: &Request, payment: &Payment) -> Option<u16> {
        authorize(req, payment).err().map(|e| e.status)
    }

    #[test]
    fn a_payment_is_its_users_and_admins() {
        let mine = payment(Some("u1"));
        let me = request(&[("x-bazaar-user", "u1"), ("x-bazaar-roles", "customer")]);
        let other = request(&[("x-bazaar-user", "u2"), ("x-bazaar-roles", "customer")]);
        let admin = request(&[("x-bazaar-user", "ops"), ("x-bazaar-roles", "admin")]);
        assert_eq!(status(&me, &mine), None);
        assert_eq!(status(&other, &mine), Some(403));
        assert_eq!(status(&admin, &mine), None);
    }

    #[test]
    fn services_may_refund_any_payment_and_userless_ones_are_no_customers() {
        let orders = request(&[("x-bazaar-caller", "orders"), ("x-bazaar-user", "u2")]);
        assert_eq!(status(&orders, &payment(Some("u1"))), None);
        let userless = payment(None);
        assert_eq!(status(&orders, &userless), None);
        let customer = request(&[("x-bazaar-user", "u1"), ("x-bazaar-roles", "customer")]);
        assert_eq!(status(&customer, &userless), Some(403));
        let admin = request(&[("x-bazaar-user", "ops"), ("x-bazaar-roles", "admin")]);
        assert_eq!(status(&admin, &userless), None);
    }
}
