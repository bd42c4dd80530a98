//! Charging a card: `POST /api/payments`, idempotent by `Idempotency-Key`.
//!
//! With a key, the payment and `idem:{key}` are written in one transaction
//! that requires the key to be new. Of any number of concurrent requests
//! with one key, exactly one commits; the others lose on that condition,
//! read the record it wrote, and answer what it answered.

use crate::card::Card;
use crate::model::{
    IdemRecord, Payment, PaymentStatus, fingerprint, idem_key, payment_key, valid_currency,
    valid_idempotency_key, valid_order_id,
};
use crate::store::{self, with_retries};
use bazaar_sdk::kv::{self, Attempt, Bucket, Transaction};
use bazaar_sdk::{Error, Request, Response, Result, log, platform, request_id};
use serde::Deserialize;
use serde_json::Value;

/// The body of a charge.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeInput {
    order_id: String,
    amount_cents: u64,
    currency: String,
    /// Any JSON value, so that [`Card::parse`] refuses a wrong one without
    /// the decoder quoting it.
    card: Value,
}

/// A checked charge, holding no more of the card than its last four digits.
struct Charge {
    /// The verified user asking, if any; see [`Payment::user_id`].
    user_id: Option<String>,
    order_id: String,
    amount_cents: u64,
    currency: String,
    card_last4: String,
    declined: bool,
}

impl Charge {
    fn fingerprint(&self) -> String {
        fingerprint(
            self.user_id.as_deref(),
            &self.order_id,
            self.amount_cents,
            &self.currency,
            &self.card_last4,
        )
    }

    /// A new payment for this charge, under a fresh id.
    fn payment(&self) -> Payment {
        Payment {
            id: platform::random_id(),
            order_id: self.order_id.clone(),
            user_id: self.user_id.clone(),
            amount_cents: self.amount_cents,
            currency: self.currency.clone(),
            card_last4: self.card_last4.clone(),
            status: match self.declined {
                true => PaymentStatus::Declined,
                false => PaymentStatus::Succeeded,
            },
            created_at: platform::unix_time(),
        }
    }
}

/// `POST /api/payments`: 201 with the payment, or 402 when the card is
/// declined (the declined payment is stored too). A client must be logged
/// in (401); the payment is theirs. A service call may come without a user.
pub fn create(req: Request) -> Result<Response> {
    req.require_authenticated()?;
    let input: ChargeInput = req.json()?;
    if input.amount_cents == 0 {
        return Err(Error::bad_request("amount_cents must be more than 0"));
    }
    let card = Card::parse(&input.card)?;
    let charge = Charge {
        user_id: req.user().map(str::to_owned),
        order_id: valid_order_id(&input.order_id)?.to_owned(),
        amount_cents: input.amount_cents,
        currency: valid_currency(&input.currency)?,
        card_last4: card.last4(),
        declined: card.is_declined(),
    };
    let key = req
        .header("idempotency-key")
        .map(valid_idempotency_key)
        .transpose()?;
    let bucket = store::bucket()?;
    match key {
        Some(key) => with_retries(|| charge_once(&bucket, key, &charge)),
        None => with_retries(|| {
            let payment = charge.payment();
            let tx = Transaction::new()
                .require_absent(&bucket, &payment_key(&payment.id))
                .set_json(&bucket, &payment_key(&payment.id), &payment);
            let answer = answered(&payment)?;
            logged(&payment, tx.commit_or_retry(answer)?)
        }),
    }
}

/// One try at the charge behind `key`: replay the recorded answer if there
/// is one, else commit a new payment with its record, unless someone else
/// commits one first.
fn charge_once(bucket: &Bucket, key: &str, charge: &Charge) -> Result<Attempt<Response>> {
    let record_key = idem_key(key);
    if let Some(stored) = bucket.get(&record_key)? {
        let record: IdemRecord = kv::decode_json(&record_key, &stored)?;
        return replay(bucket, &record, &charge.fingerprint()).map(Attempt::Done);
    }
    let payment = charge.payment();
    let response = answered(&payment)?;
    let record = IdemRecord {
        payment_id: Some(payment.id.clone()),
        fingerprint: Some(charge.fingerprint()),
        status_code: Some(response.status),
        voided: false,
    };
    let tx = Transaction::new()
        .require_absent(bucket, &record_key)
        .require_absent(bucket, &payment_key(&payment.id))
        .set_json(bucket, &payment_key(&payment.id), &payment)
        .set_json(bucket, &record_key, &record);
    // A conflict on the record is a request with the same key that
    // committed first: the retry reads its record and replays it.
    logged(&payment, tx.commit_or_retry(response)?)
}

/// Logs a payment once it is stored (never the card, which is not in it).
fn logged(payment: &Payment, attempt: Attempt<Response>) -> Result<Attempt<Response>> {
    if let Attempt::Done(_) = &attempt {
        log::info(&format!(
            "payment {} for order {}: {:?}",
            payment.id, payment.order_id, payment.status
        ));
    }
    Ok(attempt)
}

/// The answer recorded for a key, given again: the same status and the
/// payment, marked `idempotent-replayed`. A key reused for a different
/// charge, or by another user, is a 422; a voided key is a 409.
fn replay(bucket: &Bucket, record: &IdemRecord, fingerprint: &str) -> Result<Response> {
    if record.voided {
        return Err(Error::conflict("this payment was voided"));
    }
    if record.fingerprint.as_deref() != Some(fingerprint) {
        return Err(Error::new(
            422,
            "Idempotency-Key was used with a different request",
        ));
    }
    let (Some(payment_id), Some(status)) = (&record.payment_id, record.status_code) else {
        return Err(Error::internal("an idempotency record names no payment"));
    };
    let key = payment_key(payment_id);
    let stored = bucket
        .get(&key)?
        .ok_or_else(|| Error::internal(format!("payment {payment_id} of a record is missing")))?;
    let payment: Payment = kv::decode_json(&key, &stored)?;
    let response = payment_response(status, &payment)?;
    Ok(response.with_header("idempotent-replayed", "true"))
}

/// The first answer to a new payment: 201, or 402 if declined.
fn answered(payment: &Payment) -> Result<Response> {
    let status = match payment.status {
        PaymentStatus::Declined => 402,
        _ => 201,
    };
    payment_response(status, payment)
}

/// `payment` answered with `status`: a 402 is an error body that carries
/// the payment, anything else is the payment itself.
fn payment_response(status: u16, payment: &Payment) -> Result<Response> {
    if status == 402 {
        let mut body = serde_json::json!({
            "error": "the card was declined",
            "status": 402,
            "payment": payment,
        });
        if let Some(id) = request_id() {
            body["request_id"] = id.into();
        }
        return Response::json(402, &body);
    }
    Response::json(status, payment)
}
