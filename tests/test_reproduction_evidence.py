"""Reproduction as evidence (issue 17, point 5): reproducing a finding puts the outcome on the record, the report
lists it, and the pixel hash is one anyone can recompute: sha256 of the raw RGB bytes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from test_casebook import make_finding

from inspector.casebook import Casebook
from inspector.cli import main
from inspector.findings import Finding
from inspector.provenance import PIXELS_RULE, read_provenance


def raw_rgb_sha256(path) -> str:
    """The pixel hash as an expert would recompute it, with nothing of the inspector's."""
    return hashlib.sha256(np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_finding(tmp_path_factory):
    """One demo generation, as `inspector generate` wrote it, recorded as a finding."""
    folder = tmp_path_factory.mktemp("reproduce")
    assert main(["generate", "a red barn", "--n", "1", "--seed", "4", "--device", "cpu", "--out",
                 str(folder / "gen")]) == 0
    png = folder / "gen" / "seed_00000004.png"
    record = read_provenance(png)
    path = folder / "case.db"
    with Casebook.open(path) as book:
        book.record(Finding(prompt=record["prompt"], seed=4, image_png=png.read_bytes(), provenance=record))
    return path, png, record


@pytest.mark.slow
def test_a_new_record_carries_the_raw_rgb_pixel_hash_and_names_its_rule(demo_finding):
    _, png, record = demo_finding
    assert record["pixels_sha256_rule"] == PIXELS_RULE
    assert record["pixels_sha256"] == raw_rgb_sha256(png)


@pytest.mark.slow
def test_reproducing_a_finding_records_when_where_and_how_close_and_the_report_lists_it(demo_finding, tmp_path,
                                                                                        capsys):
    path, png, _ = demo_finding
    assert main(["casebook", "reproduce", str(path), "1", "--reviewer", "ana", "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["match"] is True and outcome["max_abs_diff"] == 0
    assert outcome["pixels_sha256"] == outcome["stored_pixels_sha256"] == raw_rgb_sha256(png)
    assert outcome["machine"]["hostname"] and outcome["machine"]["platform"]
    assert {"torch", "diffusers", "inspector"} <= set(outcome["versions"])
    with Casebook.open(path, readonly=True) as book:
        [(event, recorded)] = book.reproductions(1)
        assert event.reviewer == "ana" and event.hash == outcome["event_hash"]
        assert recorded["max_abs_diff"] == 0 and book.get(1).label == "unlabeled"  # the label is untouched
        assert book.verify().ok
    assert main(["casebook", "export", str(path), "--format", "html", "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index("<h3>Reproductions</h3>"):]
    assert "identical pixels (match)" in section and outcome["pixels_sha256"] in section
    assert "raw RGB bytes" in page  # the report says how the pixel hash is made


def test_a_finding_without_a_record_cannot_be_reproduced_and_nothing_is_recorded(tmp_path, capsys):
    path = tmp_path / "case.db"
    with Casebook.open(path) as book:
        book.record(make_finding(1))  # a hand-made record: no provenance chunk in its PNG
        before = book.chain_head()
    assert main(["casebook", "reproduce", str(path), "1"]) == 2
    assert "provenance" in capsys.readouterr().err
    assert main(["casebook", "reproduce", str(path), "7"]) == 2
    assert "no finding 7" in capsys.readouterr().err
    with Casebook.open(path, readonly=True) as book:
        assert book.chain_head() == before
