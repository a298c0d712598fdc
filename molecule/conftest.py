"""Helpers shared by every scenario's testinfra tests: re-run the scenario's converge playbook
with extra arguments (check mode, bad input) and read its recap."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parent.parent

Converge = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def converge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Converge:
    scenario = Path(request.path).resolve().parent.parent
    # localhost in the group site.yml's plays target, as in molecule's own inventory, with the
    # scenario's group_vars (the site scenario keeps its settings there) next to it
    folder = tmp_path_factory.mktemp("inventory")
    inventory = folder / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"k3s_server": {"hosts": {"localhost": {}}}}}}))
    if (scenario / "group_vars").is_dir():
        (folder / "group_vars").symlink_to(scenario / "group_vars")

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ansible-playbook",
                "-i",
                str(inventory),
                "-c",
                "local",
                str(scenario / "converge.yml"),
                "-e",
                "ansible_python_interpreter=" + os.environ.get("MOLECULE_PYTHON", "python3"),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            check=False,
            cwd=PROJECT,
            env={
                **os.environ,
                "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            },
        )

    return run


def extra_vars(**values: object) -> tuple[str, str]:
    return "-e", json.dumps(values)


@pytest.fixture
def check_mode_changes(converge: Converge) -> Callable[[], str]:
    """Runs converge with --check --diff and returns its output after asserting it succeeded."""

    def run() -> str:
        result = converge("--check", "--diff")
        assert result.returncode == 0, result.stdout[-3000:]
        return result.stdout

    return run


class Cluster:
    """Reads what a role left in the local test cluster, through kubectl and helm."""

    @staticmethod
    def _json(*argv: str) -> Any:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Any:
        ns = ["-n", namespace] if namespace else []
        return self._json("kubectl", "get", kind, name, *ns, "-o", "json")

    def values(self, release: str, namespace: str) -> Any:
        return self._json("helm", "get", "values", release, "-n", namespace, "-o", "json")

    def pod_resources(self, namespace: str) -> list[dict[str, Any]]:
        pods = self._json("kubectl", "get", "pods", "-n", namespace, "-o", "json")["items"]
        return [c.get("resources", {}) for pod in pods for c in pod["spec"]["containers"]]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster()
