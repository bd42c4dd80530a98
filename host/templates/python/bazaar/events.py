"""Durable events between services.

Publish to the topics the service's `publishes` grants with `publish` (or in
a `kv.Transaction`, so the event is stored with the writes it announces).
Receive the topics it `subscribes` to with the `on_event` given to
`bazaar.service`. Delivery is at least once: an exception means "deliver
again later", and a redelivery carries the same `Event.id`.
"""

import json

from .host import current, log
from .http import HttpError, to_bytes


class Event:
    """One event, as a subscriber receives it."""

    def __init__(self, id, topic, source, payload, published_at=0, attempt=1):
        # Unique, and the same on every redelivery: drop duplicates by it.
        self.id = id
        self.topic = topic
        # The service that published it.
        self.source = source
        self.payload = to_bytes(payload)
        # Milliseconds since the Unix epoch.
        self.published_at = published_at
        # 1 on the first delivery, 2 on the first retry, and so on.
        self.attempt = attempt

    def json(self):
        """The payload decoded from JSON; a `ValueError` naming the event if it is not."""
        try:
            return json.loads(self.payload)
        except ValueError as error:
            raise ValueError(
                f"event {self.id} on `{self.topic}` is not the JSON expected: {error}"
            ) from None

    def text(self):
        """The payload as text (invalid UTF-8 becomes U+FFFD)."""
        return self.payload.decode("utf-8", "replace")


class PublishError(HttpError):
    """A refused publish. `kind` is `denied` (the topic is not granted),
    `invalid` (empty, too long, too large) or `unavailable`. Uncaught, the
    first two are the service's own fault, a 500 whose detail is logged;
    an unavailable event store is a 503 the client may retry."""

    def __init__(self, kind, detail):
        if kind == "unavailable":
            super().__init__(503, "events are unavailable; retry later")
        else:
            super().__init__(500, "internal error")
        log.error(f"publish failed: {kind}: {detail}")
        self.kind = kind
        self.detail = detail

    def __str__(self):
        return f"publish failed: {self.kind}: {self.detail}"


def publish(topic, payload):
    """Publishes `payload` (bytes or text) to `topic`; the event is stored
    durably before this returns. Returns its id; raises `PublishError`."""
    return current().publish(topic, to_bytes(payload))


def publish_json(topic, value):
    """Publishes `value` as JSON to `topic`. Returns the event's id."""
    return publish(topic, json.dumps(value))
