"""The browser UI: pages and HTML fragments rendered on the server (Jinja2, autoescape on),
enhanced by a small script from /static (no inline script: the CSP forbids it).

The page shell and every list, card, search result and tag list come from these templates, so
there is one place that turns items into HTML; app.js only fetches fragments and inserts them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from ..errors import AppError
from ..localtime import day_words
from ..markdown import PREVIEW_CHARS
from ..markdown import render as render_markdown
from ..planning import SECTIONS
from ..recurrence import describe as describe_rule
from ..services import Services
from .bodies import json_body
from .core import principal_of

if TYPE_CHECKING:
    import jinja2

PACKAGE = Path(__file__).parent.parent
STATIC = PACKAGE / "static"
PAGE_SIZE = 30
AGENDA = "agenda"  # the view of open tasks by due day (planning.Planning.agenda)
# view name → item filters; the sidebar's "All / Notes / Open tasks / Done / Archived"
VIEWS: dict[str, dict[str, str]] = {
    AGENDA: {},
    "all": {},
    "notes": {"type_": "note"},
    "open": {"type_": "task", "status": "open"},
    "done": {"type_": "task", "status": "done"},
    "archived": {"type_": "task", "status": "archived"},
}
VIEW_LABELS = {"all": "All", "agenda": "Agenda", "notes": "Notes", "open": "Open tasks", "done": "Done",
               "archived": "Archived"}  # fmt: skip


@functools.cache
def _templates() -> jinja2.Environment:
    """The page templates, loaded with the first page (start-up and the API do without Jinja)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    # render_markdown's output went through nh3's allowlist: it is safe to insert as HTML
    env.filters["markdown"] = lambda text: Markup(  # noqa: S704
        render_markdown(text or "", PREVIEW_CHARS, checkable=True))
    env.filters["repeat_words"] = describe_rule
    env.filters["day_words"] = day_words
    env.globals["view_labels"] = VIEW_LABELS
    return env


def html(template: str, **context: Any) -> str:
    bottle.response.content_type = "text/html; charset=utf-8"
    bottle.response.set_header("Cache-Control", "no-cache")
    return _templates().get_template(template).render(**context)


def register(app: bottle.Bottle, services: Services) -> None:
    s = services

    def render(template: str, **context: Any) -> str:
        """A page or fragment that shows items: due dates are overdue by the user's today."""
        return html(template, today=s.planning.today().isoformat(), **context)

    def sidebar() -> dict[str, Any]:
        return {"sections": SECTIONS, "counts": s.planning.counts()}

    def view_filters() -> tuple[str, str | None, dict[str, str]]:
        q = bottle.request.query
        view = q.get("view") or "all"
        if view not in VIEWS:
            raise AppError(400, "invalid", f"view must be one of {', '.join(VIEWS)}", "view")
        tag = q.getunicode("tag") or None
        return view, tag, VIEWS[view]

    def page(view: str, tag: str | None, filters: dict[str, str], cursor: str | None) -> dict[str, Any]:
        if view == AGENDA and not tag:
            return {"agenda": s.planning.agenda(with_attachments=True), "view": view, "tag": None}
        result = s.items.list(**filters, tag=tag, cursor=cursor, limit=PAGE_SIZE, with_attachments=True)
        return {**result, "view": view, "tag": tag}

    @app.get("/", public=True)
    def index() -> str:
        principal = principal_of(s.auth, bottle.request.environ)
        if principal is None:
            return html("login.html")
        q = bottle.request.query
        query = q.getunicode("q") or ""
        view, tag, filters = view_filters()
        context: dict[str, Any] = {
            "csrf": principal.csrf or "",
            "query": query,
            "views": VIEWS,
            "tags": s.tags.list(),
            "settings": s.planning.settings(),
            **sidebar(),
        }
        if query:
            context.update(search=s.search.search(query, limit=PAGE_SIZE), view=view, tag=tag)
        else:
            context.update(page(view, tag, filters, None))
        return render("index.html", **context)

    @app.get("/ui/items")
    def items_fragment() -> str:
        view, tag, filters = view_filters()
        return render("_list.html", **page(view, tag, filters, bottle.request.query.get("cursor")))

    @app.get("/ui/items/<item_id:id>")
    def item_fragment(item_id: int) -> str:
        return render("_item.html", item=s.items.get(item_id))

    @app.get("/ui/views")
    def views_fragment() -> str:
        q = bottle.request.query
        return html("_views.html", view=q.get("view") or "all", query="", tag=None, **sidebar())

    @app.get("/ui/search")
    def search_fragment() -> str:
        q = bottle.request.query
        query = q.getunicode("q") or ""
        result = s.search.search(query, limit=PAGE_SIZE, cursor=q.get("cursor"))
        return render("_search.html", search=result, query=query)

    @app.get("/ui/tags")
    def tags_fragment() -> str:
        return html("_tags.html", tags=s.tags.list(), tag=bottle.request.query.getunicode("tag") or None)

    @app.post("/ui/preview", body="json")
    def preview() -> dict[str, str]:
        body = json_body(s.settings.max_json_bytes)
        text = body.get("markdown") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise AppError(400, "invalid", "markdown must be a string", "markdown")
        return {"html": render_markdown(text)}

    @app.get("/manifest.webmanifest", public=True)
    def manifest() -> Any:
        return _static("manifest.webmanifest", "application/manifest+json")

    @app.get("/sw.js", public=True)
    def service_worker() -> Any:
        # served from the root so it may control every page of the app
        return _static("sw.js", "text/javascript")

    @app.get("/static/<path:path>", public=True)
    def static(path: str) -> Any:
        return _static(path)


def _static(path: str, mimetype: str | bool = True) -> Any:  # True: guessed from the name
    response = bottle.static_file(path, root=str(STATIC), mimetype=mimetype)
    if response.status_code == 404:
        return bottle.HTTPError(404)
    response.set_header("Cache-Control", "no-cache")
    return response
