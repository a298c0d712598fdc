"""The container image as a user runs it: built by scripts/image.sh from app/Dockerfile, run
by podman (docker where podman is missing) read-only as uid 10001 with /data as its volume, and
through docker-compose.yml as shipped (podman-compose).

Where no registry serves the Dockerfile's base, scripts/image.sh makes it from Debian's packages:
a stand-in for the python image (Debian's build of Python 3.11), named as such in that script."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/taskplaner:test"
PASSWORD = "image-test-password"
UID = "10001"


def engine_env() -> dict[str, str]:
    conf = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "taskplaner-image/containers.conf"
    env = dict(os.environ)
    if conf.exists() and "CONTAINERS_CONF" not in env:
        env["CONTAINERS_CONF"] = str(conf)  # the settings scripts/image.sh builds with
    return env


ENGINE = subprocess.run([ROOT / "scripts/image.sh", "engine"], capture_output=True, text=True,
                        check=True).stdout.strip()


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([ENGINE, *args], capture_output=True, text=True, env=engine_env(),
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{ENGINE} {' '.join(args)}: {result.stderr[-2000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, timeout: float = 30) -> float:
    """Seconds until ``url`` answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@pytest.fixture(scope="module")
def image() -> str:
    build = subprocess.run([ROOT / "scripts/image.sh", "build", TAG], capture_output=True,
                           text=True, timeout=1200)
    assert build.returncode == 0, build.stderr[-3000:]
    return TAG


class Container:
    def __init__(self, image: str, volume: str) -> None:
        self.image, self.volume, self.port = image, volume, free_port()
        self.name = f"tp-test-{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        run("run", "-d", "--name", self.name, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-v", f"{self.volume}:/data",
            "-p", f"127.0.0.1:{self.port}:8080", "-e", f"TASKPLANER_PASSWORD={PASSWORD}",
            self.image)
        return wait_ok(self.url + "/healthz")

    def remove(self) -> None:
        run("rm", "-f", self.name, check=False)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return run("exec", self.name, *command, check=False)


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"tp-test-{os.getpid()}-{time.monotonic_ns()}"
    run("volume", "create", name)
    yield name
    run("volume", "rm", "-f", name, check=False)


@pytest.fixture
def container(image: str, volume: str) -> Iterator[Container]:
    box = Container(image, volume)
    box.start()
    yield box
    box.remove()


def login(url: str) -> requests.Session:
    session = requests.Session()
    res = session.post(url + "/api/v1/session", json={"password": PASSWORD}, timeout=10)
    assert res.status_code == 201, res.text
    session.headers["X-CSRF-Token"] = res.json()["csrf_token"]
    return session


def test_it_runs_as_non_root_read_only_and_writes_only_to_data(container):
    assert requests.get(container.url + "/readyz", timeout=5).json()["status"] == "ready"
    assert container.exec("id", "-u").stdout.strip() == UID
    assert container.exec("touch", "/usr/local/x").returncode != 0  # read-only root
    assert container.exec("touch", "/data/x").returncode == 0
    mounts = container.exec("cat", "/proc/mounts").stdout
    root = next(line for line in mounts.splitlines() if line.split()[1] == "/")
    assert "ro," in root.split()[3] + ","


def test_its_healthcheck_reports_healthy(container):
    health = run("inspect", "--format", "{{json .Config.Healthcheck}}", container.name).stdout
    assert "/healthz" in health
    assert run("healthcheck", "run", container.name, check=False).returncode == 0
    state = json.loads(run("inspect", "--format", "{{json .State}}", container.name).stdout)
    status = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
    assert status == "healthy", state


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), "teal").save(out, "PNG")
    return out.getvalue()


def test_a_note_with_an_image_survives_a_restart_and_a_new_container(container, image, volume):
    client = login(container.url)
    note = client.post(container.url + "/api/v1/items", json={"title": "kept", "body": "safe"}).json()
    picture = client.post(container.url + f"/api/v1/items/{note['id']}/attachments",
                          files={"file": ("p.png", png(), "image/png")}).json()
    run("restart", container.name)
    wait_ok(container.url + "/healthz")
    client = login(container.url)
    assert client.get(container.url + f"/api/v1/items/{note['id']}").json()["title"] == "kept"
    container.remove()
    again = Container(image, volume)
    again.start()
    try:
        client = login(again.url)
        item = client.get(again.url + f"/api/v1/items/{note['id']}").json()
        assert item["body"] == "safe" and item["attachments"][0]["hash"] == picture["hash"]
        assert client.get(again.url + picture["url"]).content == png()
    finally:
        again.remove()


def test_compose_brings_it_up_and_down_keeps_the_volume(image, tmp_path):
    compose = shutil.which("podman-compose") if ENGINE == "podman" else None
    command = [compose] if compose else [ENGINE, "compose"]
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / "taskplaner.env").write_text(
        f"TASKPLANER_PASSWORD={PASSWORD}\nTASKPLANER_SECRET_KEY={'k' * 40}\n")
    project = f"tpcompose{os.getpid()}"
    env = {**engine_env(), "TASKPLANER_IMAGE": image}

    def compose_run(*args: str) -> None:
        result = subprocess.run([*command, "-p", project, *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 8080)) != 0, "port 8080 (the compose file's) is taken"
    try:
        compose_run("up", "-d")
        wait_ok("http://127.0.0.1:8080/healthz")
        client = login("http://127.0.0.1:8080")
        client.post("http://127.0.0.1:8080/api/v1/items", json={"title": "from compose"})
        compose_run("down")
        volumes = run("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{project}_taskplaner-data" in volumes
        compose_run("up", "-d")
        wait_ok("http://127.0.0.1:8080/healthz")
        items = login("http://127.0.0.1:8080").get("http://127.0.0.1:8080/api/v1/items").json()
        assert [i["title"] for i in items["items"]] == ["from compose"]
    finally:
        subprocess.run([*command, "-p", project, "down"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=300)
        run("volume", "rm", "-f", f"{project}_taskplaner-data", check=False)


CLOSURE = """
import importlib.metadata as m, json, re
seen, todo = {}, ["taskplaner"]
while todo:
    name = re.split(r"[ ;<>=!~\\[(]", todo.pop())[0].lower().replace("_", "-")
    if name in seen:
        continue
    dist = m.distribution(name)
    seen[name] = dist.version
    todo += [r for r in dist.requires or [] if "extra ==" not in r]
print(json.dumps(seen))
"""


def test_it_holds_the_app_at_its_pinned_versions_and_nothing_else(image):
    installed = json.loads(run("run", "--rm", "--entrypoint", "python", image, "-c", CLOSURE).stdout)
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    assert {"bottle", "waitress", "pillow", "icalendar", "pyyaml", "nh3"} <= set(installed)
    unpinned = {n: v for n, v in installed.items() if n != "taskplaner" and pins.get(n) != v}
    assert unpinned == {}, f"not at the versions constraints.txt pins: {unpinned}"
    everything = json.loads(run("run", "--rm", "--entrypoint", "python", image, "-c",
                                "import importlib.metadata as m, json; print(json.dumps("
                                "[d.metadata['Name'].lower() for d in m.distributions()]))").stdout)
    assert not {"pytest", "playwright", "hypothesis", "schemathesis", "ansible", "molecule",
                "ruff", "mypy"} & set(everything)
    tools = run("run", "--rm", "--entrypoint", "sh", image, "-c",
                "command -v gcc cc c++ make git; find / -xdev -name .git -o -path /src -o "
                "-path /wheels | head", check=False).stdout
    assert tools.strip() == ""


def test_it_stops_promptly_and_cleanly_on_sigterm(container):
    """As PID 1, a process that does not handle SIGTERM never gets it: the engine waits out its
    grace period (podman 10 s, Kubernetes 30 s) and kills it, mid-request if one is running."""
    started = time.monotonic()
    run("stop", "-t", "20", container.name)
    assert time.monotonic() - started < 5
    assert run("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip() == "0"
