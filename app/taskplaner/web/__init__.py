"""HTTP layer: one module per resource, each registering Bottle routes that parse input, call
one service, and shape the JSON reply.

Cross-cutting behaviour lives in three places, and every request passes all that apply:
- ``server``'s gate, before waitress reads a request body: per-route body limits, and no body
  at all to a protected route without valid credentials;
- ``core.plugin``, around every route: the same limits, authentication, CSRF, AppError → JSON;
- ``observe.Observed``, around the app: request id, access log, metrics, security headers.

The rule for what comes next: a new route or input path (a field, a file format, a query
word) arrives in the same change with
- its fuzz strategy: a hypothesis property over its whole domain in
  ``tests/app/test_domain_properties.py`` (dates from year 1 to 9999, every zone of the
  database, any text length, the grammar's near misses) and, for a new route, its place in the
  OpenAPI document, which ``test_fuzz_http.py`` and schemathesis then reach;
- its bound: what the worst accepted input costs, measured in a fresh process (peak RSS,
  VmHWM) in ``tests/app/test_import_memory.py`` or ``test_upload_safety.py``, and time that
  grows at most linearly with the input (or a size cap that keeps ``/healthz`` answering while
  eight such requests run). The budget is +64 MiB over the warm server (README, "Limits").
"""

from __future__ import annotations

import bottle

from ..services import Services
from . import attachments, core, health, items, planning, search, session, tags, transfer, ui

RESOURCES = (health, session, items, tags, attachments, search, transfer, planning)


def create_app(services: Services) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    core.install(app, services)
    for resource in RESOURCES:
        resource.register(app, services)
    ui.register(app, services)
    return app

