"""docs/python-api.md's examples run as they are written, and the API's names load lazily."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "python-api.md"
PHOTOS = REPO / "tests" / "data" / "photos"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_doc_has_its_three_examples_and_the_first_fits_in_ten_lines():
    found = blocks()
    assert len(found) == 3
    assert len(found[0].strip().splitlines()) <= 10


def test_classify_and_run_example_prints_labels_and_a_summary():
    done = run(blocks()[0], REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "espresso" in lines[0]  # the top category of the coffee photo, by the embedded model
    assert re.fullmatch(r"90 frames, \d+ label changes", lines[-1])
    assert len(lines) >= 3  # at least one label change printed by on_change


def test_teach_example_writes_a_model_with_the_folders_labels(tmp_path):
    for label, names in {"animal": ("baboon", "chelsea", "squirrel_cls", "chicky_512"),
                         "thing": ("coffee", "orange")}.items():
        folder = tmp_path / "photos" / label
        folder.mkdir(parents=True)
        for name in names:
            image = cv2.imread(str(PHOTOS / f"{name}.jpg"))
            shutil.copy(PHOTOS / f"{name}.jpg", folder / f"{name}.jpg")
            cv2.imwrite(str(folder / f"{name}-mirror.jpg"), cv2.flip(image, 1))
    done = run(blocks()[1], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "('animal', 'thing')" in done.stdout
    assert done.stdout.splitlines()[-1] == "['animal', 'thing']"
    assert (tmp_path / "shelf.onnx").is_file()


def test_a_mistake_is_one_line(tmp_path):
    done = run(blocks()[2], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1 and "no-such-file.onnx" in done.stdout


def test_import_edge_loads_no_part_of_the_package_until_a_name_is_used():
    code = ("import sys, edge; before = sorted(m for m in sys.modules if m.startswith('edge.'));"
            "edge.RunOptions; after = 'edge.loop.options' in sys.modules; print(before, after)")
    done = run(code, REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] True"
