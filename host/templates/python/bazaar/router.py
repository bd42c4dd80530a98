"""Method + path routing with `{param}` and trailing `{*rest}` segments.

The rules are the host's, so a path is judged the same way by the gateway
and by the service behind it.
"""

import urllib.parse

from .host import log
from .http import HttpError, Response

# Each kind is also its rank: higher is more specific.
_LITERAL, _PARAM, _REST = 2, 1, 0


class Router:
    """Handlers by method and path pattern.

    When several patterns match a path, the most specific wins: segments
    compare left to right (a literal beats a `{param}`, which beats a
    `{*rest}`), then the longer pattern wins; registration order only breaks
    ties. A HEAD request with no HEAD route runs the GET handler, bodiless.
    """

    def __init__(self):
        self._routes = []

    def add(self, method, pattern, handler):
        """Adds a route and returns `handler`."""
        self._routes.append((method.upper(), _parse(pattern), handler))
        return handler

    def route(self, method, pattern):
        """A decorator adding a route: `@router.route("PATCH", "/items/{id}")`."""
        return lambda handler: self.add(method, pattern, handler)

    def get(self, pattern):
        """A decorator adding a GET (and so HEAD) route."""
        return self.route("GET", pattern)

    def post(self, pattern):
        """A decorator adding a POST route."""
        return self.route("POST", pattern)

    def put(self, pattern):
        """A decorator adding a PUT route."""
        return self.route("PUT", pattern)

    def delete(self, pattern):
        """A decorator adding a DELETE route."""
        return self.route("DELETE", pattern)

    def dispatch(self, request):
        """Runs the most specific matching handler and returns its `Response`:
        404 when no pattern matches the path, 405 (with `allow`) when only
        other methods' do, 400 when a path parameter is not UTF-8 once
        percent-decoded, 500 when the handler raises anything but an
        `HttpError`."""
        parts = _split(request.path)
        matching = [route for route in self._routes if _matches(route[1], parts)]
        route = _best(matching, request.method)
        if route is None:
            return _refuse(request, matching)
        method, segments, handler = route
        try:
            request.params = _params(segments, parts)
            response = _as_response(handler(request))
        except HttpError as error:
            response = error.response(request)
        except Exception as error:  # the one boundary where any failure becomes a 500
            log.error(f"{request.method} {request.path} failed: {type(error).__name__}: {error}")
            response = HttpError(500, "internal error").response(request)
        if request.method == "HEAD" and method == "GET":
            response.body = b""
        return response


def _split(path):
    return [segment for segment in path.split("/") if segment]


def _parse(pattern):
    segments = []
    for part in _split(pattern):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.startswith("*"):
                # Segments after a `{*rest}` could never match.
                segments.append((_REST, name[1:]))
                break
            segments.append((_PARAM, name))
        else:
            segments.append((_LITERAL, part))
    return segments


def _matches(segments, parts):
    for i, (kind, text) in enumerate(segments):
        if kind == _REST:
            return True
        if i >= len(parts) or (kind == _LITERAL and parts[i] != text):
            return False
    return len(segments) == len(parts)


def _best(matching, method):
    best, best_key = None, None
    for route in matching:
        exact = route[0] == method
        if not (exact or (method == "HEAD" and route[0] == "GET")):
            continue
        # Tuples compare rank by rank and then the longer wins, as the host
        # orders patterns; at equal rank an exact method beats GET-for-HEAD.
        key = (tuple(kind for kind, _ in route[1]), exact)
        if best is None or key > best_key:
            best, best_key = route, key
    return best


def _refuse(request, matching):
    if not matching:
        return HttpError(404, f"no route for {request.path}").response(request)
    allowed = list(dict.fromkeys(route[0] for route in matching))
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")
    allow = ", ".join(allowed)
    response = HttpError(405, f"method {request.method} not allowed; use {allow}").response(request)
    response.headers.append(("allow", allow.encode()))
    return response


def _params(segments, parts):
    params = {}
    for i, (kind, name) in enumerate(segments):
        if kind == _LITERAL:
            continue
        raw = parts[i] if kind == _PARAM else "/".join(parts[i:])
        try:
            params[name] = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(
                400, f"path parameter `{name}` is not valid UTF-8 once percent-decoded"
            ) from None
    return params


def _as_response(value):
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(204)
    return Response.json(value)
