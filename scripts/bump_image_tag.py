"""Set `image.tag` in a Helm values file, changing nothing else (comments, order, spacing).

    python scripts/bump_image_tag.py app/chart/values.yaml 1a2b3c4

Used by the Gitea pipeline after it pushed a new image; Argo CD deploys the commit it makes.
Exit status: 0 changed, 3 already at that tag, 2 bad input (a tag Docker would refuse, no
`image.tag` in the file, or a result that does not parse back to the same values + new tag).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
UNCHANGED = 3


class BumpError(ValueError):
    pass


def bump(text: str, tag: str) -> str:
    if not TAG.match(tag):
        raise BumpError(f"not a valid image tag: {tag!r}")
    lines = text.splitlines(keepends=True)
    in_image, indent, done = False, None, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current = len(line) - len(line.lstrip(" "))
        if current == 0:
            in_image = stripped.startswith("image:")
            indent = None
            continue
        if in_image:
            indent = current if indent is None else indent
            match = re.match(r"^(\s*)tag:(\s*)([^#\n]*?)(\s*#.*)?(\r?\n)?$", line)
            if current == indent and match:
                lead, gap, _, comment, newline = match.groups(default="")
                lines[i] = f'{lead}tag:{gap or " "}"{tag}"{comment}{newline}'
                done = True
                break
    if not done:
        raise BumpError("no image.tag in the values file")
    result = "".join(lines)
    before: dict[str, Any] = yaml.safe_load(text)
    after: dict[str, Any] = yaml.safe_load(result)
    before["image"]["tag"] = tag
    if after != before:
        raise BumpError("the edited file does not parse back to the same values with the new tag")
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, tag = Path(argv[0]), argv[1]
    text = path.read_text()
    try:
        result = bump(text, tag)
    except BumpError as exc:
        print(f"bump_image_tag: {exc}", file=sys.stderr)
        return 2
    if result == text:
        return UNCHANGED
    path.write_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
