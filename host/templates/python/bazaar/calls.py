"""Calls to other Bazaar services at `http://NAME.internal/...`, which the
host answers in-process. A service may call only the services its `calls`
grants; any other call fails with `HTTP-request-denied`.

    stock = bazaar.call("inventory", "GET", f"/api/stock/{sku}").json()
"""

import json as _json

from .host import current
from .http import HttpError, header, to_bytes

# Absent, as opposed to a JSON `null` body.
_NO_JSON = object()


class Reply:
    """The reply of a called service, with its body read."""

    def __init__(self, service, status, headers, body):
        self.service = service
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self):
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def header(self, name):
        """The first value of header `name` (case-insensitive), as text, or None."""
        return header(self.headers, name)

    def text(self):
        """The body as text (invalid UTF-8 becomes U+FFFD)."""
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body decoded from JSON. A non-2xx reply raises an `HttpError`
        with the callee's status and `{"error": ...}` message, so an uncaught
        404 or 409 passes on; a 2xx body that is not JSON is a 502."""
        if not self.ok:
            raise HttpError(self.status, self._error_message())
        try:
            return _json.loads(self.body)
        except ValueError as error:
            raise HttpError(
                502, f"service `{self.service}` answered JSON that does not fit: {error}"
            ) from None

    def _error_message(self):
        try:
            message = _json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str):
            return message
        return f"service `{self.service}` answered {self.status}"


class OutboundError(Exception):
    """A request that produced no response; `code` is the `wasi:http` error
    code's WIT name (e.g. `HTTP-request-denied`), `status` the 502, 503 or
    504 a gateway answers for it."""

    def __init__(self, code, status=502):
        super().__init__(code)
        self.code = code
        self.status = status


class CallError(HttpError):
    """A call that produced no reply (uncaught: 504 for a timeout, 503 when
    the callee is unavailable, 502 otherwise)."""

    def __init__(self, service, cause):
        super().__init__(cause.status, f"calling service `{service}` failed: {cause.code}")
        self.service = service
        self.code = cause.code


def url(service, path):
    """The URL of `path` on `service`."""
    return f"http://{service}.internal{'' if path.startswith('/') else '/'}{path}"


def call(service, method, path, json=_NO_JSON, body=b"", headers=()):
    """Sends `method path` (with its query, if any) to `service` and waits
    for the whole `Reply`. `json=value` sends `value` as a JSON body;
    otherwise `body` (bytes or text) is sent. Raises `CallError` when the
    call produced no reply."""
    headers = [(name.lower(), to_bytes(value)) for name, value in headers]
    if json is not _NO_JSON:
        body = _json.dumps(json)
        headers.append(("content-type", b"application/json"))
    try:
        status, reply_headers, reply_body = current().send(
            method.upper(), url(service, path), headers, to_bytes(body)
        )
    except OutboundError as cause:
        raise CallError(service, cause) from None
    return Reply(service, status, reply_headers, reply_body)
