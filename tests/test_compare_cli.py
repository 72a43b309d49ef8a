"""`inspector compare` as a user runs it: two real files in different sizes and modes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    a = tmp_path / "a.png"
    Image.fromarray(base).convert("RGBA").save(a)
    b = tmp_path / "b.jpg"
    Image.fromarray(base).convert("L").resize((60, 45)).save(b, quality=90)
    return a, b


def test_compare_prints_one_json_object_with_the_four_distances(pair, capsys):
    a, b = pair
    assert main(["compare", str(a), str(b), "--size", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("l2", "tiled_l2", "ssim", "calibrated_l2"):
        assert isinstance(out[key], float)
    assert 0 < out["l2"] <= out["tiled_l2"] <= 1


def test_compare_writes_a_readable_heatmap_sheet(pair, tmp_path, capsys):
    a, b = pair
    sheet = tmp_path / "sheet.png"
    assert main(["compare", str(a), str(b), "--heatmap", str(sheet)]) == 0
    with Image.open(sheet) as im:
        assert im.width > 3 * im.height / 2  # side by side
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 100  # not blank
    assert "tiled l2" in capsys.readouterr().out


def test_compare_of_a_file_that_is_not_an_image_exits_2_with_one_line(tmp_path, pair):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "inspector", "compare", str(pair[0]), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an image" in lines[0] and "Traceback" not in proc.stderr


def test_bad_usage_exits_2(pair, tmp_path):
    assert main(["compare", str(pair[0])]) == 2
    assert main(["compare", str(pair[0]), str(pair[1]), "--size", "2"]) == 2
    assert main(["compare", str(pair[0]), str(pair[1]), "--heatmap", str(tmp_path / "x.jpg")]) == 2
    assert not (tmp_path / "x.jpg").exists()


def test_help_lists_the_commands():
    proc = subprocess.run([sys.executable, "-m", "inspector", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "compare" in proc.stdout
