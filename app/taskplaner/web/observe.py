"""The WSGI wrapper around the app: request id, security headers, one JSON access log line
and the HTTP metrics for every request, whatever route (or none) answered it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import bottle

from ..logs import log
from ..metrics import Metrics

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; manifest-src 'self'; worker-src 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Metric labels come from closed sets: a client can send any method, and each new label value
# would be a new series kept for the life of the process.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class Observed:
    def __init__(self, app: bottle.Bottle, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        incoming = str(environ.get("HTTP_X_REQUEST_ID", ""))
        usable = 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.isprintable()
        request_id = incoming if usable else uuid.uuid4().hex
        state: dict[str, Any] = {"status": "500"}

        def observe_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["status"] = status.split(" ", 1)[0]
            present = {name.lower() for name, _ in headers}
            headers = headers + [
                (k, v) for k, v in SECURITY_HEADERS.items() if k.lower() not in present
            ]
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info) if exc_info else start_response(
                status, headers
            )

        body = self.app(environ, observe_start)
        return _Finished(body, lambda: self._done(environ, state["status"], started, request_id))

    def _done(self, environ: dict[str, Any], status: str, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        route_obj = environ.get("bottle.route")
        route = route_obj.rule if route_obj is not None else "unmatched"
        method = method_label(str(environ.get("REQUEST_METHOD", "")))
        self.metrics.requests.labels(method, route, status).inc()
        self.metrics.request_seconds.labels(route).observe(elapsed)
        log(
            logging.INFO, "request", method=method, route=route, status=int(status),
            duration_ms=round(elapsed * 1000, 2), request_id=request_id,
        )


class _Finished:
    """Wraps a WSGI body so the callback runs once the server has sent all of it."""

    def __init__(self, body: Iterable[bytes], callback: Callable[[], None]) -> None:
        self.body = body
        self.callback = callback

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            self.callback()
