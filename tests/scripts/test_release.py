"""scripts/release.py as the pipeline runs it, on real git repositories: what to build after a
cancelled run, and the tag commit pushed through a concurrent push."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@invalid",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def release(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/release.py"), *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def commit(work: Path, path: str, text: str, message: str) -> str:
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-qm", message)
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A bare origin and a clone of it holding the app, its chart (the real values) and docs."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(work))
    (work / "app/chart").mkdir(parents=True)
    shutil.copy(ROOT / "app/chart/values.yaml", work / "app/chart/values.yaml")
    commit(work, "app/main.py", "print(1)\n", "first app")
    return origin, work


def plan(work: Path) -> dict[str, str]:
    result = release(work, "plan")
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.split())


def test_a_docs_push_after_a_cancelled_app_run_still_builds_the_app(repo):
    _, work = repo
    app_change = commit(work, "app/main.py", "print(2)\n", "A: app")
    commit(work, "README.md", "docs\n", "B: docs")  # Gitea cancels A's run; only B's runs
    assert plan(work) == {"build": "true", "tag": app_change[:12]}


def test_once_the_tag_is_deployed_a_docs_push_builds_nothing(repo):
    _, work = repo
    app_change = commit(work, "app/main.py", "print(2)\n", "A: app")
    assert release(work, "publish", app_change[:12]).returncode == 0
    git(work, "checkout", "-q", "--detach", "origin/main")
    git(work, "pull", "-q", "origin", "main")
    commit(work, "README.md", "docs\n", "B: docs")
    assert plan(work) == {"build": "false", "tag": app_change[:12]}
    # a chart-only change is not an app change either
    commit(work, "app/chart/Chart.yaml", "name: x\n", "C: chart")
    assert plan(work)["build"] == "false"


def test_publish_retries_through_a_concurrent_push_and_keeps_it(repo, tmp_path):
    origin, work = repo
    app_change = commit(work, "app/main.py", "print(2)\n", "A: app")
    # someone pushes a docs commit between our fetch and our push: the hook moves main to it
    # and refuses our first push, as a lost race does
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "NOTES.md").write_text("concurrent\n")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "concurrent docs")
    git(other, "push", "-q", "origin", "HEAD:refs/heads/concurrent")
    hook = origin / "hooks/pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "[ -e raced ] && exit 0\n"
        "touch raced && env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main refs/heads/concurrent\n"
        "echo 'rejected: main moved' >&2; exit 1\n"
    )
    hook.chmod(0o755)
    result = release(work, "publish", app_change[:12])
    assert result.returncode == 0, result.stderr
    assert "push 1 of 5 refused (a concurrent push?)" in result.stderr
    log = git(origin, "log", "--format=%s", "main").splitlines()
    assert log[:2] == [f"Deploy image {app_change[:12]} [skip ci]", "concurrent docs"]
    values = git(origin, "show", "main:app/chart/values.yaml")
    assert f'tag: "{app_change[:12]}"' in values


def test_publish_leaves_a_newer_app_change_to_its_own_run(repo):
    _, work = repo
    older = commit(work, "app/main.py", "print(2)\n", "A: app")
    commit(work, "app/main.py", "print(3)\n", "B: newer app")
    result = release(work, "publish", older[:12])
    assert result.returncode == 0, result.stderr
    assert "has a newer app" in result.stdout
    assert "Deploy image" not in git(work, "log", "--format=%s", "origin/main")


def test_the_pipeline_runs_these_decisions_and_tests_in_debian():
    workflow = yaml.safe_load((ROOT / ".gitea/workflows/build.yaml").read_text())
    assert workflow["jobs"]["test"]["container"]["image"].startswith("debian:")
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["image"]["steps"])
    assert "scripts/release.py plan" in runs and "scripts/release.py publish" in runs
    assert "event.before" not in (ROOT / ".gitea/workflows/build.yaml").read_text()
    # the image is built as make image and the image tests build it, by scripts/image.sh
    assert 'scripts/image.sh build "$image:$TAG"' in runs and "docker build" not in runs
    assert "TASKPLANER_IMAGE_ENGINE=docker" in runs  # pushed by docker, so built by it
