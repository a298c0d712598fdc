"""The release decisions of the Gitea pipeline, as a script it can run and tests can drive.

    python3 scripts/release.py plan            → prints `build=true|false` and `tag=<tag>`
    python3 scripts/release.py publish <tag>   → sets the tag in the chart on the branch's tip, pushes

The image tag is the commit that last changed the app (app/, not app/chart/): two commits with
the same app have the same tag. So `plan` decides from what is deployed, the tag in the chart's
values, not from the push's own diff: when Gitea cancels the run of an app change because a docs
change came right after it, the docs change's run still finds the app undeployed and builds it.

`publish` commits on top of the branch as it is now and retries when a concurrent push wins; it
stops without pushing when the branch already deploys this tag, or when a newer app change
landed meanwhile (that change's own run deploys it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml
from bump_image_tag import bump

VALUES = "app/chart/values.yaml"
APP = ["app", ":(exclude)app/chart"]
TAG_LENGTH = 12


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def app_tag(commit: str = "HEAD") -> str:
    """The tag of the image holding the app as it is at `commit`."""
    last_change = git("log", "-1", "--format=%H", commit, "--", *APP)
    if not last_change:
        raise SystemExit("release: no commit touches app/")
    return last_change[:TAG_LENGTH]


def deployed_tag(commit: str = "HEAD") -> str:
    return str(yaml.safe_load(git("show", f"{commit}:{VALUES}"))["image"]["tag"])


def plan() -> int:
    tag = app_tag()
    print(f"build={'false' if deployed_tag() == tag else 'true'}")
    print(f"tag={tag}")
    return 0


def publish(tag: str, remote: str = "origin", branch: str = "main", attempts: int = 5) -> int:
    for attempt in range(1, attempts + 1):
        git("fetch", "--quiet", remote, branch)
        tip = git("rev-parse", "FETCH_HEAD")
        newest = app_tag(tip)
        if newest != tag:
            print(f"release: {branch} has a newer app ({newest}); its own run deploys it")
            return 0
        if deployed_tag(tip) == tag:
            print(f"release: {branch} already deploys {tag}")
            return 0
        git("checkout", "--quiet", "--detach", tip)
        path = Path(VALUES)
        path.write_text(bump(path.read_text(), tag))
        git("commit", "--quiet", "-am", f"Deploy image {tag} [skip ci]")
        pushed = subprocess.run(["git", "push", "--quiet", remote, f"HEAD:refs/heads/{branch}"], check=False)
        if pushed.returncode == 0:
            print(f"release: {branch} now deploys {tag}")
            return 0
        print(f"release: push {attempt} of {attempts} refused (a concurrent push?); again", file=sys.stderr)
        time.sleep(min(2**attempt, 30))
    print(f"release: could not push the tag after {attempts} attempts", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if argv == ["plan"]:
        return plan()
    if len(argv) == 2 and argv[0] == "publish":
        return publish(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
