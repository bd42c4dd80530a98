"""The real host, through the componentize-py bindings of
`bazaar:platform/service`: the only module that imports `wit_world`.

The module names are those componentize-py 0.25 generates for that world;
the two interfaces named `store` come out as `wasi_keyvalue_store` and
`wasi_config_store`.
"""

import re
import urllib.parse

from componentize_py_types import Err, Ok
from wit_world.imports import atomics
from wit_world.imports import events as wit_events
from wit_world.imports import kv as wit_kv
from wit_world.imports import logging as wit_logging
from wit_world.imports import outgoing_handler, streams, types, wasi_config_store
from wit_world.imports import transaction as wit_transaction
from wit_world.imports import wasi_keyvalue_store

from .calls import OutboundError
from .events import Event, PublishError
from .host import log, run_event_handler
from .http import HttpError, Request
from .kv import Conflict, KvError

_READ_CHUNK = 64 * 1024
# `blocking-write-and-flush` takes at most 4096 bytes a call.
_WRITE_CHUNK = 4096
_LEVELS = {
    "debug": wit_logging.Level.DEBUG,
    "info": wit_logging.Level.INFO,
    "warn": wit_logging.Level.WARN,
    "error": wit_logging.Level.ERROR,
}
_TIMEOUTS = {"DnsTimeout", "ConnectionTimeout", "ConnectionReadTimeout",
             "ConnectionWriteTimeout", "HttpResponseTimeout"}
_UNAVAILABLE = {"ConnectionRefused", "ConnectionLimitReached", "DestinationUnavailable"}


class WasiHost:
    """The host the component runs in."""

    def open(self, name):
        return _WasiBucket(_store_call(wasi_keyvalue_store.open, name))

    def commit(self, ops):
        tx = wit_transaction.Transaction()
        for op, bucket, key, value in ops:
            if op == "require":
                tx.require(bucket.inner, key, value)
            elif op == "set":
                tx.set(bucket.inner, key, value)
            elif op == "delete":
                tx.delete(bucket.inner, key)
            elif op == "publish":
                tx.publish(key, value)
        try:
            return wit_transaction.commit(tx)
        except Err as failure:
            error = failure.value
            if isinstance(error, wit_transaction.CommitError_Conflict):
                raise Conflict(error.value) from None
            if isinstance(error, wit_transaction.CommitError_Store):
                raise KvError(_store_text(error.value)) from None
            kind = type(error).__name__.removeprefix("CommitError_").lower()
            raise KvError(f"transaction {kind}: {error.value}") from None

    def publish(self, topic, payload):
        try:
            return wit_events.publish(topic, payload)
        except Err as failure:
            kind = type(failure.value).__name__.removeprefix("PublishError_").lower()
            raise PublishError(kind, failure.value.value) from None

    def send(self, method, url, headers, body):
        target = urllib.parse.urlsplit(url)
        if body and not any(name == "content-length" for name, _ in headers):
            headers = headers + [("content-length", str(len(body)).encode())]
        try:
            request = types.OutgoingRequest(types.Fields.from_list(headers))
            request.set_method(_wasi_method(method))
            https = target.scheme == "https"
            request.set_scheme(types.Scheme_Https() if https else types.Scheme_Http())
            request.set_authority(target.netloc)
            request.set_path_with_query(target.path + (f"?{target.query}" if target.query else ""))
        except Err as failure:
            raise ValueError(f"cannot send {method} {url}: {failure.value}") from None
        # Taking the body only when there is one lets the host send a GET
        # with no body rather than an empty chunked one.
        outgoing = request.body() if body else None
        # The request must be handed over before its body is written: the
        # host only drains the body once the request is on its way.
        future = _http_call(outgoing_handler.handle, request, None)
        if outgoing is not None:
            with outgoing.write() as stream:
                _write_all(stream, body)
            _http_call(types.OutgoingBody.finish, outgoing, None)
        response = _wait(future)
        with response.headers() as fields:
            reply_headers = fields.entries()
        return response.status(), reply_headers, _read_body(response.consume())

    def config_get(self, key):
        try:
            return wasi_config_store.get(key)
        except Err:
            return None

    def config_all(self):
        try:
            return wasi_config_store.get_all()
        except Err:
            return []

    def log(self, level, message):
        wit_logging.log(_LEVELS.get(level, wit_logging.Level.INFO), "", message)

    def serve(self, incoming, response_out, dispatch):
        try:
            request = _read_request(incoming)
            response = dispatch(request)
        except HttpError as error:
            request, response = None, error.response()
        except Exception as error:  # a trap would answer a bare 500 with no JSON
            log.error(f"reading the request failed: {type(error).__name__}: {error}")
            request, response = None, HttpError(500, "internal error").response()
        head = request is not None and request.method == "HEAD"
        _write_response(response, response_out, head)

    def deliver(self, event, handler):
        received = Event(event.id, event.topic, event.source, event.payload,
                         event.published_at, event.attempt)
        error = run_event_handler(handler, received)
        if error is not None:
            raise Err(error)


class _WasiBucket:
    def __init__(self, inner):
        self.inner = inner

    def get(self, key):
        return _store_call(self.inner.get, key)

    def set(self, key, value):
        _store_call(self.inner.set, key, value)

    def delete(self, key):
        _store_call(self.inner.delete, key)

    def exists(self, key):
        return _store_call(self.inner.exists, key)

    def scan(self, prefix, start_after, limit):
        page = _store_call(wit_kv.scan, self.inner, prefix, start_after, limit)
        return page.entries, page.next

    def compare_and_swap(self, key, expected, new):
        return _store_call(wit_kv.compare_and_swap, self.inner, key, expected, new)

    def increment(self, key, delta):
        return _store_call(atomics.increment, self.inner, key, delta)


def _store_call(function, *args):
    try:
        return function(*args)
    except Err as failure:
        raise KvError(_store_text(failure.value)) from None


def _store_text(error):
    if isinstance(error, wasi_keyvalue_store.Error_Other):
        return error.value
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type(error).__name__.removeprefix("Error_")).lower()


def _http_call(function, *args):
    try:
        return function(*args)
    except Err as failure:
        raise OutboundError(_code_text(failure.value), _gateway_status(failure.value)) from None


def _code_text(code):
    """The WIT name of a `wasi:http` error code, e.g. `HTTP-request-denied`."""
    words = re.findall(r"[A-Z][a-z]*", type(code).__name__.removeprefix("ErrorCode_"))
    name = "-".join(w.upper() if w in ("Dns", "Tls", "Http", "Ip", "Uri") else w.lower()
                    for w in words)
    detail = getattr(code, "value", None)
    return f"{name}({detail})" if isinstance(detail, (str, int)) else name


def _gateway_status(code):
    name = type(code).__name__.removeprefix("ErrorCode_")
    return 504 if name in _TIMEOUTS else 503 if name in _UNAVAILABLE else 502


def _wait(future):
    with future.subscribe() as ready:
        result = future.get()
        while result is None:
            ready.block()
            result = future.get()
    if isinstance(result, Err):
        raise OutboundError("response already taken")
    if isinstance(result.value, Err):
        code = result.value.value
        raise OutboundError(_code_text(code), _gateway_status(code))
    return result.value.value


_METHODS = {
    types.Method_Get: "GET", types.Method_Head: "HEAD", types.Method_Post: "POST",
    types.Method_Put: "PUT", types.Method_Delete: "DELETE", types.Method_Connect: "CONNECT",
    types.Method_Options: "OPTIONS", types.Method_Trace: "TRACE", types.Method_Patch: "PATCH",
}


def _wasi_method(name):
    for kind, text in _METHODS.items():
        if text == name:
            return kind()
    return types.Method_Other(name)


def _read_request(incoming):
    method = incoming.method()
    name = method.value if isinstance(method, types.Method_Other) else _METHODS[type(method)]
    with incoming.headers() as fields:
        headers = fields.entries()
    body = _read_body(incoming.consume())
    return Request(name, incoming.path_with_query() or "/", headers, body)


def _read_body(body):
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as failure:
                if isinstance(failure.value, streams.StreamError_Closed):
                    break
                raise HttpError(400, "could not read the body") from None
    # The stream is a child of the body and had to go before it is finished.
    types.IncomingBody.finish(body)
    return b"".join(chunks)


def _write_response(response, out, head):
    bodyless = response.status in (204, 304) or 100 <= response.status < 200
    fields = types.Fields()
    for name, value in response.headers:
        if name.lower() == "content-length":
            continue  # ours is always the true length
        try:
            fields.append(name, value)
        except Err:
            log.warn(f"dropped response header `{name}`: invalid or forbidden")
    if not (bodyless or head):
        fields.append("content-length", str(len(response.body)).encode())
    outgoing = types.OutgoingResponse(fields)
    try:
        outgoing.set_status_code(response.status)
    except Err:
        log.error(f"the handler answered with invalid status {response.status}")
        return _write_response(HttpError(500, "internal error").response(), out, head)
    body = outgoing.body()
    types.ResponseOutparam.set(out, Ok(outgoing))
    if not (bodyless or head):
        with body.write() as stream:
            try:
                _write_all(stream, response.body)
            except Err:
                log.warn("could not write the response body: the client went away")
    types.OutgoingBody.finish(body, None)


def _write_all(stream, data):
    for start in range(0, len(data), _WRITE_CHUNK):
        stream.blocking_write_and_flush(data[start:start + _WRITE_CHUNK])
