"""The seam every request passes: credentials, CSRF, body limits, and errors as JSON.

A route declares two things in its Bottle config, and nothing else about security:
- ``public=True``: no credentials needed (probes, login, the login page, static files);
- ``body=<kind>``: the largest request body it accepts (see ``body_limit``); a route that
  declares no kind accepts no body.

``plugin`` enforces both for every route of the app. ``web.server``'s gate enforces the same
declarations before waitress reads a body, so a route cannot forget either, and a stranger
cannot make the server receive more than a login's worth of bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

import bottle

from ..auth import Auth, Principal, same_secret
from ..config import Settings
from ..errors import AppError
from ..services import Services
from ..validation import MAX_SQLITE_INT

SESSION_COOKIE = "tp_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around an uploaded file
LOGIN_BODY_BYTES = 8 * 1024  # a password of MAX_PASSWORD_CHARS in JSON fits with room
BODY_KINDS = (None, "login", "json", "upload", "import")


# Fresh errors each time: raising one shared exception object would grow its traceback.
def unauthorized() -> AppError:
    return AppError(401, "unauthorized", "log in or send an API token")


def no_route(status: int) -> AppError:
    if status == 405:
        return AppError(405, "method_not_allowed", "method not allowed here")
    return AppError(404, "not_found", "no such page or resource")


def body_limit(kind: str | None, settings: Settings) -> int:
    """The largest request body, in bytes, a route of this body kind accepts."""
    limits = {
        None: 0,
        "login": LOGIN_BODY_BYTES,
        "json": settings.max_json_bytes,
        "upload": settings.max_upload_bytes + MULTIPART_OVERHEAD,
        "import": settings.max_import_bytes,
    }
    return limits[kind]


def header(environ: dict[str, Any], name: str) -> str:
    """A request header as sent (WSGI's latin-1 text), or ''. Bottle's own accessor decodes
    it as UTF-8 and raises on any other byte, which would turn one byte into a 500."""
    return str(environ.get("HTTP_" + name.upper().replace("-", "_"), ""))


def cookie(environ: dict[str, Any], name: str) -> str | None:
    try:
        morsel = SimpleCookie(header(environ, "Cookie")).get(name)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def principal_of(auth: Auth, environ: dict[str, Any], touch: bool = True) -> Principal | None:
    """Who sent the request: an API token or a session cookie; None for a stranger."""
    return auth.bearer(header(environ, "Authorization"), touch=touch) or auth.session(
        cookie(environ, SESSION_COOKIE)
    )


def current_principal() -> Principal:
    principal: Principal = bottle.request.environ["taskplaner.principal"]
    return principal


def client_ip() -> str:
    return str(bottle.request.environ.get("REMOTE_ADDR") or "unknown")


def json_error(exc: AppError) -> str:
    bottle.response.status = exc.status
    bottle.response.content_type = "application/json"
    for name, value in exc.headers.items():
        bottle.response.set_header(name, value)
    return json.dumps(exc.body())


def check_csrf(principal: Principal) -> None:
    if principal.kind == "session" and bottle.request.method in UNSAFE_METHODS:
        sent = header(bottle.request.environ, CSRF_HEADER)
        if not same_secret(sent, principal.csrf or ""):
            raise AppError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")


def body_refusal(services: Services, kind: str | None, length: int) -> AppError | None:
    """The refusal for a body of ``length`` bytes sent to a route of body ``kind``, if any."""
    limit = body_limit(kind, services.settings)
    if length <= limit:
        return None
    if kind == "upload":
        services.metrics.upload_rejections.labels("too_large").inc()
        return AppError(413, "too_large", f"the file is larger than "
                        f"{services.settings.max_upload_bytes} bytes", "file")
    if limit == 0:  # not a size problem: no body is wanted at all
        return AppError(400, "bad_request", "this route takes no request body")
    return AppError(413, "too_large", f"the request body is larger than {limit} bytes")


def _check_body(route: bottle.Route, services: Services) -> None:
    """The gate in web.server refuses these before the body arrives; this is the same rule
    for any other WSGI server that runs the app."""
    try:
        length = int(bottle.request.environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise AppError(400, "bad_request", "Content-Length is not a number") from None
    refusal = body_refusal(services, route.config.get("body"), length)
    if refusal is not None:
        raise refusal


def plugin(services: Services) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every route's wrapper: body limit, credentials, CSRF, AppError → JSON, no stray 500."""

    def decorate(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            route = bottle.request.route
            try:
                if not route.config.get("public"):
                    principal = principal_of(services.auth, bottle.request.environ)
                    if principal is None:
                        raise unauthorized()
                    check_csrf(principal)
                    bottle.request.environ["taskplaner.principal"] = principal
                _check_body(route, services)
                result = callback(*args, **kwargs)
                if isinstance(result, (dict, list)):
                    bottle.response.content_type = "application/json"
                    return json.dumps(result, ensure_ascii=False)
                return result
            except AppError as exc:
                return json_error(exc)
            except bottle.HTTPResponse:
                raise
            except Exception:
                logging.getLogger("taskplaner").exception(
                    "unhandled error", extra={"fields": {"route": route.rule}}
                )
                return json_error(AppError(500, "internal", "internal error; see the server log"))

        return wrapper

    return decorate


def _id_filter(config: str) -> tuple[str, Callable[[str], int], Callable[[int], str]]:
    """``<name:id>``: a positive row id. Digits beyond SQLite's range become 0, which names
    no row, so the service answers 404 as for any other missing id."""

    def to_python(text: str) -> int:
        value = int(text)
        return value if value <= MAX_SQLITE_INT else 0

    return r"[0-9]{1,30}", to_python, str


def install(app: bottle.Bottle, services: Services) -> None:
    """The seam: the route filter for ids, the plugin, and JSON for Bottle's own errors."""
    app.router.add_filter("id", _id_filter)
    app.install(plugin(services))

    def handler(status: int, code: str, message: str) -> Callable[[bottle.HTTPError], str]:
        return lambda err: json_error(AppError(status, code, message))

    app.error_handler.update({
        400: handler(400, "bad_request", "the request could not be read"),
        404: lambda err: json_error(no_route(404)),
        405: lambda err: json_error(no_route(405)),
        413: handler(413, "too_large", "the request body is too large"),
        500: handler(500, "internal", "internal error; see the server log"),
    })
