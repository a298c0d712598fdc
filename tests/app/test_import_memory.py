"""Every import and restore path is bounded in memory by design: each gets its worst accepted
shape (many members, many rows, one huge row, deep nesting) in a fresh server process, and the
peak (VmHWM) stays within ``BUDGET_MIB`` of the process's size once warm, or the archive is
refused before it is read. The README ("Limits") states the budget; bench/ has the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import archives
import pytest
import requests

from conftest import image_bytes, served_process

BUDGET_MIB = 64
ROWS = 300_000  # the benchmark sends the million rows of the reproduction


def _warm(server) -> float:
    """One small import of each kind, so the modules and caches are loaded; then the size,
    from which the peak counts again."""
    assert server.post(archives.RESTORE, archives.small_restore(), archives.GZIP).status_code == 200
    assert server.post(archives.MARKDOWN, archives.zip_bytes({"a.md": "# a\n"}),
                       archives.ZIP).status_code == 200
    return server.reset_peak()


def peak_of(folder: Path, shape: archives.Shape, rows: int) -> tuple[requests.Response, float, float]:
    """Send the shape's archive to a fresh server: (the answer, warm RSS, peak RSS) in MiB."""
    archive = shape.build(folder, rows)
    with served_process(folder / "data") as server:
        idle = _warm(server)
        with archive.open("rb") as fh:
            res = requests.post(server.url(shape.route), data=fh, timeout=300, headers={
                "Authorization": f"Bearer {server.token}", "Content-Type": shape.content_type})
        return res, idle, server.mib("VmHWM")


@pytest.mark.parametrize("name", list(archives.SHAPES))
def test_an_import_of_any_shape_stays_within_the_budget(tmp_path, name):
    shape = archives.SHAPES[name]
    res, idle, peak = peak_of(tmp_path, shape, ROWS)
    assert res.status_code == shape.status, res.text[:300]
    assert peak - idle < BUDGET_MIB, (name, idle, peak)
    if name.startswith("Markdown zip: the largest"):
        # the first empty file is a note titled by its name; the others are that file again
        assert res.json()["counts"] == {"imported": 2_001, "skipped": 17_999}
    elif shape.status != 200:
        assert "error" in res.json()


def _cli_peak(data: Path, *args: str) -> tuple[int, str, float]:
    """Run a CLI command in a fresh process; its exit code, stderr and peak MiB."""
    script = ("import sys\nfrom taskplaner.cli import main\ncode = main(sys.argv[1:])\n"
              "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
              "print(int(peak.split()[1]) / 1024, file=sys.stderr)\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**os.environ, "TASKPLANER_DATA_DIR": str(data)}, timeout=300)
    *lines, peak = done.stderr.strip().splitlines()
    return done.returncode, "\n".join(lines), float(peak)


def test_a_folder_of_too_many_files_is_refused_and_hidden_folders_are_not_read(tmp_path):
    small = tmp_path / "small"
    (small / ".obsidian").mkdir(parents=True)
    (small / "a.md").write_text("# a\n")
    (small / ".obsidian" / "b.md").write_text("# hidden\n")
    code, _, idle = _cli_peak(tmp_path / "data", "import-markdown", str(small))
    assert code == 0
    big = tmp_path / "big"
    for n in range(21):
        sub = big / f"d{n}"
        sub.mkdir(parents=True)
        for i in range(1_000 if n < 20 else 1):
            (sub / f"{i}.md").write_bytes(b"")
    for i in range(5_000):  # a repository's history is not read at all
        (big / ".git").mkdir(exist_ok=True)
        (big / ".git" / f"{i}").write_bytes(b"")
    code, err, peak = _cli_peak(tmp_path / "data", "import-markdown", str(big))
    assert code == 1 and "more than 20,000 files" in err, err
    assert peak - idle < BUDGET_MIB, (idle, peak)


def test_a_restore_with_an_image_still_works_in_a_fresh_process(tmp_path):
    """The staging file keeps what memory did: a version 2 archive with a blob restores."""
    import hashlib

    img = image_bytes("PNG", (8, 8))
    digest = hashlib.sha256(img).hexdigest()
    row = {"id": 1, "item_id": 1, "hash": digest, "thumb_hash": digest, "filename": "f.png",
           "mime": "image/png", "size": len(img), "width": 8, "height": 8, "created": "c"}
    manifest = json.dumps({"format": "taskplaner-export", "version": 2}).encode()
    archive = archives.tar_file(tmp_path / "ok.tar.gz", [
        ("taskplaner.json", manifest), ("attachments.jsonl", json.dumps(row).encode() + b"\n"),
        (f"blobs/{digest[:2]}/{digest}", img),
        ("items.jsonl", json.dumps(next(archives.item_rows(1))).encode() + b"\n")])
    with served_process(tmp_path / "data") as server:
        res = server.post(archives.RESTORE, archive.read_bytes(), archives.GZIP)
        assert res.status_code == 200, res.text
        assert res.json()["imported"] == {"items": 1, "attachments": 1}
        blob = requests.get(server.url(f"/api/v1/blobs/{digest}"),
                            headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
        assert blob.content == img
    assert not list((tmp_path / "data" / "tmp").glob("restore-*"))
