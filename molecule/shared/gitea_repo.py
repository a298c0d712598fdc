"""Pushes to the test Gitea repository Argo CD deploys from, as a user or the pipeline would.

    gitea_repo.py push-chart       app/chart as it is in this checkout
    gitea_repo.py set-tag TAG      the pipeline's step: scripts/bump_image_tag.py, commit, push

Tests import `Repository` for the same operations. Credentials come from the test cluster's
environment (GITEA_URL, GITEA_REPO, GITEA_ADMIN_USER, GITEA_TOKEN)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parents[2]
CHART = "app/chart"


class Repository:
    def __init__(self) -> None:
        url = urlsplit(os.environ["GITEA_URL"])
        auth = f"{os.environ['GITEA_ADMIN_USER']}:{os.environ['GITEA_TOKEN']}"
        self.remote = f"{url.scheme}://{auth}@{url.netloc}/{os.environ['GITEA_REPO']}.git"
        self.work = Path(tempfile.mkdtemp(prefix="gitea-repo-"))
        self.git("clone", "--quiet", self.remote, ".")

    def git(self, *argv: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.test",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.test",
        }
        return subprocess.run(
            ["git", *argv], cwd=self.work, env=env, check=True, capture_output=True, text=True, timeout=60
        ).stdout

    def commit_and_push(self, message: str) -> str:
        """Commits everything changed; returns the new commit's SHA."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        self.git("push", "--quiet", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD").strip()

    def push_chart(self) -> str:
        shutil.rmtree(self.work / CHART, ignore_errors=True)
        shutil.copytree(PROJECT / CHART, self.work / CHART)
        return self.commit_and_push("app/chart from the project")

    def set_tag(self, tag: str) -> str:
        subprocess.run(
            [
                sys.executable,
                str(PROJECT / "scripts/bump_image_tag.py"),
                str(self.work / CHART / "values.yaml"),
                tag,
            ],
            check=True,
            timeout=60,
        )
        return self.commit_and_push(f"deploy {tag}")

    def write(self, relative: str, text: str, message: str) -> str:
        (self.work / relative).write_text(text)
        return self.commit_and_push(message)


if __name__ == "__main__":
    repo = Repository()
    if sys.argv[1:] == ["push-chart"]:
        print(repo.push_chart())
    elif len(sys.argv) == 3 and sys.argv[1] == "set-tag":
        print(repo.set_tag(sys.argv[2]))
    else:
        sys.exit(__doc__)
