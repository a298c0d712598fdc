"""HTTP layer: Bottle routes that parse input, call one service, and shape the JSON reply.

Cross-cutting behaviour lives in two places only:
- ``_api_plugin`` (per route): authentication, CSRF for cookie sessions, AppError → JSON;
- ``Observed`` (WSGI wrapper): request id, JSON access log, metrics, security headers.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import bottle
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__, backup, openapi, ui
from .attachments import UploadRejected
from .auth import Principal
from .bodies import json_body, multipart_file
from .errors import AppError
from .logs import log
from .services import Services
from .validation import page_limit

SESSION_COOKIE = "tp_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MULTIPART_OVERHEAD = 64 * 1024
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
BLOB_CSP = "default-src 'none'; sandbox"


def _error(status: int, code: str, message: str, field: str | None = None) -> str:
    return _json_error(AppError(status, code, message, field))


def _json_error(exc: AppError) -> str:
    bottle.response.status = exc.status
    bottle.response.content_type = "application/json"
    for name, value in exc.headers.items():
        bottle.response.set_header(name, value)
    return json.dumps(exc.body())


def _client_ip() -> str:
    return bottle.request.environ.get("REMOTE_ADDR") or "unknown"


def _authenticate(services: Services) -> Principal | None:
    req = bottle.request
    return services.auth.bearer(req.get_header("Authorization")) or services.auth.session(
        req.get_cookie(SESSION_COOKIE)
    )


def _api_plugin(services: Services) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            route = bottle.request.route
            try:
                if not route.config.get("public"):
                    principal = _authenticate(services)
                    if principal is None:
                        raise AppError(401, "unauthorized", "log in or send an API token")
                    if principal.kind == "session" and bottle.request.method in UNSAFE_METHODS:
                        sent = bottle.request.get_header(CSRF_HEADER) or ""
                        if not hmac.compare_digest(sent, principal.csrf or ""):
                            raise AppError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
                    bottle.request.environ["taskplaner.principal"] = principal
                result = callback(*args, **kwargs)
                if isinstance(result, (dict, list)):
                    bottle.response.content_type = "application/json"
                    return json.dumps(result, ensure_ascii=False)
                return result
            except AppError as exc:
                return _json_error(exc)
            except bottle.HTTPResponse:
                raise
            except Exception:
                logging.getLogger("taskplaner").exception(
                    "unhandled error", extra={"fields": {"route": route.rule}}
                )
                return _error(500, "internal", "internal error; see the server log")

        return wrapper

    return decorate


def create_app(services: Services) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.install(_api_plugin(services))
    settings = services.settings
    s = services

    # --- probes, metrics, docs -------------------------------------------------------------
    @app.get("/healthz", public=True)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", public=True)
    def readyz() -> dict[str, Any]:
        checks: dict[str, str] = {}
        try:
            s.db.conn.execute("SELECT 1 FROM items LIMIT 1").fetchall()
            checks["database"] = "ok"
        except Exception as exc:  # readiness must report, not raise
            checks["database"] = f"failed: {type(exc).__name__}"
        checks["data_dir"] = "ok" if os.access(settings.data_dir, os.W_OK) else "not writable"
        free = shutil.disk_usage(settings.data_dir).free
        checks["disk"] = (
            "ok" if free >= settings.min_free_bytes else f"only {free} bytes free"
        )
        ready = all(v == "ok" for v in checks.values())
        bottle.response.status = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", "checks": checks}

    @app.get("/metrics", public=True)
    def metrics() -> bytes:
        if not settings.metrics_public:
            token = settings.metrics_token
            header = bottle.request.get_header("Authorization") or ""
            token_ok = bool(token) and hmac.compare_digest(header, f"Bearer {token}")
            if not token_ok and _authenticate(s) is None:
                raise AppError(401, "unauthorized", "metrics need the metrics token or a login")
        bottle.response.content_type = CONTENT_TYPE_LATEST
        return generate_latest(s.metrics.registry)

    spec = json.dumps(openapi.document()).encode()

    @app.get("/api/openapi.json", public=True)
    def openapi_json() -> bytes:
        bottle.response.content_type = "application/json"
        return spec

    # --- session and tokens ----------------------------------------------------------------
    @app.post("/api/v1/session", public=True)
    def login() -> dict[str, Any]:
        body = json_body(settings.max_json_bytes)
        password = body.get("password") if isinstance(body, dict) else None
        cookie, csrf = s.auth.login(password, _client_ip())
        secure = settings.secure_cookies
        if secure is None:
            secure = bottle.request.urlparts.scheme == "https"
        bottle.response.set_cookie(
            SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=secure, path="/",
            max_age=settings.session_days * 86400,
        )
        bottle.response.status = 201
        return {"csrf_token": csrf}

    @app.get("/api/v1/session")
    def session_info() -> dict[str, Any]:
        principal: Principal = bottle.request.environ["taskplaner.principal"]
        return {"authenticated": True, "kind": principal.kind, "csrf_token": principal.csrf}

    @app.delete("/api/v1/session", public=True)
    def logout() -> Any:
        cookie = bottle.request.get_cookie(SESSION_COOKIE)
        principal = s.auth.session(cookie)
        if principal is not None:
            sent = bottle.request.get_header(CSRF_HEADER) or ""
            if not hmac.compare_digest(sent, principal.csrf or ""):
                raise AppError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
            s.auth.logout(cookie)
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.response.status = 204
        return ""

    @app.get("/api/v1/tokens")
    def list_tokens() -> dict[str, Any]:
        return {"tokens": s.auth.list_tokens()}

    @app.post("/api/v1/tokens")
    def create_token() -> dict[str, Any]:
        body = json_body(settings.max_json_bytes)
        bottle.response.status = 201
        return s.auth.create_token(body.get("name") if isinstance(body, dict) else None)

    @app.delete("/api/v1/tokens/<token_id:int>")
    def delete_token(token_id: int) -> str:
        s.auth.delete_token(_id(token_id))
        bottle.response.status = 204
        return ""

    # --- items -----------------------------------------------------------------------------
    @app.get("/api/v1/items")
    def list_items() -> dict[str, Any]:
        q = bottle.request.query
        return s.items.list(
            type_=q.get("type") or None,
            status=q.get("status") or None,
            tag=q.getunicode("tag") or None,
            cursor=q.get("cursor"),
            limit=page_limit(q.get("limit"), settings.default_page_size, settings.max_page_size),
        )

    @app.post("/api/v1/items")
    def create_item() -> dict[str, Any]:
        item = s.items.create(json_body(settings.max_json_bytes))
        bottle.response.status = 201
        bottle.response.set_header("Location", f"/api/v1/items/{item['id']}")
        return item

    @app.get("/api/v1/items/<item_id:int>")
    def get_item(item_id: int) -> dict[str, Any]:
        return s.items.get(_id(item_id))

    @app.route("/api/v1/items/<item_id:int>", method="PATCH")
    def update_item(item_id: int) -> dict[str, Any]:
        return s.items.update(_id(item_id), json_body(settings.max_json_bytes))

    @app.delete("/api/v1/items/<item_id:int>")
    def delete_item(item_id: int) -> str:
        s.items.delete(_id(item_id))
        bottle.response.status = 204
        return ""

    # --- tags ------------------------------------------------------------------------------
    @app.get("/api/v1/tags")
    def list_tags() -> dict[str, Any]:
        return {"tags": s.tags.list()}

    @app.route("/api/v1/tags/<name>", method="PATCH")
    def rename_tag(name: str) -> dict[str, Any]:
        return s.tags.rename(_path_name(name), json_body(settings.max_json_bytes))

    @app.delete("/api/v1/tags/<name>")
    def delete_tag(name: str) -> str:
        s.tags.delete(_path_name(name))
        bottle.response.status = 204
        return ""

    # --- attachments and blobs -------------------------------------------------------------
    @app.post("/api/v1/items/<item_id:int>/attachments")
    def upload(item_id: int) -> dict[str, Any]:
        if bottle.request.content_length > settings.max_upload_bytes + MULTIPART_OVERHEAD:
            s.metrics.upload_rejections.labels("too_large").inc()
            raise UploadRejected(
                413, "too_large", f"the file is larger than {settings.max_upload_bytes} bytes"
            )
        if not bottle.request.content_type.lower().startswith("multipart/form-data"):
            raise AppError(415, "unsupported_media_type", "send the file as multipart/form-data")
        upload = multipart_file()
        result = s.attachments.add(
            _id(item_id), upload.raw_filename or "image", upload.file
        )
        bottle.response.status = 201
        return result

    @app.delete("/api/v1/attachments/<attachment_id:int>")
    def delete_attachment(attachment_id: int) -> str:
        s.attachments.delete(_id(attachment_id))
        bottle.response.status = 204
        return ""

    @app.get("/api/v1/blobs/<digest:re:[0-9a-f]{64}>")
    def blob(digest: str) -> Any:
        mime = s.attachments.blob_mime(digest)
        if mime is None or not s.blobs.exists(digest):
            raise AppError(404, "not_found", "blob not found")
        etag = f'"{digest}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Security-Policy": BLOB_CSP,
            "Content-Disposition": "inline",
        }
        if bottle.request.get_header("If-None-Match") == etag:
            return bottle.HTTPResponse(status=304, **headers)
        response = bottle.static_file(
            digest, root=str(s.blobs.path_for(digest).parent), mimetype=mime
        )
        for name, value in headers.items():
            response.set_header(name, value)
        return response

    # --- search, export, import ------------------------------------------------------------
    @app.get("/api/v1/search")
    def search() -> dict[str, Any]:
        q = bottle.request.query
        limit = page_limit(q.get("limit"), 20, settings.max_page_size)
        return s.search.search(q.getunicode("q") or "", limit=limit, cursor=q.get("cursor"))

    @app.get("/api/v1/export")
    def export() -> Iterator[bytes]:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        bottle.response.content_type = "application/gzip"
        bottle.response.set_header(
            "Content-Disposition", f'attachment; filename="taskplaner-{stamp}.tar.gz"'
        )
        return backup.export_stream(s)

    @app.post("/api/v1/import")
    def import_() -> dict[str, Any]:
        if bottle.request.content_length > settings.max_import_bytes:
            raise AppError(413, "too_large", "the archive is larger than the import limit")
        ctype = bottle.request.content_type.lower()
        if ctype.startswith("multipart/form-data"):
            stream = multipart_file().file
        elif ctype in ("application/gzip", "application/x-gzip", "application/octet-stream"):
            stream = bottle.request.body
        else:
            raise AppError(415, "unsupported_media_type", "send a tar.gz export")
        return {"imported": backup.import_archive(s, stream)}

    # --- web UI ----------------------------------------------------------------------------
    ui.register(app, s, lambda: _authenticate(s))

    def json_404(err: bottle.HTTPError) -> str:
        return _error(404, "not_found", "no such page or resource")

    def json_405(err: bottle.HTTPError) -> str:
        return _error(405, "method_not_allowed", "method not allowed here")

    def json_500(err: bottle.HTTPError) -> str:
        return _error(500, "internal", "internal error; see the server log")

    app.error_handler.update({404: json_404, 405: json_405, 500: json_500})
    return app


def _id(value: int) -> int:
    """Path ids beyond SQLite's integer range cannot exist: a 404, not an overflow."""
    if value > 2**63 - 1:
        raise AppError(404, "not_found", "not found")
    return value


def _path_name(raw: str) -> str:
    """Bottle decodes path segments as latin-1; tag names are UTF-8."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


class Observed:
    """WSGI wrapper: request id, security headers, one JSON access log line, HTTP metrics."""

    def __init__(self, app: bottle.Bottle, services: Services) -> None:
        self.app = app
        self.metrics = services.metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isprintable() else (
            uuid.uuid4().hex
        )
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
        method = environ.get("REQUEST_METHOD", "")
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


def build_wsgi(services: Services) -> Observed:
    return Observed(create_app(services), services)
