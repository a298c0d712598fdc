"""The site scenario's pods run as processes (tests/cluster/podrunner.py): fixtures shared by
test_telemetry.py (metrics) and test_ingress.py (requests through Traefik)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "cluster"))
from podrunner import Pods, answers, kubectl, running_pod, wait_until

APP = "taskplaner"


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    running = Pods(tmp_path_factory.mktemp("pods"))
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def taskplaner(pods: Pods) -> dict[str, Any]:
    """The app's pod, run: TaskPlaner as the chart starts it (the venv's `taskplaner`, which the
    image's entrypoint is), on its pod's address, data in the pod's volume folder."""
    deployment = json.loads(kubectl("get", "deployment", APP, "-n", APP, "-o", "json"))
    pod = wait_until(
        "TaskPlaner pod", lambda: running_pod(APP, deployment["spec"]["selector"]["matchLabels"])
    )
    program = Path(sys.executable).with_name("taskplaner")
    process = pods.start(APP, pod, "taskplaner", program)
    url = f"http://{pod['status']['podIP']}:8080"

    wait_until("ready TaskPlaner", lambda: answers(process, f"{url}/readyz", pods.log(pod, "taskplaner")))
    return {"pod": pod, "process": process, "url": url}
