"""The local test cluster, started once per pytest session by tests/cluster/cluster.sh."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent


def _exports(text: str) -> dict[str, str]:
    env = dict(os.environ)
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


@pytest.fixture(scope="session")
def cluster_env() -> Iterator[dict[str, str]]:
    """The cluster scripts/test.sh started for the whole run, or one of our own."""
    if os.environ.get("TASKPLANER_CLUSTER_SHARED") == "1":
        shared = subprocess.run(
            [str(HERE / "cluster.sh"), "env"], capture_output=True, text=True, timeout=30, check=True
        )
        yield _exports(shared.stdout)
        return
    up = subprocess.run([str(HERE / "cluster.sh"), "up"], capture_output=True, text=True, timeout=1800)
    if up.returncode != 0:
        subprocess.run([str(HERE / "cluster.sh"), "down"], timeout=120)
        pytest.fail(f"cluster did not start:\n{up.stderr[-4000:]}")
    try:
        yield _exports(up.stdout)
    finally:
        subprocess.run([str(HERE / "cluster.sh"), "down"], timeout=120)


def run(
    env: dict[str, str], *args: str, input: str | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), env=env, input=input, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stderr}"
    return result


def chart_archive(env: dict[str, str], role: str) -> Path:
    """The archive of the upstream chart a role pins, in the test cluster's chart cache."""
    defaults = yaml.safe_load((HERE.parent.parent / "roles" / role / "defaults/main.yml").read_text())
    name = f"{defaults[role + '_chart_ref']}-{defaults[role + '_chart_version']}.tgz"
    return Path(env["TASKPLANER_CHART_CACHE"]) / name


def apply_chart_crds(env: dict[str, str], role: str) -> None:
    """The CRDs the real chart a role pins brings, applied as the roles apply them."""
    crds = run(env, "helm", "show", "crds", str(chart_archive(env, role))).stdout
    assert "kind: CustomResourceDefinition" in crds, role
    applied = run(
        env, "kubectl", "apply", "--server-side", "--force-conflicts", "-o", "name", "-f", "-", input=crds
    )
    # a new kind is served only once its CRD is Established (a dry run right after would not find it)
    run(env, "kubectl", "wait", "--for=condition=Established", "--timeout=60s", *applied.stdout.split())
