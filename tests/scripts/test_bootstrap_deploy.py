"""`make deploy`'s bootstrap on a host: the venv with Ansible and its collections, and nothing of
the test suite (no Debian packages, no Go builds, no test tools)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_deploy_bootstraps_only_what_the_playbook_needs(tmp_path):
    assert re.search(r"^deploy:.*\n\tscripts/bootstrap\.sh deploy$", (ROOT / "Makefile").read_text(), re.M)
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts/bootstrap.sh", project / "scripts")
    shutil.copy(ROOT / "constraints.txt", project)
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    # a host's package manager and Go toolchain, recording any call (none is expected)
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("apt-get", "dpkg-query", "sudo", "go"):
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 1\n')
        (stubs / tool).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "PYTHON": shutil.which("python3") or "python3",
    }
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        ["bash", "scripts/bootstrap.sh", "deploy"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not calls.exists(), calls.read_text()
    venv = project / ".venv/bin"
    version = subprocess.run([venv / "ansible-playbook", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "core 2." in version.stdout
    collections = subprocess.run(
        [venv / "ansible-galaxy", "collection", "list"], capture_output=True, text=True
    )
    for collection in ("kubernetes.core", "ansible.utils", "ansible.posix"):
        assert collection in collections.stdout, collection
    imports = subprocess.run(
        [venv / "python", "-c", "import kubernetes, bcrypt, netaddr"], capture_output=True
    )
    assert imports.returncode == 0, imports.stderr
    for test_tool in ("pytest", "molecule", "ansible-lint", "playwright"):
        assert not (venv / test_tool).exists(), test_tool
