"""HTTP layer: one module per resource, each registering Bottle routes that parse input, call
one service, and shape the JSON reply.

Cross-cutting behaviour lives in three places, and every request passes all that apply:
- ``server``'s gate, before waitress reads a request body: per-route body limits, and no body
  at all to a protected route without valid credentials;
- ``core.plugin``, around every route: the same limits, authentication, CSRF, AppError → JSON;
- ``observe.Observed``, around the app: request id, access log, metrics, security headers.
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

