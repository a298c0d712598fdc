"""Fixtures: a real TaskPlaner (real SQLite, real files) served by a real waitress on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from waitress import wasyncore

from taskplaner.config import Settings
from taskplaner.services import Services, open_services
from taskplaner.web.server import create_server

PASSWORD = "correct horse battery"
# bench/archives.py: the worst-shaped archives, shared by the import tests and the benchmark
sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))


@dataclass
class Running:
    services: Services
    base_url: str
    server: Any
    thread: threading.Thread
    stopping: threading.Event
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
    server = create_server(services, "127.0.0.1", 0)
    stopping = threading.Event()

    def loop() -> None:
        # waitress's own run() can only be stopped by closing its trigger from inside the loop,
        # which races with the trigger write; a flag checked between polls cannot.
        while not stopping.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return Running(services, f"http://127.0.0.1:{server.effective_port}", server, thread, stopping)


def stop_server(running: Running) -> None:
    """Stop polling, let in-flight requests finish, then close every socket once."""
    for session in running.sessions:
        session.close()
    running.stopping.set()
    running.thread.join(timeout=10)
    running.server.task_dispatcher.shutdown()
    wasyncore.close_all(running.server._map)
    running.services.close()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def raw_request(app: Running, head: bytes, body: bytes = b"", timeout: float = 10.0) -> RawResponse:
    """Send bytes as they are (no client library cleans them) and read the reply to its end.
    ``head`` is the request line and headers without the blank line; the server may answer
    before the body is sent, so a body that cannot be sent any more is no error."""
    port = int(app.base_url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.sendall(body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    seconds = time.monotonic() - started
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(lines[0].split()[1]), headers, payload, seconds)


# The web UI's routes beside the API's documented ones: hostile-input tests walk both.
UI_ROUTES = [("GET", "/"), ("GET", "/ui/items"), ("GET", "/ui/items/{id}"), ("GET", "/ui/search"),
             ("GET", "/ui/tags"), ("POST", "/ui/preview"), ("GET", "/static/{name}")]


def every_route() -> list[tuple[str, str]]:
    """(method, path template) for every route of the OpenAPI document and the web UI."""
    from taskplaner.openapi import document

    documented = [(m.upper(), p) for p, ops in document()["paths"].items() for m in ops]
    return documented + UI_ROUTES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: str = "red", **save: Any) -> bytes:
    img = Image.new("RGB", size, color)
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def create_item(client: requests.Session, app: Running, **fields: Any) -> dict[str, Any]:
    fields.setdefault("title", "a note")
    res = client.post(app.url("/api/v1/items"), json=fields)
    assert res.status_code == 201, res.text
    return res.json()


def status_mib(pid: int, field: str) -> float:
    """A /proc/<pid>/status figure in MiB: VmRSS now, VmHWM the peak since the process began."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class ServedProcess:
    """`taskplaner serve` in a process of its own, so that its peak memory is one request's."""

    proc: Any
    base_url: str
    token: str

    def url(self, path: str) -> str:
        return self.base_url + path

    def post(self, path: str, data: bytes, content_type: str) -> requests.Response:
        return requests.post(self.url(path), data=data, timeout=300, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type})

    def mib(self, field: str) -> float:
        return status_mib(self.proc.pid, field)

    def reset_peak(self) -> float:
        """Start VmHWM again from the current RSS (Linux's clear_refs "5"), so that the next
        peak is the next request's own, not start-up's or a warm-up's; return that RSS."""
        reset_peak(self.proc.pid)
        return self.mib("VmRSS")


def serve_process(data_dir: Path, port: int, **env: str) -> tuple[Any, str]:
    """`taskplaner serve` in a process of its own on ``data_dir``, answering: (process, URL)."""
    import os
    import subprocess
    import sys

    environ = {**os.environ, "TASKPLANER_DATA_DIR": str(data_dir), "TASKPLANER_PORT": str(port),
               "TASKPLANER_PASSWORD": PASSWORD, **env}
    proc = subprocess.Popen([sys.executable, "-m", "taskplaner", "serve"], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    assert wait_for(up, timeout=20), "server did not start"
    return proc, url


@contextlib.contextmanager
def served_process(data_dir: Path, **env: str) -> Iterator[ServedProcess]:
    """serve_process with an API token, stopped at the end."""
    import os
    import subprocess
    import sys

    environ = {**os.environ, "TASKPLANER_DATA_DIR": str(data_dir), **env}
    token = subprocess.run([sys.executable, "-m", "taskplaner", "token", "create", "mem"],
                           capture_output=True, text=True, check=True, env=environ).stdout.strip()
    proc, url = serve_process(data_dir, free_port(), **env)
    try:
        yield ServedProcess(proc, url, token)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
