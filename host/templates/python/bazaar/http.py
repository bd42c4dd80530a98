"""Requests, responses and errors as plain values."""

import json
import urllib.parse


class HttpError(Exception):
    """A failure that is an HTTP response: `{"error": message, "status": status}`,
    with the `request_id` of the request it answers when it has one."""

    def __init__(self, status, message):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message

    def response(self, request=None):
        """The error as a JSON response to `request` (quoting its
        `x-request-id`, as the gateway's own errors do)."""
        body = {"error": self.message, "status": self.status}
        request_id = request.header("x-request-id") if request is not None else None
        if request_id:
            body["request_id"] = request_id
        return Response.json(body, self.status)


class Request:
    """A request with its body read.

    `path` and `query` are still percent-encoded; `params` holds the route's
    path parameters, decoded; header names are lowercase.
    """

    def __init__(self, method, target, headers=(), body=b""):
        path, _, query = target.partition("?")
        self.method = method.upper()
        self.path = path or "/"
        self.query = query
        self.headers = [(name.lower(), to_bytes(value)) for name, value in headers]
        self.body = to_bytes(body)
        self.params = {}

    def header(self, name):
        """The first value of header `name` (case-insensitive), as text, or None."""
        return header(self.headers, name)

    def query_param(self, name, default=None):
        """The first value of query parameter `name`, percent-decoded (`+` is a space)."""
        for key, value in urllib.parse.parse_qsl(self.query, keep_blank_values=True):
            if key == name:
                return value
        return default

    def text(self):
        """The body as text (invalid UTF-8 becomes U+FFFD)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body parsed as JSON; a 400 naming the problem if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise HttpError(400, f"invalid JSON body: {error}") from None


class Response:
    """A response to send; its `content-length` is set when it is sent."""

    def __init__(self, status=200, body=b"", headers=()):
        self.status = status
        self.headers = [(name, to_bytes(value)) for name, value in headers]
        self.body = to_bytes(body)

    @classmethod
    def json(cls, value, status=200):
        """`value` as a JSON body."""
        return cls(status, json.dumps(value), [("content-type", "application/json")])

    @classmethod
    def text(cls, text, status=200):
        """`text` as a plain-text body."""
        return cls(status, text, [("content-type", "text/plain; charset=utf-8")])

    def header(self, name):
        """The first value of header `name` (case-insensitive), as text, or None."""
        return header(self.headers, name)

    def json_body(self):
        """The body parsed as JSON (handy in tests)."""
        return json.loads(self.body)


def to_bytes(value):
    """`value` as bytes: text is encoded as UTF-8."""
    return value.encode() if isinstance(value, str) else bytes(value)


def header(headers, name):
    """The first value of `name` in `(name, bytes)` pairs, as text, or None."""
    for key, value in headers:
        if key.lower() == name.lower():
            return value.decode("utf-8", "replace")
    return None
