"""The HTTP server: waitress, with limits for a server that strangers can reach.

waitress reads a whole request body (to memory, then to a temp file) before the app runs. So
the gate here runs as soon as a request's headers have arrived, in waitress's I/O thread, and
applies the route's own declarations (``core``): a body larger than the route accepts is refused
with 413, and a body sent to a protected route without valid credentials with 401, before any
of it is read. A stranger can therefore make the server hold a login body (8 KiB) and the
headers (``MAX_HEADER_BYTES``) per connection, and no more.

Connections (settings, README "Limits"):
- ``connection_limit`` in all; past it waitress stops accepting until some close;
- ``max_connections_per_client`` from one address (the trusted proxy is exempt), so one client
  cannot take the whole pool;
- ``header_timeout_seconds`` to send a request's headers, so slow senders cannot hold slots;
- ``idle_timeout_seconds`` of silence on a connection without a request in progress.
Refusals made here bypass the app, so they are counted in their own metric
(``taskplaner_http_refused_total``) and answered with the app's JSON error shape.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

import bottle
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error

from ..errors import AppError
from ..services import Services
from . import core, create_app
from .observe import SECURITY_HEADERS, Observed

MAX_HEADER_BYTES = 32 * 1024  # request line and headers; browsers send a few KiB
INBUF_IN_MEMORY_BYTES = 64 * 1024  # a body beyond this waits in a temp file, not in memory
MAINTENANCE_SECONDS = 2


class Gate:
    """Decides, from a request's headers alone, whether its body may be read."""

    def __init__(self, services: Services, router: bottle.Router) -> None:
        self.services = services
        self.router = router  # the app's own routes, with their declarations

    def check(self, method: str, path: str, headers: dict[str, str], length: int,
              chunked: bool) -> tuple[AppError | None, int]:
        """(refusal or None, the most body bytes to read)."""
        if length == 0 and not chunked:  # nothing to read: the app decides everything else
            return None, 0
        try:
            route, _ = self.router.match({"PATH_INFO": path or "/", "REQUEST_METHOD": method})
        except bottle.HTTPError as exc:  # no such route: the app's 404/405, no body read
            refusal = core.no_route(exc.status_code)
            if "Allow" in exc.headers:  # a 405 says which methods the path takes
                refusal.headers["Allow"] = exc.headers["Allow"]
            return refusal, 0
        if not route.config.get("public"):
            environ = {"HTTP_" + name: value for name, value in headers.items()}
            if core.principal_of(self.services.auth, environ, touch=False) is None:
                return core.unauthorized(), 0
        kind = route.config.get("body")
        return core.body_refusal(self.services, kind, length), core.body_limit(
            kind, self.services.settings)


class Refused(Error):
    """A gate refusal in waitress's error shape; ``JsonErrorTask`` renders it."""

    def __init__(self, exc: AppError) -> None:
        super().__init__(exc.message)
        self.code = exc.status
        self.reason = HTTPStatus(exc.status).phrase
        self.app_error = exc


class _BodyLimit:
    """waitress's adjustments for one request, with that route's body limit."""

    def __init__(self, base: Adjustments, max_body: int) -> None:
        self._base = base
        self.max_request_body_size = max_body + 1  # waitress refuses at >=, we at >

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


class GatedParser(HTTPRequestParser):
    gate: Gate  # set by the server
    adj: Any
    content_length: int
    chunked: bool

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        refusal, max_body = self.gate.check(
            self.command, self.path, self.headers, self.content_length, self.chunked
        )
        if refusal is None:
            self.adj = _BodyLimit(self.adj, max_body)
            return
        self.gate.services.metrics.http_refused.labels(refusal.code).inc()
        # answer now and read none of the body: the connection closes after the reply
        self.error = Refused(refusal)
        self.body_rcv = None
        self.content_length = 0
        self.chunked = False
        self.expect_continue = False
        self.completed = True


class JsonErrorTask(ErrorTask):
    """waitress's own errors (bad request line, headers too large…) and the gate's, as JSON."""

    def execute(self) -> None:
        error = self.request.error
        app_error = getattr(error, "app_error", None) or AppError(
            error.code, "too_large" if error.code == 413 else "bad_request", str(error.body)
        )
        body = json.dumps(app_error.body()).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.response_headers.extend(app_error.headers.items())
        # answered before the app runs, so without the app's wrapper: the same headers here
        self.response_headers.extend(SECURITY_HEADERS.items())
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GatedChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None:  # this data starts a new request: its headers' clock starts
            self.request_started = time.monotonic()
        return bool(super().received(data))


class Server(TcpWSGIServer):
    """waitress's TCP server with the gate, a per-client connection cap and a header
    deadline."""

    def __init__(self, services: Services, adj: Adjustments, app: bottle.Bottle | None = None) -> None:
        settings = services.settings
        app = app or create_app(services)
        gate = Gate(services, app.router)
        self.metrics = services.metrics
        self.per_client = settings.max_connections_per_client
        self.exempt = settings.trusted_proxy
        self.header_timeout = settings.header_timeout_seconds
        parser = type("Parser", (GatedParser,), {"gate": gate})
        self.channel_class = type("Channel", (GatedChannel,), {"parser_class": parser})
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(Observed(app, services.metrics), dispatcher=dispatcher, adj=adj)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:  # the client left before we got to it
            return
        addr = self.fix_addr(addr)
        if self.exempt != "*" and addr[0] != self.exempt:
            open_here = sum(1 for ch in self.active_channels.values() if ch.addr[0] == addr[0])
            if open_here >= self.per_client:
                self.metrics.http_refused.labels("too_many_connections").inc()
                conn.close()
                return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections
        cutoff = time.monotonic() - self.header_timeout
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and not request.headers_finished \
                    and channel.request_started < cutoff:
                self.metrics.http_refused.labels("header_timeout").inc()
                channel.will_close = True


def create_server(services: Services, host: str, port: int,
                  app: bottle.Bottle | None = None) -> Server:
    """The server for ``services``; ``app`` is the app's own unless one is given (the HTTP
    benchmark adds a route to it)."""
    settings = services.settings
    proxy: dict[str, Any] = {}
    if settings.trusted_proxy:
        proxy = {"trusted_proxy": settings.trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto",
                                           "x-forwarded-host"},
                 "clear_untrusted_proxy_headers": True}
    adj = Adjustments(
        host=host, port=port, threads=settings.threads, ident="taskplaner",
        max_request_body_size=max(core.body_limit(kind, settings) for kind in core.BODY_KINDS) + 1,
        max_request_header_size=MAX_HEADER_BYTES,
        inbuf_overflow=INBUF_IN_MEMORY_BYTES,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.idle_timeout_seconds,
        cleanup_interval=MAINTENANCE_SECONDS,
        asyncore_use_poll=True,  # select() fails past 1,024 descriptors
        **proxy,
    )
    return Server(services, adj, app)
