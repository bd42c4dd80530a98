"""Which host answers the service's calls, and the parts of the platform
that need nothing more: config, logs, and the classes componentize-py
exports.

A host is any object with these methods (`wasi.WasiHost` is the real one,
`memory.MemoryHost` the one tests use):

- `open(name)`: a bucket with `get`, `set`, `delete`, `exists`,
  `scan(prefix, start_after, limit) -> (entries, next)`,
  `compare_and_swap(key, expected, new)` and `increment(key, delta)`.
- `commit(ops) -> [event id]`: applies `kv.Transaction` operations at once.
- `publish(topic, payload) -> event id`.
- `send(method, url, headers, body) -> (status, headers, body)`.
- `config_get(key)`, `config_all()`, `log(level, message)`.
- `serve(request, response_out, dispatch)`, `deliver(event, handler)`:
  the glue behind the exported `handle` functions.
"""

import sys

_current = None


def current():
    """The host answering now."""
    if _current is None:
        raise RuntimeError(
            "no Bazaar host: build with componentize-py, or call bazaar.use_memory() in tests"
        )
    return _current


def install(host):
    """Makes `host` the one that answers."""
    global _current
    _current = host


def install_wasi():
    """Installs the real host when the componentize-py bindings are there.

    Called when `bazaar` is imported, so that the bindings are imported
    before componentize-py snapshots the app: a module first imported while
    serving a request may be missing from the component."""
    try:
        from .wasi import WasiHost
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] not in ("wit_world", "componentize_py_types"):
            raise
        return
    install(WasiHost())


def use_memory():
    """Replaces the host with a fresh in-memory one and returns it, for tests."""
    from .memory import MemoryHost

    host = MemoryHost()
    install(host)
    return host


def config(key, default=None):
    """The service's config value `key` (`[services.NAME.config]`), or `default`."""
    value = current().config_get(key)
    return default if value is None else value


def config_all():
    """Every config key and value, as a dict."""
    return dict(current().config_all())


class log:
    """Log lines; the host tags them with the service name and version."""

    @staticmethod
    def debug(message):
        """Logs at debug level."""
        _log("debug", message)

    @staticmethod
    def info(message):
        """Logs at info level."""
        _log("info", message)

    @staticmethod
    def warn(message):
        """Logs at warn level."""
        _log("warn", message)

    @staticmethod
    def error(message):
        """Logs at error level."""
        _log("error", message)


def _log(level, message):
    if _current is None:
        # Outside a host (a test that did not ask for one) a log line must
        # not become a failure of its own.
        print(f"[{level}] {message}", file=sys.stderr)
    else:
        _current.log(level, str(message))


def run_event_handler(handler, event):
    """Runs `handler(event)`; returns None when it succeeded, otherwise the
    error text the host logs before it delivers the event again."""
    try:
        handler(event)
        return None
    except Exception as error:  # any failure means "deliver again later"
        text = str(error) or type(error).__name__
        log.warn(f"event {event.id} on `{event.topic}` not handled: {text}")
        return text


def service(router, on_event=None):
    """The classes componentize-py exports, for the app module to bind:
    `IncomingHandler, EventHandler = bazaar.service(router, on_event)`.

    `on_event(event)` handles the topics the service subscribes to; raising
    means "not handled", and the host delivers the event again later, with
    the same `event.id`. Without one, every event is refused."""

    class IncomingHandler:
        def handle(self, request, response_out):
            current().serve(request, response_out, router.dispatch)

    class EventHandler:
        def handle(self, event):
            current().deliver(event, on_event or _no_events)

    return IncomingHandler, EventHandler


def _no_events(event):
    raise RuntimeError("this service handles no events")
