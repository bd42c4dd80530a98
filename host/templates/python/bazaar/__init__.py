"""Write Bazaar services in Python, built with componentize-py for the
`bazaar:platform/service` world.

A service is a `Router` of handlers. A handler takes a `Request` and returns
a `Response`, or any JSON value (sent as a 200), or None (a 204). Raising
`HttpError` sends `{"error": message, "status": status, "request_id": id}`
with its status;
any other exception is a 500 whose detail is logged, not sent. Key-value
data, events, calls to other services, config and logs come from the host,
scoped to the service.

1. Register handlers on a `Router`.
2. Bind the classes componentize-py exports, with an event handler if the
   service subscribes to topics, in the app module:

    import bazaar

    router = bazaar.Router()

    @router.get("/hello/{name}")
    def hello(req):
        return {"hello": req.params["name"]}

    def on_event(event):
        bazaar.log.info(f"got {event.id} on {event.topic}")

    IncomingHandler, EventHandler = bazaar.service(router, on_event)

Layout:

- `http`: requests, responses and `HttpError`, as plain values.
- `router`: most-specific-wins routing (the host's rules).
- `kv`: buckets, scans, compare-and-swap and all-or-nothing transactions.
- `events`: publishing, and the event an event handler receives.
- `calls`: calls to other services at `http://NAME.internal`.
- `host`: which host answers (the real one, or `use_memory()` in tests),
  config, logs and the exported classes.
- `memory`: an in-memory host, so unit tests run under plain `python3`.
- `wasi`: the only module that touches the componentize-py bindings.
"""

from .calls import CallError, Reply, call
from .events import Event, publish, publish_json
from .host import config, config_all, log, service, use_memory
from .http import HttpError, Request, Response
from .kv import Bucket, Conflict, KvError, Page, Transaction, open_bucket
from .router import Router

__all__ = [
    "Bucket",
    "CallError",
    "Conflict",
    "Event",
    "HttpError",
    "KvError",
    "Page",
    "Reply",
    "Request",
    "Response",
    "Router",
    "Transaction",
    "call",
    "config",
    "config_all",
    "log",
    "open_bucket",
    "publish",
    "publish_json",
    "service",
    "use_memory",
]

# Last, once every module is loaded: the real host's module imports them all.
host.install_wasi()
