"""Hostile HTTP input: each class of request that once made the server answer 500, hold a
stranger's bytes, or stop answering, sent as raw bytes to a real waitress.

The fuzzer in test_fuzz_http.py hunts for new members of these classes; this file pins each
class with a request that reproduces it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    create_item,
    every_route,
    free_port,
    make_settings,
    raw_request,
    serve_process,
    start_server,
    status_mib,
    stop_server,
    wait_for,
)

HOSTILE_BYTES = (b"\xff", b"\xc3\x28", b"\xe2\x80", b"\x00", "é".encode("latin-1"), "ü€".encode())


def operations(item_id: int) -> list[tuple[str, str]]:
    """Every route, with its path filled in for one real item."""
    return [(method, path.replace("{id}", str(item_id)).replace("{name}", "seed")
             .replace("{digest}", "0" * 64)) for method, path in every_route()]


def assert_json_4xx(res, where) -> None:
    assert 400 <= res.status < 500, (where, res.status, res.body[:200])
    assert "error" in res.json(), where


def test_non_utf8_bytes_in_credentials_are_refused_not_500(app, client):
    item = create_item(client, app, title="seed", tags=["seed"])
    cookie = client.cookies.get("tp_session").encode()
    variants = []
    for bad in HOSTILE_BYTES:
        variants += [
            b"Authorization: Bearer " + bad,
            b"Authorization: Bearer tp_" + bad,
            b"Authorization: " + bad,
            b"Cookie: tp_session=" + bad + b"." + bad,
            b"Cookie: tp_session=" + cookie + b"\r\nX-CSRF-Token: " + bad,
            b"X-Request-ID: abcdefgh" + bad,
            b"If-None-Match: " + bad,
        ]
    for method, path in operations(item["id"]):
        for header in variants:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + header
            res = raw_request(app, head)
            assert res.status < 500, (method, path, header, res.body[:300])
            if res.status >= 400 and path != "/":
                assert_json_4xx(res, (method, path, header))


def test_metrics_token_with_foreign_bytes_is_a_401(tmp_path):
    running = start_server(make_settings(tmp_path, metrics_token="m" * 20))
    try:
        for bad in HOSTILE_BYTES:
            res = raw_request(running, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + bad)
            assert res.status in (400, 401), res.body  # waitress refuses a NUL itself
            assert res.json()["error"]["code"] in ("bad_request", "unauthorized")
        res = raw_request(running, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"m" * 20)
        assert res.status == 200
    finally:
        stop_server(running)


JSON_ROUTES = [("POST", "/api/v1/items"), ("PATCH", "/api/v1/items/{id}"), ("POST", "/api/v1/tokens"),
               ("PATCH", "/api/v1/tags/seed"), ("POST", "/ui/preview")]
BAD_JSON = {
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "deep within the limit": '{"title": ' + "[" * 40 + "]" * 40 + "}",
    "5,000-digit integer": '{"priority": ' + "9" * 5000 + "}",
    "NaN": '{"priority": NaN}',
    "lone surrogate": '{"title": "\\ud800", "name": "\\udfff", "markdown": "\\ud800"}',
    "lone surrogate key": '{"\\ud800": 1}',
    "not UTF-8": b'{"title": "\xff"}',
}


@pytest.mark.parametrize("name", BAD_JSON)
def test_bad_json_is_a_400_on_every_json_route(app, client, name):
    item = create_item(client, app, title="seed", tags=["seed"])
    body = BAD_JSON[name]
    body = body if isinstance(body, bytes) else body.encode()
    for method, path in JSON_ROUTES:
        res = client.request(method, app.url(path.format(id=item["id"])), data=body,
                             headers={"Content-Type": "application/json"})
        assert res.status_code in (400, 413), (name, path, res.status_code, res.text[:200])
        assert res.json()["error"]["code"] in ("bad_json", "too_large"), (name, path)
    # the login route is public: the same bodies, without credentials
    res = app.anon().post(app.url("/api/v1/session"), data=body, headers={"Content-Type": "application/json"})
    assert res.status_code in (400, 413) and res.json()["error"]["code"] in ("bad_json", "too_large")


def test_lone_surrogates_never_reach_the_database(app, client):
    res = client.post(app.url("/api/v1/items"), data='{"title": "a\\ud83d"}',
                      headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and "surrogate" in res.json()["error"]["message"]
    # a proper pair is text (an emoji) and is kept
    res = client.post(app.url("/api/v1/items"), data='{"title": "a\\ud83d\\ude00"}',
                      headers={"Content-Type": "application/json"})
    assert res.status_code == 201 and res.json()["title"] == "a😀"


def _head(method: str, path: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: x", *headers]).encode()


def test_a_stranger_body_is_refused_before_it_is_read(app):
    """Nothing a stranger sends is buffered: the reply comes while the body has not been sent."""
    port = int(app.base_url.rsplit(":", 1)[1])
    cases = {
        ("POST", "/api/v1/items", "application/json"): 401,
        ("POST", "/api/v1/items/1/attachments", "multipart/form-data; boundary=x"): 401,
        ("POST", "/api/v1/import", "application/gzip"): 401,
        ("POST", "/api/v1/session", "application/json"): 413,  # public, but a login is small
        ("GET", "/healthz", "text/plain"): 400,  # takes no body at all: not a size problem
        ("POST", "/no/such/route", "text/plain"): 404,
    }
    for (method, path, ctype), status in cases.items():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(_head(method, path, f"Content-Type: {ctype}",
                               "Content-Length: 2147483648", "", ""))
            started = time.monotonic()
            reply = b""
            while chunk := sock.recv(65536):  # the server closes after its reply
                reply += chunk
            assert time.monotonic() - started < 2, path
        status_line, _, rest = reply.partition(b"\r\n")
        assert int(status_line.split()[1]) == status, (path, reply[:200])
        code = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"]
        assert code == {401: "unauthorized", 413: "too_large", 404: "not_found",
                        400: "bad_request"}[status]


def test_forged_credentials_do_not_open_the_gate(app):
    for header in ("Authorization: Bearer tp_" + "a" * 43, "Cookie: tp_session=abc.def"):
        res = raw_request(app, _head("POST", "/api/v1/items", "Content-Type: application/json",
                                     "Content-Length: 1000000", header), b"x" * 10)
        assert res.status == 401, header


def test_each_route_reads_at_most_its_own_limit(app, client):
    """Authenticated, a body is still refused from its declared length or, when chunked, as soon
    as it passes the route's limit."""
    limit = app.services.settings.max_json_bytes
    token = app.services.auth.create_token("t")["token"]
    auth = f"Authorization: Bearer {token}"
    res = raw_request(app, _head("POST", "/api/v1/items", "Content-Type: application/json",
                                 f"Content-Length: {limit + 1}", auth))
    assert res.status == 413 and res.seconds < 2
    chunk = b"x" * 65536
    chunked = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * (limit // len(chunk) + 2) + b"0\r\n\r\n"
    res = raw_request(app, _head("POST", "/api/v1/items", "Content-Type: application/json",
                                 "Transfer-Encoding: chunked", auth), chunked)
    assert res.status == 413 and res.json()["error"]["code"] == "too_large"
    # and a body within the limit, chunked, goes through
    body = json.dumps({"title": "chunked"}).encode()
    res = raw_request(app, _head("POST", "/api/v1/items", "Content-Type: application/json",
                                 "Transfer-Encoding: chunked", auth),
                      f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    assert res.status == 201


def test_refusals_before_the_app_are_counted(app, client):
    raw_request(app, _head("POST", "/api/v1/items", "Content-Length: 5"), b"12345")
    raw_request(app, _head("POST", "/no/such/route", "Content-Length: 5"), b"12345")
    metrics = client.get(app.url("/metrics")).text
    assert 'taskplaner_http_refused_total{reason="unauthorized"} 1.0' in metrics
    assert 'taskplaner_http_refused_total{reason="not_found"} 1.0' in metrics
    assert 'reason="too_large"' not in metrics


def test_incomplete_connections_do_not_block_the_server(tmp_path):
    """Past waitress's default limit of 100, and slow senders are cut off at the header deadline."""
    running = start_server(make_settings(tmp_path, header_timeout_seconds=1,
                                         max_connections_per_client=500))
    port = int(running.base_url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            socks.append(sock)
        res = raw_request(running, _head("GET", "/healthz"), timeout=5)
        assert res.status == 200 and res.seconds < 2
        socks[0].settimeout(10)
        started = time.monotonic()
        assert socks[0].recv(10) == b""  # closed by the server
        assert time.monotonic() - started < 6
    finally:
        for sock in socks:
            sock.close()
        stop_server(running)


def test_one_client_cannot_take_every_connection(tmp_path):
    running = start_server(make_settings(tmp_path, max_connections_per_client=5))
    port = int(running.base_url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        wait_for(lambda: len(running.server.active_channels) >= 5)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):  # refused with the request unread
            assert extra.recv(100) == b""  # refused: this address holds its five
        extra.close()
        socks.pop().close()
        wait_for(lambda: len(running.server.active_channels) < 5)
        assert raw_request(running, _head("GET", "/healthz")).status == 200
    finally:
        for sock in socks:
            sock.close()
        stop_server(running)


def test_made_up_methods_add_no_metric_series(app, client):
    for i in range(50):
        raw_request(app, _head(f"X{i}Y", "/healthz"))
    text = client.get(app.url("/metrics")).text
    assert 'method="other"' in text
    assert "X1Y" not in text and text.count("http_requests_total{") < 12


def test_integers_out_of_range_are_4xx(app, client):
    create_item(client, app, title="x")
    huge = base64.urlsafe_b64encode(b"9" * 30).decode()
    negative = base64.urlsafe_b64encode(b"-1").decode()
    digits = base64.urlsafe_b64encode(b"9" * 5000).decode()
    for path in ("/api/v1/items", "/api/v1/search?q=x", "/ui/items", "/ui/search?q=x"):
        for cursor in (huge, negative, digits):
            sep = "&" if "?" in path else "?"
            res = client.get(app.url(f"{path}{sep}cursor={cursor}"))
            assert res.status_code == 400, (path, res.text[:200])
    for number in ("99999999999999999999", "9223372036854775808", "-99999999999999999999", "-1", "0"):
        for method, path in (("GET", f"/api/v1/items/{number}"), ("PATCH", f"/api/v1/items/{number}"),
                             ("DELETE", f"/api/v1/items/{number}"), ("DELETE", f"/api/v1/tokens/{number}"),
                             ("DELETE", f"/api/v1/attachments/{number}"), ("GET", f"/ui/items/{number}"),
                             ("POST", f"/api/v1/items/{number}/attachments")):
            res = client.request(method, app.url(path), json={"title": "x"} if method == "PATCH" else None,
                                 files={"file": ("a.png", b"x")} if method == "POST" else None)
            assert res.status_code == 404, (method, path, res.status_code, res.text[:200])
            assert res.json()["error"]["code"] == "not_found"


def test_unknown_multipart_charsets_are_a_400(app, client):
    item = create_item(client, app)
    url = app.url(f"/api/v1/items/{item['id']}/attachments")
    part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png; charset=nope\r\n\r\nxx\r\n--b--\r\n")
    for ctype in ("multipart/form-data; boundary=b; charset=nope", "multipart/form-data; boundary=b"):
        res = client.post(url, data=part, headers={"Content-Type": ctype})
        assert res.status_code in (400, 415, 422), (ctype, res.text[:200])
        assert "error" in res.json()


def test_tags_with_a_slash_can_be_renamed_and_deleted(app, client):
    create_item(client, app, title="x", tags=["work/2026"])
    res = client.patch(app.url("/api/v1/tags/work%2F2026"), json={"name": "work/2027"})
    assert res.status_code == 200, res.text
    assert [t["name"] for t in client.get(app.url("/api/v1/tags")).json()["tags"]] == ["work/2027"]
    assert client.delete(app.url("/api/v1/tags/work/2027")).status_code == 204
    assert client.get(app.url("/api/v1/tags")).json()["tags"] == []


def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(tmp_path):
    running = start_server(make_settings(tmp_path, threads=16))
    try:
        statuses: list[int] = []
        barrier = threading.Barrier(40)

        def guess() -> None:
            session = running.anon()
            barrier.wait()
            res = session.post(running.url("/api/v1/session"), json={"password": "wrong!"})
            statuses.append(res.status_code)

        threads = [threading.Thread(target=guess) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(401) <= running.services.settings.login_max_failures, statuses
        assert statuses.count(429) >= 40 - running.services.settings.login_max_failures
    finally:
        stop_server(running)


def test_strangers_requests_leave_no_memory_behind(app):
    """Refusals must not accumulate state: a thousand unauthenticated requests, and the
    Python heap is where it was (a shared exception object, raised each time, would keep every
    raise's traceback)."""
    import gc
    import tracemalloc

    session = app.anon()
    url = app.url("/api/v1/items")
    for _ in range(100):  # warm caches, connections and metrics series
        session.get(url)
    tracemalloc.start()
    try:
        gc.collect()  # requests leave reference cycles (environ ↔ request) for the collector
        before = tracemalloc.take_snapshot()
        for i in range(1000):  # refused, and unknown paths of every shape
            assert session.get(url).status_code == 401
            if i % 4 == 0:
                assert session.get(app.url(f"/no/such/{i}?q={i}")).status_code == 404
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"{grown} bytes kept after 1,000 refused requests"


def test_served_request_bodies_wait_on_the_data_volume(tmp_path):
    """`taskplaner serve` keeps a large body that is still arriving in <data>/tmp (waitress
    spills past 64 KiB), not in /tmp: a tmpfs in the compose file, 1 GiB in the chart."""
    data = tmp_path / "data"
    proc, url = serve_process(data, free_port())
    try:
        token = subprocess.run(
            [sys.executable, "-m", "taskplaner", "token", "create", "t"], capture_output=True,
            text=True, check=True, env={**os.environ, "TASKPLANER_DATA_DIR": str(data)},
        ).stdout.strip()
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_head("POST", "/api/v1/import", "Content-Type: application/gzip",
                               f"Authorization: Bearer {token}", "Content-Length: 4000000", "", ""))
            sock.sendall(b"x" * 1_000_000)  # a quarter of it: the server is still receiving

            def spilled() -> list[str]:
                fds = Path(f"/proc/{proc.pid}/fd")
                links = []
                for fd in fds.iterdir():
                    with contextlib.suppress(OSError):
                        links.append(os.readlink(fd))
                return [link for link in links if "(deleted)" in link]

            held = wait_for(spilled, timeout=10)
            assert held and all(link.startswith(str(data / "tmp")) for link in held), held
    finally:
        proc.kill()
        proc.wait()


def test_strangers_guessing_at_once_cannot_make_the_password_check_take_much_memory(tmp_path):
    """Each password check is a scrypt that takes 32 MiB. Guesses from many addresses at once
    (one waitress thread each) take turns instead of holding 32 MiB apiece."""
    server, base = serve_process(tmp_path, free_port(), TASKPLANER_PASSWORD="the-right-password",
                                 TASKPLANER_TRUSTED_PROXY="127.0.0.1")
    try:
        idle = status_mib(server.pid, "VmRSS")
        statuses = []

        def guess(n: int) -> None:
            res = requests.post(base + "/api/v1/session", json={"password": f"wrong-{n}"},
                                headers={"X-Forwarded-For": f"203.0.113.{n}"}, timeout=60)
            statuses.append(res.status_code)

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = status_mib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sorted(statuses) == [401] * 8
    assert peak < idle + 3 * 32, (idle, peak)
