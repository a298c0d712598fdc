"""The OpenAPI 3.1 description of /api/v1, built from small helpers so it stays readable.

``tests/app/test_openapi.py`` fails when a route exists that this document does not describe.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .auth import MAX_TOKEN_NAME
from .localtime import zone_names
from .validation import TAG_RE

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad request", 401: "Not logged in", 403: "CSRF token missing or wrong",
            404: "Not found", 409: "Conflict", 413: "Too large", 415: "Unsupported media type",
            422: "Invalid field", 429: "Too many requests"}
    return {str(c): _json(ERROR, text[c]) for c in codes}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, public: bool = False,
        errors: tuple[int, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_errors(*errors)}}
    if not public:
        op["responses"].update(_errors(401))
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False,
           description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ID = _param("id", "path", {"type": "integer", "minimum": 1})
TAG_NAME = {"type": "string", "pattern": TAG_RE.pattern}  # the app's own check
TAG = _param("name", "path", TAG_NAME)
LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR = _param("cursor", "query", {"type": "string"}, description="next_cursor of the last page")
NO_CONTENT = {"204": {"description": "Done"}}
TEXT = {"type": "string"}

ITEM_FIELDS: dict[str, Any] = {
    "type": {"enum": ["note", "task"]},
    "title": {"type": "string", "maxLength": 500},
    "body": {"type": "string"},
    "tags": {"type": "array", "items": TAG_NAME, "maxItems": 50},
    "status": {"enum": ["open", "done", "archived"]},
    "due": {"type": ["string", "null"], "format": "date"},
    "due_time": {"type": ["string", "null"], "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                 "description": "time on the due day, in the user's time zone; needs due"},
    "priority": {"type": "integer", "minimum": 0, "maximum": 3},
    "repeat": {"type": ["string", "null"],
               "description": "RRULE subset: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, INTERVAL=1..366,"
                              " BYDAY=MO,TU… (weekly); completing the task creates the next one"},
    "repeat_from": {"enum": ["due", "done"],
                    "description": "count the next occurrence from the due date or completion"},
    "pinned": {"type": "boolean", "description": "pinned items lead every list"},
}
TASK_ONLY = ("status", "due", "due_time", "priority", "repeat", "repeat_from")

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": TEXT, "message": TEXT, "field": TEXT}}}},
    "ItemInput": {"type": "object", "properties": ITEM_FIELDS, "additionalProperties": False},
    "ItemCreate": {
        "allOf": [{"$ref": "#/components/schemas/ItemInput"}],
        "anyOf": [
            {"required": ["title"], "properties": {"title": {"pattern": r"\S"}}},
            {"required": ["body"], "properties": {"body": {"minLength": 1}}},
        ],
        # task fields belong to tasks; an item without "type": "task" is a note
        "if": {"not": {"required": ["type"], "properties": {"type": {"const": "task"}}}},
        "then": {"not": {"anyOf": [{"required": [name]} for name in TASK_ONLY]}},
        "description": "A title or a body that is not blank.",
    },
    "Attachment": {"type": "object", "properties": {
        "id": {"type": "integer"}, "item_id": {"type": "integer"}, "hash": TEXT,
        "filename": TEXT, "mime": TEXT, "size": {"type": "integer"},
        "width": {"type": "integer"}, "height": {"type": "integer"}, "created": TEXT,
        "url": TEXT, "thumbnail_url": TEXT}},
    "Item": {"type": "object", "required": ["id", "type", "title", "body", "tags"],
             "properties": {"id": {"type": "integer"}, **ITEM_FIELDS, "created": TEXT,
                            "updated": TEXT,
                            "completed": {"type": ["string", "null"]},
                            "next_id": {"type": ["integer", "null"], "description":
                                        "the occurrence that completing this one created"},
                            "attachments": {"type": "array", "items": _ref("Attachment")}}},
    "QuickAdd": {"type": "object", "required": ["text"], "additionalProperties": False,
                 "properties": {
                     "text": {"type": "string", "description": "as typed: "
                              "\"Renew passport due next week !high every year #admin\""},
                     "task": {"type": "boolean", "description": "a task even without a date"},
                     "ignore": {"type": "array", "maxItems": 20,
                                "items": {"type": "string", "maxLength": 200},
                                "description": "recognised phrases to keep as text"}}},
    "Settings": {"type": "object", "properties": {
        "timezone": {"type": "string", "description": "IANA zone; decides what today is"},
        "calendar_feed": {"type": "boolean", "readOnly": True}}},
    "ItemPage": {"type": "object", "properties": {
        "items": {"type": "array", "items": _ref("Item")},
        "next_cursor": {"type": ["string", "null"]}}},
    "SearchPage": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "title": TEXT, "snippet": {
                "type": "string", "description": "HTML: escaped text with <mark> around matches"}}}},
        "next_cursor": {"type": ["string", "null"]},
        "mode": {"enum": ["words", "substring", "filter"]}}},
    "Tag": {"type": "object", "properties": {"name": TEXT, "count": {"type": "integer"}}},
    "Token": {"type": "object", "properties": {"id": {"type": "integer"}, "name": TEXT,
                                               "created": TEXT,
                                               "last_used": {"type": ["string", "null"]},
                                               "token": {"type": "string",
                                                         "description": "only when created"}}},
}

FILE_UPLOAD = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}}}}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Process is up", {"200": _json({"type": "object"}, "Up")},
                                public=True)},
        "/readyz": {"get": _op("Database answers, data dir writable, disk not full",
                               {"200": _json({"type": "object"}, "Ready"),
                                "503": _json({"type": "object"}, "Not ready")}, public=True)},
        "/metrics": {"get": _op("Prometheus metrics (metrics token, login, or public)",
                                {"200": {"description": "Prometheus text format",
                                         "content": {"text/plain": {"schema": TEXT}}}})},
        "/api/v1/session": {
            "get": _op("Current session and its CSRF token",
                       {"200": _json({"type": "object"}, "Logged in")}),
            "post": _op("Log in; sets the session cookie, returns the CSRF token",
                        {"201": _json({"type": "object", "properties": {"csrf_token": TEXT}},
                                      "Logged in")},
                        body={JSON: {"schema": {"type": "object", "required": ["password"],
                                                "properties": {"password": TEXT}}}},
                        public=True, errors=(400, 401, 413, 415, 429)),
            "delete": _op("Log out", NO_CONTENT, public=True, errors=(403,)),
        },
        "/api/v1/tokens": {
            "get": _op("List API tokens", {"200": _json({"type": "object", "properties": {
                "tokens": {"type": "array", "items": _ref("Token")}}}, "Tokens")}),
            "post": _op("Create an API token (shown once)",
                        {"201": _json(_ref("Token"), "Created")},
                        body={JSON: {"schema": {"type": "object", "required": ["name"],
                                                "properties": {"name": {
                                                    "type": "string", "pattern": r"\S",
                                                    "maxLength": MAX_TOKEN_NAME}}}}},
                        errors=(400, 403, 413, 415, 422)),
        },
        "/api/v1/tokens/{id}": {"delete": _op("Revoke a token", NO_CONTENT, params=[ID],
                                              errors=(403, 404))},
        "/api/v1/items": {
            "get": _op("List items, newest first", {"200": _json(_ref("ItemPage"), "A page")},
                       params=[_param("type", "query", {"enum": ["note", "task"]}),
                               _param("status", "query", {"enum": ["open", "done", "archived"]}),
                               _param("tag", "query", TEXT), CURSOR, LIMIT],
                       errors=(400, 422)),
            "post": _op("Create an item", {"201": _json(_ref("Item"), "Created")},
                        body={JSON: {"schema": _ref("ItemCreate")}},
                        errors=(400, 403, 413, 415, 422)),
        },
        "/api/v1/items/{id}": {
            "get": _op("Get an item with its attachments", {"200": _json(_ref("Item"), "Item")},
                       params=[ID], errors=(404,)),
            "patch": _op("Change some fields of an item", {"200": _json(_ref("Item"), "Item")},
                         params=[ID], body={JSON: {"schema": _ref("ItemInput")}},
                         errors=(400, 403, 404, 413, 415, 422)),
            "delete": _op("Delete an item and its attachments", NO_CONTENT, params=[ID],
                          errors=(403, 404)),
        },
        "/api/v1/items/{id}/checklist": {"post": _op(
            "Tick or untick a checklist box (- [ ]) of the body; 409 if that box changed",
            {"200": _json(_ref("Item"), "Item")}, params=[ID],
            body={JSON: {"schema": {"type": "object", "required": ["index", "done", "fingerprint"],
                                    "additionalProperties": False, "properties": {
                                        "index": {"type": "integer", "minimum": 0},
                                        "done": {"type": "boolean"},
                                        "fingerprint": {"type": "string", "description":
                                                        "from the box's data-check"}}}}},
            errors=(400, 403, 404, 409, 413, 415, 422))},
        "/api/v1/items/{id}/attachments": {"post": _op(
            "Attach an image (JPEG, PNG, GIF, WebP)", {"201": _json(_ref("Attachment"), "Stored")},
            params=[ID], body=FILE_UPLOAD, errors=(400, 403, 404, 413, 415, 422, 429))},
        "/api/v1/attachments/{id}": {"delete": _op("Delete an attachment", NO_CONTENT,
                                                   params=[ID], errors=(403, 404))},
        "/api/v1/blobs/{hash}": {"get": _op(
            "An image or thumbnail by its SHA-256",
            {"200": {"description": "The bytes, with their stored type"},
             "304": {"description": "Not modified (ETag is the hash)"}},
            params=[_param("hash", "path", {"type": "string", "pattern": "^[0-9a-f]{64}$"})],
            errors=(404,))},
        "/api/v1/tags": {"get": _op("Tags with item counts", {"200": _json({
            "type": "object", "properties": {"tags": {"type": "array", "items": _ref("Tag")}}},
            "Tags")})},
        "/api/v1/tags/{name}": {
            "patch": _op("Rename a tag; merge: true merges into an existing one",
                         {"200": _json(_ref("Tag"), "Renamed")}, params=[TAG],
                         body={JSON: {"schema": {"type": "object", "required": ["name"],
                                                 "properties": {"name": TAG_NAME,
                                                                "merge": {"type": "boolean"}}}}},
                         errors=(400, 403, 404, 409, 413, 415, 422)),
            "delete": _op("Remove a tag from every item", NO_CONTENT, params=[TAG],
                          errors=(403, 404)),
        },
        "/api/v1/search": {"get": _op(
            "Search (words, \"phrases\", prefix*, -exclude, OR, tag:, type:, status:, due:, is:)",
            {"200": _json(_ref("SearchPage"), "Results")},
            params=[_param("q", "query", TEXT), LIMIT, CURSOR], errors=(400,))},
        "/api/v1/settings": {
            "get": _op("Settings", {"200": _json(_ref("Settings"), "Settings")}),
            "patch": _op("Change settings", {"200": _json(_ref("Settings"), "Settings")},
                         body={JSON: {"schema": {"type": "object", "additionalProperties": False,
                                                 "properties": {"timezone": {
                                                     "enum": sorted(zone_names())}}}}},
                         errors=(400, 403, 413, 415, 422)),
        },
        "/api/v1/agenda": {"get": _op(
            "Open tasks by due day: overdue, today, next 7 days, later, no date",
            {"200": _json({"type": "object", "properties": {
                "today": TEXT, "timezone": TEXT, "sections": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "name": {"enum": ["overdue", "today", "week", "later", "nodate"]},
                        "label": TEXT, "count": {"type": "integer"},
                        "items": {"type": "array", "items": _ref("Item")}}}}}}, "Agenda")})},
        "/api/v1/quick-add/preview": {"post": _op(
            "What quick add would save: the fields and the recognised parts",
            {"200": _json({"type": "object"}, "Parsed")},
            body={JSON: {"schema": _ref("QuickAdd")}}, errors=(400, 403, 413, 415, 422))},
        "/api/v1/quick-add": {"post": _op(
            "Create an item from a line as typed (dates, times, !priority, every…, #tags)",
            {"201": _json(_ref("Item"), "Created")},
            body={JSON: {"schema": _ref("QuickAdd")}}, errors=(400, 403, 413, 415, 422))},
        "/api/v1/calendar-feed": {
            "post": _op("A new calendar feed URL (iCalendar); the previous one stops working",
                        {"201": _json({"type": "object", "properties": {
                            "url": TEXT, "path": TEXT}}, "Created")}, errors=(403,)),
            "delete": _op("Turn the calendar feed off", NO_CONTENT, errors=(403,)),
        },
        "/calendar/{token}.ics": {"get": _op(
            "The calendar feed: open tasks with a due date, with reminders",
            {"200": {"description": "iCalendar (RFC 5545)",
                     "content": {"text/calendar": {"schema": TEXT}}}},
            params=[_param("token", "path", {"type": "string",
                                              "pattern": "^[A-Za-z0-9_-]{1,100}$"})],
            public=True, errors=(404,))},
        "/api/v1/export": {"get": _op("Download all data as tar.gz", {"200": {
            "description": "The archive",
            "content": {"application/gzip": {"schema": {"type": "string"}}}}})},
        "/api/v1/export/markdown": {"get": _op(
            "Download every item as a Markdown file (YAML front matter) with its images, zipped",
            {"200": {"description": "The zip",
                     "content": {"application/zip": {"schema": {"type": "string"}}}}})},
        "/api/v1/import/markdown": {"post": _op(
            "Add the Markdown files of a zip (an export, an Obsidian or flatnotes folder);"
            " files imported before are skipped",
            {"200": _json({"type": "object", "properties": {
                "counts": {"type": "object"},
                "imported": {"type": "array", "items": {"type": "object"}},
                "skipped": {"type": "array", "items": {"type": "object", "properties": {
                    "file": TEXT, "reason": TEXT}}}}}, "What was imported and skipped")},
            body={"application/zip": {"schema": {"type": "string",
                                                 "contentMediaType": "application/zip"}},
                  **FILE_UPLOAD},
            errors=(400, 403, 413, 415, 429))},
        "/api/v1/import": {"post": _op(
            "Replace all data with an export archive",
            {"200": _json({"type": "object"}, "Imported")},
            body={"application/gzip": {"schema": {"type": "string",
                                                  "contentMediaType": "application/gzip"}},
                  **FILE_UPLOAD},
            errors=(400, 403, 413, 415, 422, 429))},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "TaskPlaner API", "version": __version__,
                 "description": "Notes and tasks. Log in with POST /api/v1/session (cookie + "
                                "X-CSRF-Token header for changes) or send an API token as "
                                "Authorization: Bearer."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "tp_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
