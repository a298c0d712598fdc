"""Molecule's own output: a newcomer reading `make test` sees no false alarm."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_scenario_starts_without_a_critical_line():
    # Molecule reads molecule/default/molecule.yml first and printed a red CRITICAL "glob failed"
    # line before every scenario when it was missing
    venv_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["molecule", "syntax", "-s", "k3s_metrics"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode == 0, output[-3000:]
    assert "syntax: Executed: Successful" in output
    assert "CRITICAL" not in output and "glob failed" not in output, output[:2000]
