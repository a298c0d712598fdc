"""kill -9 during writes and uploads, then restart: integrity checks pass, every acknowledged
write is there, and no referenced blob is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import requests

from conftest import PASSWORD, free_port, image_bytes, serve_process, wait_for

ROUNDS = 3


def hammer(url, acknowledged, stop):
    session = requests.Session()
    try:  # logins take turns (two password checks at once): the kill may come first
        res = session.post(url + "/api/v1/session", json={"password": PASSWORD}, timeout=10)
    except requests.RequestException:
        return
    session.headers["X-CSRF-Token"] = res.json()["csrf_token"]
    n = 0
    while not stop.is_set():
        n += 1
        try:
            res = session.post(url + "/api/v1/items", json={"title": f"crash {n}", "tags": ["c"]}, timeout=10)
            if res.status_code == 201:
                item = res.json()["id"]
                acknowledged.append(("item", item))
                data = image_bytes("PNG", (64, 64), (n % 255, 0, 0))
                res = session.post(
                    url + f"/api/v1/items/{item}/attachments",
                    files={"file": ("x.png", data, "image/png")},
                    timeout=10,
                )
                if res.status_code == 201:
                    acknowledged.append(("attachment", res.json()["hash"]))
        except requests.RequestException:
            return


def test_kill_9_mid_write_leaves_consistent_data(tmp_path):
    data_dir = tmp_path / "data"
    acknowledged: list[tuple[str, object]] = []
    for round_no in range(ROUNDS):
        port = free_port()
        proc, url = serve_process(data_dir, port)
        stop = threading.Event()
        workers = [threading.Thread(target=hammer, args=(url, acknowledged, stop)) for _ in range(4)]
        for w in workers:
            w.start()
        # kill only once this round has written something, at a varying moment after that
        target = len(acknowledged) + 10
        assert wait_for(lambda t=target: len(acknowledged) >= t, timeout=60), "no writes acknowledged"
        time.sleep(0.05 + 0.13 * round_no)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for w in workers:
            w.join(timeout=15)
    env = {**os.environ, "TASKPLANER_DATA_DIR": str(data_dir)}
    check = subprocess.run(
        [sys.executable, "-m", "taskplaner", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    items = [v for kind, v in acknowledged if kind == "item"]
    blobs = [v for kind, v in acknowledged if kind == "attachment"]
    assert len(items) >= 15 and blobs, "the load did not reach the server"
    proc, url = serve_process(data_dir, free_port())
    try:
        session = requests.Session()
        session.post(url + "/api/v1/session", json={"password": PASSWORD}, timeout=10)
        for item_id in items:
            assert session.get(url + f"/api/v1/items/{item_id}", timeout=10).status_code == 200
        for digest in set(blobs):
            assert session.get(url + f"/api/v1/blobs/{digest}", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
