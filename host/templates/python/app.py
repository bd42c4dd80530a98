"""The `{{name}}` service.

Routes (all JSON):

- `GET  /api/{{name}}/items`       every item, in id order
- `GET  /api/{{name}}/items/{id}`  one item, or 404
- `PUT  /api/{{name}}/items/{id}`  creates or replaces an item:
  `{"name": "...", "quantity": 3}`

Keys in bucket `{{name}}`: `item:{id}` -> the item; `event:{id}` marks an
event handled; `last-event:{topic}` -> the last event handled per topic.
"""

import time

import bazaar

BUCKET = "{{name}}"
ITEM_PREFIX = "item:"
MAX_NAME = 100

router = bazaar.Router()


def validate_item(body):
    """The item a client sent, normalised; a 400 naming the problem otherwise.

    Pure, so the unit tests call it directly."""
    if not isinstance(body, dict):
        raise bazaar.HttpError(400, "the body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise bazaar.HttpError(400, f"name must be 1-{MAX_NAME} characters")
    quantity = body.get("quantity", 0)
    # bool is an int in Python; `true` is not a quantity.
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise bazaar.HttpError(400, "quantity must be a whole number, 0 or more")
    return {"name": name.strip(), "quantity": quantity}


@router.get("/api/{{name}}/items")
def list_items(req):
    items = [item for _, item in bazaar.open_bucket(BUCKET).items_json(ITEM_PREFIX)]
    return {"items": items}


@router.get("/api/{{name}}/items/{id}")
def get_item(req):
    item = bazaar.open_bucket(BUCKET).get_json(ITEM_PREFIX + req.params["id"])
    if item is None:
        raise bazaar.HttpError(404, f"no item {req.params['id']}")
    return item


@router.put("/api/{{name}}/items/{id}")
def put_item(req):
    fields = validate_item(req.json())
    item = {"id": req.params["id"], **fields, "updated_at": int(time.time())}
    bazaar.open_bucket(BUCKET).set_json(ITEM_PREFIX + item["id"], item)
    return item


def on_event(event):
    """Handles the topics in this service's `subscribes`.

    Delivery is at least once, so the event id is recorded in the same
    transaction as the event's effect: a redelivery then conflicts and is
    skipped. Raising means "not handled": the host delivers it again."""
    bucket = bazaar.open_bucket(BUCKET)
    summary = {"id": event.id, "source": event.source, "payload": event.text()}
    try:
        bazaar.Transaction() \
            .require_absent(bucket, f"event:{event.id}") \
            .set(bucket, f"event:{event.id}", "") \
            .set_json(bucket, f"last-event:{event.topic}", summary) \
            .commit()
    except bazaar.Conflict:
        bazaar.log.info(f"event {event.id} was already handled")
        return
    bazaar.log.info(f"handled event {event.id} on `{event.topic}`")


# The names componentize-py exports: HTTP requests, and events.
IncomingHandler, EventHandler = bazaar.service(router, on_event)
