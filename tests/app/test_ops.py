"""Operations: metrics names and values, readiness, config validation, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from conftest import create_item, free_port, make_settings, start_server, stop_server, wait_for
from taskplaner.config import ConfigError, from_env


def test_metrics_follow_prometheus_conventions(app, client):
    create_item(client, app, title="n")
    create_item(client, app, type="task", title="t")
    client.get(app.url("/api/v1/search"), params={"q": "n"})
    client.get(app.url("/api/v1/items/123456"))
    text = client.get(app.url("/metrics")).text
    assert 'http_requests_total{method="POST",route="/api/v1/items",status="201"} 2.0' in text
    assert 'http_requests_total{method="GET",route="/api/v1/items/<item_id:id>",status="404"}' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",route="/api/v1/items"}' in text
    assert "taskplaner_search_duration_seconds_count 1.0" in text
    assert 'taskplaner_items{status="none",type="note"} 1.0' in text
    assert 'taskplaner_items{status="open",type="task"} 1.0' in text
    assert "taskplaner_attachment_stored_bytes 0.0" in text
    # the process's own figures: the dashboard's memory and "since the last upkeep" panels
    assert "process_resident_memory_bytes " in text
    assert "process_start_time_seconds " in text


def test_readyz_reports_low_disk_as_503(tmp_path):
    running = start_server(make_settings(tmp_path, min_free_bytes=1 << 49))
    try:
        res = running.anon().get(running.url("/readyz"))
        assert res.status_code == 503
        assert res.json()["checks"]["database"] == "ok"
        assert res.json()["checks"]["disk"].startswith("only")
    finally:
        stop_server(running)


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"TASKPLANER_PORT": "eighty"}, "TASKPLANER_PORT must be a whole number"),
        ({"TASKPLANER_PORT": "70000"}, "TASKPLANER_PORT must be between"),
        ({"TASKPLANER_UPKEEP_HOURS": "-1"}, "TASKPLANER_UPKEEP_HOURS must be between 0 and 8760"),
        ({"TASKPLANER_SECRET_KEY": "short"}, "TASKPLANER_SECRET_KEY must be at least 32"),
        ({"TASKPLANER_TRUSTED_PROXY": "not-an-ip"}, "TASKPLANER_TRUSTED_PROXY"),
        ({"TASKPLANER_SECURE_COOKIES": "maybe"}, "TASKPLANER_SECURE_COOKIES must be true or false"),
        ({"TASKPLANER_SQLITE_SYNCHRONOUS": "OFF"}, "FULL or NORMAL"),
        ({"TASKPLANER_SQLITE_CACHE_KIB": "8"}, "TASKPLANER_SQLITE_CACHE_KIB must be between 64"),
        ({"TASKPLANER_PASSWORD": "short"}, "at least 8"),
    ],
)
def test_bad_config_is_a_clear_error(env, needle):
    with pytest.raises(ConfigError, match=needle):
        from_env(env)


def cli(data_dir, *args, env=None, stdin=None):
    full_env = {**os.environ, "TASKPLANER_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "taskplaner", *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_config_errors_without_traceback(tmp_path):
    result = cli(tmp_path, "check", env={"TASKPLANER_PORT": "x"})
    assert result.returncode == 2
    assert "configuration error: TASKPLANER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_password_token_reindex_gc(tmp_path):
    data = tmp_path / "data"
    assert cli(data, "set-password", stdin="too\n").returncode == 1
    assert cli(data, "set-password", stdin="a long new password\n").returncode == 0
    token = cli(data, "token", "create", "ci").stdout.strip()
    assert token.startswith("tp_")
    running = start_server(make_settings(tmp_path))
    try:
        anon = running.anon()
        assert (
            anon.post(running.url("/api/v1/session"), json={"password": "a long new password"}).status_code
            == 201
        )
        bearer = running.anon()
        bearer.headers["Authorization"] = f"Bearer {token}"
        create_item(bearer, running, title="indexed later")
        for table in ("items_fts", "items_trigram"):  # simulate a lost index
            running.services.db.conn.execute(f"INSERT INTO {table}({table}) VALUES('delete-all')")
        assert bearer.get(running.url("/api/v1/search"), params={"q": "indexed"}).json()["items"] == []
        assert cli(data, "reindex").returncode == 0
        optimize = cli(data, "optimize")
        assert optimize.returncode == 0 and "search index merged" in optimize.stderr
        hits = bearer.get(running.url("/api/v1/search"), params={"q": "indexed"}).json()["items"]
        assert [h["title"] for h in hits] == ["indexed later"]
    finally:
        stop_server(running)
    gc = cli(data, "gc")
    assert gc.returncode == 0 and "removed 0 unreferenced blobs" in gc.stdout


def test_first_start_without_password_prints_a_generated_one_once(tmp_path):
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(tmp_path / "d"), "TASKPLANER_PORT": str(free_port())}
    env.pop("TASKPLANER_PASSWORD", None)
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskplaner", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{env['TASKPLANER_PORT']}/healthz"
        assert wait_for(lambda u=url: _up(u), timeout=20)
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        outputs.append((out, err))
    first, second = outputs
    assert "TaskPlaner password (shown once):" in first[1]
    password = first[1].split("shown once):")[1].split()[0]
    assert password not in first[0]  # not in the JSON log on stdout
    assert "shown once" not in second[1]
    assert '"msg": "listening"' in second[0]


def _up(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_every_setting_is_documented_in_the_readme():
    """A setting the README does not name is one nobody can find (Datasette keeps the same
    rule); both directions, so a removed setting leaves the table too."""
    import re
    from pathlib import Path

    from taskplaner.config import ENV_SETTINGS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Settings", 1)[1].split("\n### ", 1)[0]
    named = set()
    for row in re.findall(r"^\| (`TASKPLANER_[^|]+)\|", table, flags=re.M):
        first, *rest = re.findall(r"`(TASKPLANER)?(_[A-Z_]+)`", row)
        named.add(first[1][1:].lower())
        named |= {suffix[1:].lower() for _, suffix in rest}
    assert len(named) > 20
    assert ENV_SETTINGS - named == set(), "settings missing from the README's table"
    assert named - ENV_SETTINGS == set(), "the README names settings the app does not read"


STARTUP_PROBE = """
import sys
from pathlib import Path
from taskplaner.config import Settings
from taskplaner.services import open_services
from taskplaner.web.server import create_server
services = open_services(Settings(data_dir=Path(sys.argv[1])))
server = create_server(services, "127.0.0.1", 0)
print(" ".join(m for m in ("PIL", "jinja2", "markdown_it", "nh3") if m in sys.modules))
server.close()
services.close()
"""


def test_the_server_starts_without_what_only_images_pages_and_notes_need(tmp_path):
    """Pillow, Jinja and the Markdown parser are a third of the import time; the server loads
    them with the first image, page or rendered note (bench/run.py measures the start-up)."""
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, str(tmp_path / "data")],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.split() == []


def test_every_connection_keeps_the_configured_page_cache(tmp_path):
    """The SQLite memory the server holds is bounded by threads × TASKPLANER_SQLITE_CACHE_KIB:
    each thread's connection gets the setting, not SQLite's 2 MB default."""
    import threading

    from taskplaner.services import open_services

    settings = from_env({"TASKPLANER_DATA_DIR": str(tmp_path), "TASKPLANER_SQLITE_CACHE_KIB": "256"})
    services = open_services(settings)
    sizes = []
    try:
        def query() -> None:
            services.search.search("anything")
            sizes.append(services.db.conn.execute("PRAGMA cache_size").fetchone()[0])

        threads = [threading.Thread(target=query) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        query()
    finally:
        services.close()
    assert sizes == [-256] * 4


def test_sigterm_stops_the_server_cleanly(tmp_path):
    """Containers stop a process with SIGTERM; as PID 1 the default action does not apply, so
    the server handles it, finishes what its threads are doing, and exits 0."""
    port = free_port()
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(tmp_path / "d"), "TASKPLANER_PORT": str(port),
           "TASKPLANER_PASSWORD": "sigterm-test-password"}
    proc = subprocess.Popen([sys.executable, "-m", "taskplaner", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert '"msg": "stopping"' in out
