"""The service's own durable key-value store: buckets with JSON helpers,
ordered scans, compare-and-swap, counters, and all-or-nothing transactions
(the outbox: an event published in a transaction is stored with its writes).
"""

import json
from collections import namedtuple

from .host import current
from .http import HttpError, to_bytes

# The most entries the host returns in one page of a scan.
MAX_PAGE = 1000

Page = namedtuple("Page", ["entries", "next"])
Page.__doc__ = """Entries `[(key, value)]` in key order; pass `next` as
`start_after` to read on (None after the last page)."""


class KvError(Exception):
    """The store failed, or a stored value is not the JSON expected (a 500)."""


class Conflict(HttpError):
    """A transaction's `require` did not hold (a 409 if not caught): re-read and retry."""

    def __init__(self, key):
        super().__init__(409, f"`{key}` was changed concurrently; retry")
        self.key = key


def open_bucket(name=""):
    """Bucket `name` of this service's store ("" is the default bucket)."""
    return Bucket(current().open(name))


class Bucket:
    """A bucket of the service's store. Values are bytes; text is stored as UTF-8."""

    def __init__(self, raw):
        self._raw = raw

    def get(self, key):
        """The raw value of `key`, or None."""
        return self._raw.get(key)

    def set(self, key, value):
        """Sets the raw value of `key`."""
        self._raw.set(key, to_bytes(value))

    def delete(self, key):
        """Removes `key`; absent keys are fine."""
        self._raw.delete(key)

    def exists(self, key):
        """Whether `key` exists."""
        return self._raw.exists(key)

    def get_json(self, key, default=None):
        """The value of `key` decoded from JSON, or `default` if absent."""
        value = self.get(key)
        return default if value is None else _decode(key, value)

    def set_json(self, key, value):
        """Stores `value` at `key` as JSON."""
        self.set(key, json.dumps(value))

    def scan(self, prefix="", start_after=None, limit=MAX_PAGE):
        """One `Page` of the entries whose key starts with `prefix`, in key
        order, after `start_after`, at most `limit` (the host caps it at
        1000). Each page is one snapshot; paging on never skips or repeats
        a key that exists throughout the scan."""
        entries, next_key = self._raw.scan(prefix, start_after, limit)
        return Page(entries, next_key)

    def items(self, prefix=""):
        """Every `(key, value)` whose key starts with `prefix`, across all pages."""
        after = None
        while True:
            page = self.scan(prefix, after)
            yield from page.entries
            if page.next is None:
                return
            after = page.next

    def items_json(self, prefix=""):
        """`items` with every value decoded from JSON, as a list."""
        return [(key, _decode(key, value)) for key, value in self.items(prefix)]

    def keys(self, prefix=""):
        """Every key starting with `prefix`, in order."""
        return [key for key, _ in self.items(prefix)]

    def compare_and_swap(self, key, expected, new):
        """Sets `key` to `new` (None deletes it) if and only if it holds
        exactly `expected` (None meaning absent), atomically. Returns whether
        the swap happened."""
        return self._raw.compare_and_swap(key, _opt_bytes(expected), _opt_bytes(new))

    def increment(self, key, delta=1):
        """Adds `delta` to the counter at `key`, atomically; returns the new value."""
        return self._raw.increment(key, delta)


class Transaction:
    """Writes, the conditions they depend on and the events announcing them,
    committed together or not at all:

        Transaction().require_absent(users, "email:ann@example.com") \\
            .set_json(users, "user:42", user) \\
            .publish_json("users.registered", user) \\
            .commit()  # raises Conflict (a 409) if the email is taken

    Nothing happens until `commit`.
    """

    def __init__(self):
        self.ops = []

    def require(self, bucket, key, expected):
        """The commit fails with `Conflict` unless `key` holds exactly
        `expected` (None meaning absent) when it commits."""
        self.ops.append(("require", bucket._raw, key, _opt_bytes(expected)))
        return self

    def require_absent(self, bucket, key):
        """The commit fails with `Conflict` if `key` exists."""
        return self.require(bucket, key, None)

    def set(self, bucket, key, value):
        """Sets `key` to `value`."""
        self.ops.append(("set", bucket._raw, key, to_bytes(value)))
        return self

    def set_json(self, bucket, key, value):
        """Sets `key` to `value` as JSON."""
        return self.set(bucket, key, json.dumps(value))

    def delete(self, bucket, key):
        """Deletes `key` (absent keys are fine)."""
        self.ops.append(("delete", bucket._raw, key, None))
        return self

    def publish(self, topic, payload):
        """Publishes `payload` to `topic` if, and only if, the commit succeeds."""
        self.ops.append(("publish", None, topic, to_bytes(payload)))
        return self

    def publish_json(self, topic, value):
        """Publishes `value` as JSON to `topic` if, and only if, the commit succeeds."""
        return self.publish(topic, json.dumps(value))

    def commit(self):
        """Commits every change in one durable transaction and returns the
        ids of the events it published. Raises `Conflict` when a `require`
        did not hold, `KvError` when the store refused or failed."""
        return current().commit(self.ops)


def _decode(key, value):
    try:
        return json.loads(value)
    except ValueError as error:
        raise KvError(f"the value of `{key}` is not JSON: {error}") from None


def _opt_bytes(value):
    return None if value is None else to_bytes(value)
