"""An artist checks generations against her own portfolio: the index is a reference collection, and nothing the
inspector shows (window, command line, casebook report) calls her portfolio training data.

Also here: what names an index (role, source, images, build date, content hash), captions taken from file names
of titled works, sidecar precedence and unreadable sidecars on the terminal, and builds that index nothing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.extraction import suggest_verdict
from inspector.findings import Finding
from inspector.training_index import TrainingIndex, build_index

TITLES = ["Morning Cup", "Harbour at Noon", "Quiet Field", "Red Kite"]
SIZE = 32


def artwork(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC))


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def portfolio(tmp_path_factory) -> Path:
    """Titled works without caption sidecars, as an artist keeps them."""
    folder = tmp_path_factory.mktemp("portfolio")
    for i, title in enumerate(TITLES):
        Image.fromarray(artwork(i)).save(folder / f"{title}.png")
    return folder


@pytest.fixture
def collection(portfolio, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("indexes") / "my-portfolio"
    build_index(portfolio, out, comparison_size=SIZE, workers=1, role="reference")
    return out


def near_copy_of(seed: int) -> np.ndarray:
    """A generation that reproduces a work almost exactly (a little noise)."""
    rng = np.random.default_rng(100 + seed)
    noisy = artwork(seed).astype(np.int16) + rng.integers(-3, 4, (64, 64, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def no_training_word(text: str) -> bool:
    return "training" not in text.lower()


# --- the index records its role and identity --------------------------------------------------------------------


def test_a_portfolio_built_with_role_reference_says_so_on_every_command(portfolio, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("cli") / "portfolio-index"
    assert main(["index", "build", str(portfolio), "--out", str(out), "--role", "reference", "--size", "32",
                 "--workers", "1"]) == 0
    built = capsys.readouterr()
    assert "as a reference index" in built.out
    assert main(["index", "info", str(out)]) == 0
    info = capsys.readouterr()
    assert "role          reference" in info.out and "content hash" in info.out
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"]["role"] == "reference"
    query = tmp_path_factory.mktemp("query") / "generation.png"
    Image.fromarray(near_copy_of(0)).save(query)
    assert main(["index", "query", str(out), str(query), "--k", "2"]) == 0
    text = capsys.readouterr()
    assert "searched reference collection" in text.out and "nearest reference images" in text.out
    for printed in (built.out, built.err, info.out, info.err, text.out, text.err):
        assert no_training_word(printed), printed
    assert main(["index", "query", str(out), str(query), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["index"]["role"] == "reference" and result["index"]["images"] == 4
    assert {n["index_role"] for n in result["neighbours"]} == {"reference"}


def test_the_content_hash_is_the_sha256_over_the_sorted_image_hashes(collection, portfolio):
    import hashlib

    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in portfolio.iterdir())
    expected = hashlib.sha256("".join(d + "\n" for d in digests).encode()).hexdigest()
    with TrainingIndex.open(collection) as index:
        identity = index.identity()
    assert identity["content_hash"] == expected
    assert identity["role"] == "reference" and identity["images"] == 4
    assert identity["source"] == str(portfolio) and identity["built"]
    assert json.loads((collection / "manifest.json").read_text(encoding="utf-8"))["content_hash"] == expected


def test_an_index_built_before_roles_reads_as_training_and_hashes_itself(collection):
    manifest_path = collection / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    expected = manifest.pop("content_hash")
    manifest.pop("role")
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with TrainingIndex.open(collection) as index:
        assert index.role == "training"
        assert index.identity()["content_hash"] == expected


def test_resuming_with_another_role_is_refused(portfolio, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("resume") / "idx"
    build_index(portfolio, out, comparison_size=SIZE, workers=1, role="reference")
    assert main(["index", "build", str(portfolio), "--out", str(out), "--resume", "--role", "training"]) == 2
    assert "is a reference index, not training" in capsys.readouterr().err


# --- captions ---------------------------------------------------------------------------------------------------


def test_titled_works_without_sidecars_are_captioned_with_their_file_names(collection, capsys, tmp_path_factory):
    with TrainingIndex.open(collection) as index:
        [[nearest]] = index.query(near_copy_of(0), k=1)
    assert nearest.caption == "Morning Cup"
    assert nearest.caption_source == "the file name"
    query = tmp_path_factory.mktemp("q") / "gen.png"
    Image.fromarray(near_copy_of(1)).save(query)
    assert main(["index", "query", str(collection), str(query), "--k", "1"]) == 0
    assert "'Harbour at Noon' (caption from the file name)" in capsys.readouterr().out


def test_the_json_sidecar_caption_wins_over_the_txt_one_and_a_broken_sidecar_is_named_on_the_terminal(
        tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("captioned")
    for i in range(3):
        Image.fromarray(artwork(10 + i)).save(folder / f"work_{i}.png")
    (folder / "work_0.json").write_text(json.dumps({"title": "From the JSON", "url": "https://example.org/0"}),
                                        encoding="utf-8")
    (folder / "work_0.txt").write_text("From the text file", encoding="utf-8")
    (folder / "work_1.txt").write_text("Only a text file", encoding="utf-8")
    (folder / "work_2.json").write_text("{not json", encoding="utf-8")
    out = tmp_path_factory.mktemp("idx") / "index"
    assert main(["index", "build", str(folder), "--out", str(out), "--size", "32", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 caption sidecars could not be read" in err and "work_2.png" in err
    with TrainingIndex.open(out) as index:
        by_caption = {n.caption: n for n in index.query(artwork(10), k=3)[0]}
    assert set(by_caption) == {"From the JSON", "Only a text file", "work_2"}  # the broken one: its file name
    assert by_caption["From the JSON"].caption_source == "the .json sidecar's 'title'"
    assert by_caption["From the JSON"].url == "https://example.org/0"
    assert by_caption["Only a text file"].caption_source == "the .txt sidecar"


# --- builds that index nothing ------------------------------------------------------------------------------------


def test_a_folder_of_parquet_metadata_without_images_fails_and_leaves_no_index(tmp_path_factory, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("laion-metadata")
    pq.write_table(pa.table({"url": ["https://example.org/a.jpg"], "TEXT": ["a cat"]}), folder / "part-0.parquet")
    out = tmp_path_factory.mktemp("empty") / "index"
    assert main(["index", "build", str(folder), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "no usable images" in err and "metadata only" in err and "part-0.parquet" in err
    assert not out.exists()


def test_an_interrupted_build_resumed_on_an_emptied_folder_is_never_marked_complete(tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("will-empty")
    (folder / "notes.md").write_text("no images here", encoding="utf-8")
    out = tmp_path_factory.mktemp("resumed") / "index"
    out.mkdir()
    from inspector.training_index.store import new_manifest, write_json_atomic

    manifest = new_manifest(folder, SIZE, {"name": "x", "grid": 4, "dim": 48}, True, None)
    write_json_atomic(out / "manifest.json", manifest)
    assert main(["index", "build", str(folder), "--out", str(out), "--resume", "--workers", "1"]) == 2
    assert "no usable images" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["status"] != "complete"


# --- suggestions, casebook and report ---------------------------------------------------------------------------


def reference_finding(collection: Path) -> Finding:
    with TrainingIndex.open(collection) as index:
        generation = near_copy_of(0)
        neighbours = index.query(generation, k=4)[0]
        identity = index.identity()
    suggestion = suggest_verdict(neighbours)
    return Finding(prompt="morning cup, still life", seed=7, image_png=png_bytes(near_copy_of(0)),
                   provenance={"prompt": "morning cup, still life", "seed": 7, "model": {"source": "demo"}},
                   neighbours=neighbours, suggested_verdict=suggestion.verdict,
                   suggestion_reason=suggestion.reason, index=identity)


def test_the_suggestion_names_a_reference_image(collection):
    finding = reference_finding(collection)
    assert finding.suggested_verdict == "memorized"
    assert finding.suggestion_reason.startswith("near copy of a reference image")


def test_the_casebook_keeps_the_index_and_the_report_never_says_training(collection, tmp_path_factory, capsys):
    from inspector.casebook import Casebook

    folder = tmp_path_factory.mktemp("book")
    with Casebook.open(folder / "artist.db") as book:
        finding_id = book.record(reference_finding(collection))
        stored = book.get(finding_id)
        assert stored.index["role"] == "reference" and stored.index["content_hash"]
        assert {n.index_role for n in stored.neighbours} == {"reference"}
        assert stored.neighbours[0].caption_source == "the file name"
        assert book.indexes_searched() == [stored.index]
    assert main(["casebook", "export", str(folder / "artist.db"), "--format", "html",
                 "--out", str(folder / "report.html")]) == 0
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "What was searched" in page and "reference collection" in page
    assert "near copy of a reference image" in page
    assert no_training_word(page), page[page.lower().index("training") - 200:][:400]
    assert main(["casebook", "export", str(folder / "artist.db"), "--format", "json",
                 "--out", str(folder / "export.json")]) == 0
    exported = json.loads((folder / "export.json").read_text(encoding="utf-8"))["findings"][0]
    assert exported["index"]["role"] == "reference"


# --- the window -------------------------------------------------------------------------------------------------


def visible_text(widget) -> str:
    """Every label's text and every tooltip under ``widget``, as a person could read them."""
    from PySide6.QtWidgets import QLabel, QWidget

    parts = [widget.toolTip()]
    for child in widget.findChildren(QWidget):
        parts.append(child.toolTip())
        if isinstance(child, QLabel):
            parts.append(child.text())
    return "\n".join(parts)


def test_the_comparison_panel_speaks_of_reference_images(qtbot, collection):
    from inspector.gui.comparison import ComparisonPanel
    from inspector.session import Inspected

    finding = reference_finding(collection)
    finding.neighbours[0].url = "https://example.org/morning-cup.jpg"  # as img2dataset would have recorded it
    item = Inspected(position=0, seed=7, image=near_copy_of(0), png=finding.image_png,
                     provenance=finding.provenance, neighbours=finding.neighbours,
                     suggestion=suggest_verdict(finding.neighbours), index=finding.index)
    panel = ComparisonPanel()
    qtbot.addWidget(panel)
    panel.show_generation(item)
    for mode in ("none", "pixel", "tiles", "ssim"):
        panel.show_mode(mode)
        text = visible_text(panel)
        assert no_training_word(text), text
    text = visible_text(panel)
    assert "near copy of a reference image" in text
    assert "in your collection: once" in text
    assert "compared with your reference collection" in text
    assert "“Morning Cup” (from the file name)" in text
    assert "Morning Cup.png\nurl https://example.org/morning-cup.jpg" in text  # the local file, then its url


def test_the_index_picker_shows_the_role(qtbot, collection, tmp_path):
    from PySide6.QtCore import QSettings

    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(index_source=str(collection), casebook_path=str(tmp_path / "book.db"), settings=settings)
    qtbot.addWidget(win)
    try:
        assert win.index_role.text() == "reference collection · 4 images"
        assert "content sha256" in win.index_role.toolTip()
        win.index_box.setCurrentText("demo")
        assert win.index_role.text() == "training set (demo)"
    finally:
        win.hub.shutdown()
