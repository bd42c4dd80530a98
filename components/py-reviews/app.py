"""The `reviews` service: product reviews, written only by customers who
bought the product. It learns who bought what from `order-placed` events.

- `POST /api/reviews` `{"product_id", "rating": 1-5, "text"}`, with a
  user's token: 201 with the review, written by the verified user (the
  gateway's `x-bazaar-user`; a `user_id` in the body must be theirs); 401
  without a token; 403 unless the user bought the product, or for a
  `user_id` not theirs; 409 when the user has already reviewed it; 400 on
  bad input.
- `GET /api/reviews?product={id}`: `{"reviews": [...], "average_rating"}`,
  oldest first; the average is null when there are no reviews.

Keys in bucket `reviews` (ids percent-encoded, so a `:` inside an id cannot
make two keys collide, and a product's reviews are one prefix scan):

- `bought:{user_id}:{product_id}` -> the id of the order that bought it
- `event:{event id}` -> marks an `order-placed` event recorded
- `review:{product_id}:{user_id}` -> the review
"""

import secrets
import time
import urllib.parse

import bazaar

BUCKET = "reviews"
TOPIC = "order-placed"
MAX_ID = 200
MAX_TEXT = 2000
REVIEW_FIELDS = {"user_id", "product_id", "rating", "text"}
USER_HEADER = "x-bazaar-user"

router = bazaar.Router()


def _part(value):
    return urllib.parse.quote(value, safe="")


def bought_key(user_id, product_id):
    return f"bought:{_part(user_id)}:{_part(product_id)}"


def review_key(product_id, user_id):
    return f"review:{_part(product_id)}:{_part(user_id)}"


def _is_id(value):
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID


def validate_review(body, user_id):
    """The review `user_id` (the verified caller) sent, normalised; a 400
    naming the problem otherwise, a 403 for a `user_id` not theirs."""
    if not isinstance(body, dict):
        raise bazaar.HttpError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - REVIEW_FIELDS)
    if unknown:
        raise bazaar.HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    if not _is_id(body.get("product_id")):
        raise bazaar.HttpError(400, f"product_id must be a string of 1-{MAX_ID} characters")
    if body.get("user_id", user_id) != user_id:
        raise bazaar.HttpError(403, "a review is written by the user whose token it carries")
    rating = body.get("rating")
    # bool is an int in Python; `true` is not a rating.
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise bazaar.HttpError(400, "rating must be a whole number from 1 to 5")
    text = body.get("text")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_TEXT:
        raise bazaar.HttpError(400, f"text must be 1-{MAX_TEXT} characters")
    return {"user_id": user_id, "product_id": body["product_id"],
            "rating": rating, "text": text.strip()}


def parse_order(payload):
    """`(order_id, user_id, [product_id])` of an `order-placed` payload; a
    ValueError naming the problem if it does not have that shape."""
    if not isinstance(payload, dict):
        raise ValueError("the order is not a JSON object")
    order_id, user_id, items = payload.get("order_id"), payload.get("user_id"), payload.get("items")
    if not _is_id(order_id) or not _is_id(user_id):
        raise ValueError("the order lacks a valid order_id or user_id")
    if not isinstance(items, list) or not all(
            isinstance(item, dict) and _is_id(item.get("product_id")) for item in items):
        raise ValueError(f"order {order_id} has items without a valid product_id")
    return order_id, user_id, sorted({item["product_id"] for item in items})


def summarize(reviews):
    """The reviews oldest first, with their average rating (None for none)."""
    ordered = sorted(reviews, key=lambda review: (review["created_at"], review["id"]))
    average = round(sum(r["rating"] for r in ordered) / len(ordered), 2) if ordered else None
    return {"reviews": ordered, "average_rating": average}


@router.post("/api/reviews")
def post_review(req):
    # The gateway sets this header from a verified token, and drops any a
    # client sends.
    user_id = req.header(USER_HEADER)
    if not _is_id(user_id):
        raise bazaar.HttpError(401, "log in to write a review: send the token from POST /api/users/login")
    review = validate_review(req.json(), user_id)
    bucket = bazaar.open_bucket(BUCKET)
    if not bucket.exists(bought_key(review["user_id"], review["product_id"])):
        raise bazaar.HttpError(403, "only customers who bought this product can review it")
    review = {"id": secrets.token_hex(8), **review, "created_at": int(time.time())}
    key = review_key(review["product_id"], review["user_id"])
    try:
        # The condition holds at commit time, so two concurrent first
        # reviews cannot both be stored.
        bazaar.Transaction().require_absent(bucket, key).set_json(bucket, key, review).commit()
    except bazaar.Conflict:
        raise bazaar.HttpError(409, "this user has already reviewed this product") from None
    return bazaar.Response.json(review, 201)


@router.get("/api/reviews")
def list_reviews(req):
    product_id = req.query_param("product")
    if not product_id:
        raise bazaar.HttpError(400, "name the product: /api/reviews?product={id}")
    bucket = bazaar.open_bucket(BUCKET)
    prefix = f"review:{_part(product_id)}:"
    return summarize([review for _, review in bucket.items_json(prefix)])


def on_event(event):
    """Records who bought what from an `order-placed` event, once per event
    id: the marker and the purchases commit together, so a redelivery
    conflicts and is skipped. A malformed order raises, so it is retried
    and then kept as a dead letter for someone to look at."""
    if event.topic != TOPIC:
        bazaar.log.warn(f"ignored event {event.id} on `{event.topic}`: not subscribed to it")
        return
    order_id, user_id, product_ids = parse_order(event.json())
    bucket = bazaar.open_bucket(BUCKET)
    marker = f"event:{_part(event.id)}"
    tx = bazaar.Transaction().require_absent(bucket, marker).set(bucket, marker, order_id)
    for product_id in product_ids:
        tx.set_json(bucket, bought_key(user_id, product_id), order_id)
    try:
        tx.commit()
    except bazaar.Conflict:
        bazaar.log.info(f"event {event.id} (order {order_id}) was already recorded")
        return
    bazaar.log.info(f"recorded order {order_id}: {user_id} bought {len(product_ids)} product(s)")


# The names componentize-py exports: HTTP requests, and events.
IncomingHandler, EventHandler = bazaar.service(router, on_event)
