"""An in-memory host with the real one's semantics, so handlers and event
handlers run in unit tests under plain `python3`:

    host = bazaar.use_memory()
    host.config["currency"] = "EUR"
    response = app.router.dispatch(bazaar.Request("GET", "/api/items/1"))
    assert response.status == 404, response.body
"""

import json
import urllib.parse

from .calls import OutboundError
from .http import Request
from .kv import MAX_PAGE, Conflict


class MemoryHost:
    """Buckets, published events, config, logs and callable services, all
    in plain attributes a test can set up and inspect."""

    def __init__(self):
        # Bucket name -> {key: bytes}.
        self.buckets = {}
        # `(topic, payload bytes)` in publish order.
        self.published = []
        # Config values, as text (what the host hands a service).
        self.config = {}
        # `(level, message)` in order.
        self.logs = []
        # Service name -> `Router` answering `bazaar.call` to that service;
        # a call to any other service is denied, as without a `calls` grant.
        self.services = {}

    def published_json(self, topic):
        """The payloads published to `topic`, decoded from JSON."""
        return [json.loads(payload) for t, payload in self.published if t == topic]

    def open(self, name):
        return _MemoryBucket(self.buckets.setdefault(name or "default", {}))

    def commit(self, ops):
        # Every condition is checked before anything is written: all or nothing.
        for op, bucket, key, value in ops:
            if op == "require" and bucket.data.get(key) != value:
                raise Conflict(key)
        ids = []
        for op, bucket, key, value in ops:
            if op == "set":
                bucket.data[key] = value
            elif op == "delete":
                bucket.data.pop(key, None)
            elif op == "publish":
                ids.append(self.publish(key, value))
        return ids

    def publish(self, topic, payload):
        self.published.append((topic, bytes(payload)))
        return f"memory-event-{len(self.published)}"

    def send(self, method, url, headers, body):
        target = urllib.parse.urlsplit(url)
        name = target.netloc.removesuffix(".internal")
        router = self.services.get(name)
        if router is None or not target.netloc.endswith(".internal"):
            raise OutboundError("HTTP-request-denied")
        path = target.path + (f"?{target.query}" if target.query else "")
        response = router.dispatch(Request(method, path, headers, body))
        return response.status, response.headers, response.body

    def config_get(self, key):
        value = self.config.get(key)
        return None if value is None else str(value)

    def config_all(self):
        return [(key, str(value)) for key, value in self.config.items()]

    def log(self, level, message):
        self.logs.append((level, message))


class _MemoryBucket:
    def __init__(self, data):
        self.data = data

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = bytes(value)

    def delete(self, key):
        self.data.pop(key, None)

    def exists(self, key):
        return key in self.data

    def scan(self, prefix, start_after, limit):
        # Python orders text by code point, which is the host's UTF-8 byte order.
        keys = sorted(
            key
            for key in self.data
            if key.startswith(prefix) and (start_after is None or key > start_after)
        )
        limit = max(1, min(limit, MAX_PAGE))
        page = keys[:limit]
        next_key = page[-1] if len(keys) > limit else None
        return [(key, self.data[key]) for key in page], next_key

    def compare_and_swap(self, key, expected, new):
        if self.data.get(key) != expected:
            return False
        if new is None:
            self.data.pop(key, None)
        else:
            self.data[key] = new
        return True

    def increment(self, key, delta):
        # Counters are decimal text, as the host stores them.
        value = int(self.data.get(key, b"0")) + delta
        self.data[key] = str(value).encode()
        return value
