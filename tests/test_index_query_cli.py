"""`inspector index query IMAGE... --index DIR [--json] [--record CASEBOOK]`: is this image in the training set, on
the command line (issue 18, point 4): the four nearest with distances in words, the same fields as JSON, a finding
of kind "query" with --record, and one line with exit 2 for anything that is not an image to search."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from inspector.casebook import Casebook
from inspector.cli import main
from inspector.image_query import QUERY_MAX_BYTES
from inspector.resources import demo_training_dir

TRAINING = demo_training_dir()
COFFEE = TRAINING / "coffee_000.png"
SUBSET = ("coffee_000", "astronaut_000", "camera_000", "chelsea_crop_000", "circles_0000", "squares_0000",
          "triangles_0000")

pytestmark = pytest.mark.skipif(not COFFEE.is_file(), reason="no demo training set")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from inspector.training_index import build_index

    src = tmp_path_factory.mktemp("training")
    for name in SUBSET:
        for suffix in (".png", ".json"):
            shutil.copy(TRAINING / f"{name}{suffix}", src / f"{name}{suffix}")
    out = tmp_path_factory.mktemp("index") / "index"
    build_index(src, out, comparison_size=32, workers=1)
    return out


@pytest.fixture
def jpeg(tmp_path):
    path = tmp_path / "coffee copy.jpg"
    with Image.open(COFFEE) as im:
        im.convert("RGB").resize((160, 160), Image.Resampling.BICUBIC).save(path, quality=80)
    return path


def test_text_names_the_four_nearest_with_distances_in_words(index, jpeg, capsys):
    assert main(["index", "query", str(jpeg), "--index", str(index)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("searched training set")
    assert f"{jpeg}: 160 x 160 px, sha256 {hashlib.sha256(jpeg.read_bytes()).hexdigest()[:16]}" in out
    assert "suggested memorized: near copy of a training image" in out
    ranked = [line for line in lines if line.lstrip()[:3] in ("1. ", "2. ", "3. ", "4. ")]
    assert len(ranked) == 4 and "near copy (threshold 0.15)" in ranked[0]
    assert "not a near copy" in ranked[1]
    assert "coffee_000.png" in out.split("2. ")[0]


def test_json_has_the_same_fields_for_each_image_in_order(index, jpeg, capsys):
    assert main(["index", "query", str(jpeg), str(COFFEE), "--index", str(index), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == [str(jpeg), str(COFFEE)]
    first = rows[0]
    assert first["sha256"] == hashlib.sha256(jpeg.read_bytes()).hexdigest()
    assert (first["width"], first["height"], first["format"]) == (160, 160, "JPEG")
    assert first["suggested_verdict"] == "memorized" and "near copy" in first["suggestion_reason"]
    assert len(first["neighbours"]) == 4 and first["comparison_size"] == 32
    assert Path(first["neighbours"][0]["source"]).name == "coffee_000.png"
    assert first["neighbours"][0]["tiled_l2"] < 0.05
    assert rows[1]["neighbours"][0]["tiled_l2"] == 0.0  # a training file finds itself exactly
    assert "finding_id" not in first  # nothing recorded without --record


def test_the_index_folder_may_still_come_first(index, capsys):
    assert main(["index", "query", str(index), str(COFFEE), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["neighbours"][0]["l2"] == 0.0


def test_record_puts_each_image_in_the_casebook_once_as_a_query(index, jpeg, tmp_path, capsys):
    book = tmp_path / "casebook.db"
    assert main(["index", "query", str(jpeg), "--index", str(index), "--record", str(book)]) == 0
    out = capsys.readouterr().out
    assert f"recorded in {book} as finding #1 (kind query, unlabeled)" in out
    assert main(["index", "query", str(jpeg), "--index", str(index), "--record", str(book), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["finding_id"], row["already_recorded"]) == (1, True)
    with Casebook.open(book, readonly=True) as cb:
        [summary] = cb.findings()
        finding = cb.get(summary.id)
        assert cb.verify().ok
    assert (summary.kind, summary.file_name, summary.label) == ("query", "coffee copy.jpg", "unlabeled")
    assert finding.provenance["file_sha256"] == row["sha256"] and finding.generation_key is None
    assert main(["casebook", "list", str(book)]) == 0
    assert "query image coffee copy.jpg" in capsys.readouterr().out
    report = tmp_path / "report.html"
    assert main(["casebook", "export", str(book), "--format", "html", "--out", str(report)]) == 0
    text = report.read_text(encoding="utf-8")
    assert "Query image coffee copy.jpg" in text and row["sha256"] in text and "(seed 0)" not in text
    # Not a prompt: no "Prompt 1 of 1" section with an empty prompt; the list of findings names the image.
    assert "Prompt 1 of" not in text and '<td class="prompt">query image coffee copy.jpg</td>' in text
    sheet = tmp_path / "report.csv"
    assert main(["casebook", "export", str(book), "--format", "csv", "--out", str(sheet)]) == 0
    import csv

    [cells] = list(csv.DictReader(sheet.open(encoding="utf-8", newline="")))
    assert (cells["kind"], cells["query_file"], cells["seed"], cells["prompt"]) == ("query", "coffee copy.jpg", "", "")
    data = tmp_path / "report.json"
    assert main(["casebook", "export", str(book), "--format", "json", "--out", str(data)]) == 0
    document = json.loads(data.read_text(encoding="utf-8"))
    [record] = document["findings"]
    assert (record["kind"], record["file_name"], record["seed"]) == ("query", "coffee copy.jpg", None)
    assert document["prompts"] == []


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("hello", encoding="utf-8"), "not an image file"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "no such image file"),
    (lambda p: p.open("wb").truncate(QUERY_MAX_BYTES + 1), "too large to search"),  # sparse: no disk used
    (lambda p: Image.new("RGB", (5, 40)).save(p, format="PNG"), "too small to compare"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_recorded(index, tmp_path, capsys, make, words):
    bad = tmp_path / "bad.png"
    make(bad)
    book = tmp_path / "casebook.db"
    assert main(["index", "query", str(COFFEE), str(bad), "--index", str(index), "--record", str(book)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # The command's own lines (another test's background thread in the same process may print too).
    [line] = [line for line in captured.err.splitlines() if line.startswith("inspector")]
    assert line.startswith("inspector: error:") and words in line and "bad.png" in line
    if book.exists():
        with Casebook.open(book, readonly=True) as cb:
            assert cb.findings() == []  # the good image before it was not recorded either


def test_no_index_and_no_image_is_a_usage_line(capsys):
    assert main(["index", "query", str(COFFEE)]) == 2
    assert "--index DIR" in capsys.readouterr().err
