"""Fixtures: a real TaskPlaner (real SQLite, real files) served by a real waitress on 127.0.0.1."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import waitress
from PIL import Image

from taskplaner.config import Settings
from taskplaner.services import Services, open_services
from taskplaner.web import build_wsgi

PASSWORD = "correct horse battery"


@dataclass
class Running:
    services: Services
    base_url: str
    server: Any
    thread: threading.Thread
    sessions: list[requests.Session] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def anon(self) -> requests.Session:
        session = requests.Session()
        self.sessions.append(session)
        return session

    def login(self) -> requests.Session:
        session = self.anon()
        res = session.post(self.url("/api/v1/session"), json={"password": PASSWORD})
        assert res.status_code == 201, res.text
        session.headers["X-CSRF-Token"] = res.json()["csrf_token"]
        return session


def start_server(settings: Settings) -> Running:
    services = open_services(settings)
    if not services.auth.has_password():
        services.auth.set_password(PASSWORD)
    server = waitress.create_server(
        build_wsgi(services), host="127.0.0.1", port=0, threads=settings.threads,
        max_request_body_size=settings.max_upload_bytes + 1024 * 1024,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return Running(services, f"http://127.0.0.1:{server.effective_port}", server, thread)


def stop_server(running: Running) -> None:
    """Close every channel from inside waitress's own loop, so the loop ends cleanly."""
    for session in running.sessions:
        session.close()
    server = running.server

    def close_all() -> None:
        for channel in list(server._map.values()):
            channel.close()

    server.trigger.pull_trigger(close_all)
    running.thread.join(timeout=10)
    server.task_dispatcher.shutdown()
    running.services.close()


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    """Poll until predicate() is truthy (bounded); return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "sqlite_synchronous": "NORMAL"}
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Running]:
    running = start_server(settings)
    yield running
    stop_server(running)


@pytest.fixture
def client(app: Running) -> requests.Session:
    return app.login()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: str = "red",
                **save: Any) -> bytes:
    img = Image.new("RGB", size, color)
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def create_item(client: requests.Session, app: Running, **fields: Any) -> dict[str, Any]:
    fields.setdefault("title", "a note")
    res = client.post(app.url("/api/v1/items"), json=fields)
    assert res.status_code == 201, res.text
    return res.json()
