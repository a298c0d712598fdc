"""A fuzzer that hunts for server errors the way a hostile client finds them: raw requests to
every route of the OpenAPI document (and the UI's), as a stranger, with a token, and with a
session, carrying foreign bytes in headers, deep or huge JSON, integer edges, lone surrogates
and odd multipart bodies. Every answer must be below 500, and every API error JSON.

Schemathesis (test_openapi.py) explores the documented shapes; this explores what the
document does not describe. Bounded: ``EXAMPLES`` requests, a few seconds."""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    create_item,
    every_route,
    image_bytes,
    make_settings,
    raw_request,
    start_server,
    stop_server,
)

EXAMPLES = int(os.environ.get("TASKPLANER_FUZZ_EXAMPLES", "600"))  # a longer hunt: 6000
@pytest.fixture(scope="module")
def target(tmp_path_factory):
    running = start_server(make_settings(tmp_path_factory.mktemp("fuzz"), login_max_failures=1000))
    client = running.login()
    item = create_item(client, running, title="seed", tags=["seed", "a/b"])
    client.post(running.url(f"/api/v1/items/{item['id']}/attachments"),
                files={"file": ("a.png", image_bytes("PNG"), "image/png")})
    token = running.services.auth.create_token("fuzz")["token"]
    credentials = {
        "stranger": [],
        "token": [f"Authorization: Bearer {token}".encode()],
        "session": [f"Cookie: tp_session={client.cookies.get('tp_session')}".encode(),
                    f"X-CSRF-Token: {client.headers['X-CSRF-Token']}".encode()],
        "session without csrf": [f"Cookie: tp_session={client.cookies.get('tp_session')}".encode()],
    }
    yield running, credentials
    stop_server(running)


INT_EDGES = st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**30, -(10**30)])
header_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
text = st.text(max_size=30)
path_value = st.one_of(
    INT_EDGES.map(str), st.integers().map(str), text.map(lambda t: urllib.parse.quote(t, safe="")),
    st.binary(max_size=12).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
    st.just("0" * 64), st.just("%2F"), st.just("seed"), st.just("a%2Fb"),
)
cursor = st.one_of(
    INT_EDGES.map(lambda n: base64.urlsafe_b64encode(str(n).encode()).decode()),
    st.integers(min_value=4300, max_value=5000).map(
        lambda n: base64.urlsafe_b64encode(b"9" * n).decode()),
    st.binary(max_size=20).map(lambda b: urllib.parse.quote_from_bytes(b)),
    text.map(urllib.parse.quote),
)
query_params = st.dictionaries(
    st.sampled_from(["q", "cursor", "limit", "type", "status", "tag", "view"]),
    st.one_of(cursor, INT_EDGES.map(str), text.map(urllib.parse.quote),
              st.binary(max_size=20).map(lambda b: urllib.parse.quote_from_bytes(b)),
              st.just(urllib.parse.quote(" OR ".join(f"{c}*" for c in "abcdefghijklmnop")))),
    max_size=3,
)
hostile_json = st.one_of(
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=4301, max_value=6000).map(lambda n: '{"priority": ' + "9" * n + "}"),
    st.sampled_from(['{"title": "\\ud800"}', '{"\\udfff": 1}', '{"title": NaN}', "[Infinity]",
                     '{"title": "x", "tags": 5}', '{"tags": [[[]]]}', '{"name": {"a": 1}}',
                     '{"password": null}', '{"markdown": 5}', "null", '"x"', "{}"]),
    st.recursive(
        st.one_of(st.none(), st.booleans(), INT_EDGES, st.floats(allow_nan=False), text),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(st.sampled_from(
                                    ["title", "body", "type", "status", "due", "priority", "tags",
                                     "name", "password", "markdown", "x"]), inner, max_size=5)),
        max_leaves=12,
    ).map(json.dumps),
).map(str.encode)


@st.composite
def multipart(draw: st.DrawFn) -> tuple[bytes, bytes]:
    boundary = draw(st.sampled_from([b"b", b"x" * 70, b"\xff", b""]))
    charset = draw(st.sampled_from([b"", b"; charset=nope", b"; charset=utf-8", b"; charset=\xff"]))
    name = draw(st.sampled_from([b"file", b"\xff", b"", b"other"]))
    filename = draw(st.binary(max_size=20).map(lambda b: b.replace(b'"', b"")))
    content = draw(st.one_of(st.binary(max_size=200), st.just(image_bytes("PNG", (4, 4)))))
    part_headers = draw(st.sampled_from([b"", b"Content-Type: image/png; charset=nope\r\n",
                                         b"Content-Transfer-Encoding: base64\r\n", b"X: \xff\r\n"]))
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name
            + b"\"; filename=\"" + filename + b"\"\r\n" + part_headers + b"\r\n" + content
            + b"\r\n--" + boundary + b"--\r\n")
    if draw(st.booleans()):
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]  # cut short
    return b"multipart/form-data; boundary=" + boundary + charset, body


body_and_type = st.one_of(
    st.just((b"", b"")),
    hostile_json.map(lambda b: (b"application/json", b)),
    st.binary(max_size=300).map(lambda b: (b"application/json", b)),
    st.binary(max_size=300).map(lambda b: (b"application/gzip", b)),
    multipart(),
    st.tuples(header_bytes, st.binary(max_size=50)),
)
extra_headers = st.lists(
    st.tuples(st.sampled_from([b"Authorization", b"Cookie", b"X-CSRF-Token", b"If-None-Match",
                               b"X-Request-ID", b"Accept", b"X-Forwarded-For", b"Range"]),
              header_bytes),
    max_size=3,
)


def test_no_request_makes_a_server_error(target):
    running, credentials = target
    answered: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def hunt(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from(every_route()), label="route")
        for param in ("{id}", "{name}", "{digest}"):
            if param in path:
                path = path.replace(param, data.draw(path_value, label=param))
        params = data.draw(query_params, label="query")
        if params:
            path += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        who = data.draw(st.sampled_from(sorted(credentials)), label="who")
        ctype, body = data.draw(body_and_type, label="body")
        headers = [f"{method} {path} HTTP/1.1".encode(), b"Host: fuzz", *credentials[who]]
        headers += [name + b": " + value for name, value in data.draw(extra_headers, label="headers")]
        if ctype:
            headers.append(b"Content-Type: " + ctype)
        if body or method in ("POST", "PATCH", "PUT"):
            headers.append(f"Content-Length: {len(body)}".encode())
        res = raw_request(running, b"\r\n".join(headers), body)
        answered[res.status // 100 * 100] += 1
        assert res.status < 500, (method, path, who, res.status, res.body[:300])
        if res.status >= 400 and (path.startswith(("/api/", "/ui/", "/healthz", "/metrics"))):
            assert "error" in res.json(), (method, path, res.body[:200])

    hunt()
    # the hunt reached the app's work, not only its refusals
    assert answered[200] >= EXAMPLES // 50 and answered[400] >= EXAMPLES // 4, answered
