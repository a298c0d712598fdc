"""Keep each role's meta/argument_specs.yml in step with its defaults/main.yml.

The comment block above a variable in defaults/main.yml is its description (a block applies to
the variables that follow it until the next comment). Types come from the default values; names
listed in SECRET_WORDS are marked no_log. The variable table in each role's README (the table
headed `| name | default | meaning |`) is generated from the same source. `--check` fails when a
spec or a table is out of date (lint runs that); without it both are rewritten.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TYPES = {bool: "bool", int: "int", float: "float", dict: "dict", list: "list", str: "str"}
SECRET_WORDS = ("password", "secret", "token")


def described_defaults(role: Path) -> list[tuple[str, Any, str]]:
    text = (role / "defaults/main.yml").read_text()
    values = yaml.safe_load(text) or {}
    descriptions: dict[str, str] = {}
    comment: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.startswith("#"):
            if not comment:
                current = ""
            comment.append(line[1:].strip())
            continue
        match = re.match(r"^([a-z_][a-z0-9_]*):", line)
        if match:
            if comment:
                current, comment = " ".join(comment), []
            descriptions[match.group(1)] = current
        elif not line.strip():
            comment = []
    return [(name, value, descriptions.get(name, "")) for name, value in values.items()]


def spec_for(role: Path) -> dict[str, Any]:
    meta = role / "meta/argument_specs.yml"
    old = yaml.safe_load(meta.read_text()) if meta.exists() else {}
    short = old.get("argument_specs", {}).get("main", {}).get("short_description", role.name)
    options: dict[str, Any] = {}
    for name, value, description in described_defaults(role):
        option: dict[str, Any] = {"type": TYPES[type(value)], "description": description or name}
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            option["elements"] = "str"
        if any(word in name for word in SECRET_WORDS) and isinstance(value, str):
            option["no_log"] = True
        options[name] = option
    return {"argument_specs": {"main": {"short_description": short, "options": options}}}


def render(spec: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(spec, sort_keys=False, width=110)


def table(role: Path) -> str:
    rows = ["| name | default | meaning |", "|---|---|---|"]
    for name, value, description in described_defaults(role):
        shown = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        if len(shown) > 60:
            shown = "see defaults/main.yml"
        rows.append(f"| `{name}` | `{shown}` | {description} |")
    return "\n".join(rows)


def readme_with_table(role: Path) -> str | None:
    readme = role / "README.md"
    if not readme.exists():
        return None
    lines = readme.read_text().splitlines(keepends=True)
    header = "| name | default | meaning |"
    if not any(line.startswith(header) for line in lines):
        return None
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[:start]) + table(role) + "\n" + "".join(lines[end:])


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for role in sorted((ROOT / "roles").iterdir()):
        if not (role / "defaults/main.yml").exists():
            continue
        outputs = [(role / "meta/argument_specs.yml", render(spec_for(role)))]
        readme = readme_with_table(role)
        if readme is not None:
            outputs.append((role / "README.md", readme))
        for path, wanted in outputs:
            if path.exists() and path.read_text() == wanted:
                continue
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(wanted)
    if check and stale:
        print("out of date (run: .venv/bin/python scripts/role_specs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
