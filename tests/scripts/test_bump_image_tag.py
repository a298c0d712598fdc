"""scripts/bump_image_tag.py on the real chart values and on tricky files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/bump_image_tag.py"


def run(path: Path, tag: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(path), tag], capture_output=True, text=True)


def test_changes_only_the_tag_of_the_real_chart_values(tmp_path):
    values = tmp_path / "values.yaml"
    original = (ROOT / "app/chart/values.yaml").read_text()
    values.write_text(original)
    assert run(values, "3f9c2ab").returncode == 0
    changed = values.read_text()
    diff = [(a, b) for a, b in zip(original.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and diff[0][1].strip() == 'tag: "3f9c2ab"'
    assert yaml.safe_load(changed)["image"]["tag"] == "3f9c2ab"


def test_second_bump_to_the_same_tag_reports_unchanged(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text('image:\n  repository: r\n  tag: "1.0"\n')
    assert run(values, "1.0").returncode == 3


def test_other_tag_keys_and_comments_are_left_alone(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(
        "# header\nsidecar:\n  tag: keep-me\nimage:\n  # the app\n  repository: r  # where\n"
        "  tag: old   # bumped by CI\n  nested:\n    tag: keep-too\nafter: 1\n"
    )
    assert run(values, "v2.0.1").returncode == 0
    text = values.read_text()
    assert '  tag: "v2.0.1"   # bumped by CI\n' in text
    data = yaml.safe_load(text)
    assert data["sidecar"]["tag"] == "keep-me" and data["image"]["nested"]["tag"] == "keep-too"
    assert text.startswith("# header\n") and "# the app" in text


@pytest.mark.parametrize("tag", ["", "-x", "a b", "x" * 129, "tag:colon", "$(rm -rf /)"])
def test_refuses_tags_docker_would_refuse(tmp_path, tag):
    values = tmp_path / "values.yaml"
    values.write_text('image:\n  tag: "1"\n')
    result = run(values, tag)
    assert result.returncode == 2 and "not a valid image tag" in result.stderr
    assert values.read_text() == 'image:\n  tag: "1"\n'


def test_a_file_without_image_tag_is_an_error_and_untouched(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("image:\n  repository: r\nother:\n  tag: x\n")
    result = run(values, "1.2")
    assert result.returncode == 2 and "no image.tag" in result.stderr
    assert values.read_text() == "image:\n  repository: r\nother:\n  tag: x\n"
