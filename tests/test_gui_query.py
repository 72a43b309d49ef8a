"""Is this image in the training set? (issue 18, point 4) An image dropped on the window, or pasted, is searched in
the index like a generation: its four nearest with distances and heatmaps, nearest first; Ctrl+R records it as a
finding of kind "query" with the sha256 of the file; a file that is not an image is one message and nothing is
recorded. Offscreen, on a small index of demo training images (the whole demo index in the slow test)."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from inspector.casebook import Casebook  # noqa: E402
from inspector.resources import demo_training_dir  # noqa: E402

TRAINING = demo_training_dir()
COFFEE = TRAINING / "coffee_000.png"
#: A few demo training images of each kind, the coffee among them.
SUBSET = ("coffee_000", "astronaut_000", "camera_000", "chelsea_crop_000", "circles_0000", "squares_0000",
          "triangles_0000", "circles_0001", "squares_0001", "triangles_0001")

needs_demo_training = pytest.mark.skipif(not COFFEE.is_file(), reason="no demo training set")
pytestmark = needs_demo_training


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """An index of ten demo training images at the demo's 32 px (built in about a second)."""
    from inspector.training_index import build_index

    src = tmp_path_factory.mktemp("training")
    for name in SUBSET:
        for suffix in (".png", ".json"):
            if (TRAINING / f"{name}{suffix}").exists():
                shutil.copy(TRAINING / f"{name}{suffix}", src / f"{name}{suffix}")
    out = tmp_path_factory.mktemp("index") / "index"
    build_index(src, out, comparison_size=32, workers=1)
    return out


@pytest.fixture
def window(qtbot, tmp_path, small_index, monkeypatch):
    from inspector.gui.main_window import MainWindow

    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)  # never the user's settings
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), index_source=str(small_index), settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.hub.shutdown()


def drop(win, *paths) -> None:
    """Files dropped on the window, as a file manager drops them (file URLs)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)


def dropped(qtbot, win, *paths, timeout: int = 60_000):
    """Drop ``paths`` and wait until the searched images are shown with their heatmaps; the first in the grid."""
    with qtbot.waitSignals([win.run_finished, win.views_shown], timeout=timeout):
        drop(win, *paths)
    return win.model.selected


def coffee_as_jpeg(folder: Path) -> Path:
    """The coffee picture as someone would find it again: enlarged to 200 px and saved as a JPEG."""
    path = folder / "found on the web.jpg"
    with Image.open(COFFEE) as im:
        im.convert("RGB").resize((200, 200), Image.Resampling.BICUBIC).save(path, quality=85)
    return path


def findings(path):
    if not Path(path).exists():
        return []
    with Casebook.open(path, readonly=True) as book:
        return book.findings()


def test_a_dropped_training_image_finds_itself_at_tiled_l2_0_with_heatmaps(qtbot, window):
    item = dropped(qtbot, window, COFFEE)
    nearest = item.neighbours[0]
    assert Path(nearest.source).name == "coffee_000.png" and nearest.caption == "a cup of coffee"
    assert nearest.tiled_l2 == pytest.approx(0.0, abs=1e-9) and item.suggestion.verdict == "memorized"
    assert len(item.neighbours) == 4
    assert [n.tiled_l2 for n in item.neighbours] == sorted(n.tiled_l2 for n in item.neighbours)
    panel = window.comparison
    assert panel.gen_title.text() == "coffee_000.png"
    assert "sha256" in panel.details.text() and "64x64 px" in panel.details.text()
    assert all(card._views for card in panel.cards), "every neighbour has its heatmaps"
    assert "tiled l2 0.00" in panel.cards[0].tiled.text()
    assert "image(s) you asked about" in window.header.text()
    assert findings(window.casebook_path) == []  # searching records nothing


def test_the_same_picture_enlarged_and_saved_as_jpeg_finds_its_source_first(qtbot, window, tmp_path):
    jpeg = coffee_as_jpeg(tmp_path)
    other = TRAINING / "astronaut_000.png"
    dropped(qtbot, window, jpeg, other)
    shown = window.model.ordered_items()  # the grid's order: nearest distance first, as for generations
    assert [i.provenance["file_name"] for i in shown] == ["astronaut_000.png", "found on the web.jpg"]
    item = shown[1]
    assert Path(item.neighbours[0].source).name == "coffee_000.png"
    assert item.neighbours[0].tiled_l2 < 0.05  # re-encoded and resized, still a near copy (threshold 0.15)
    assert item.neighbours[0].comparison_size == 32 and item.provenance["format"] == "JPEG"


def test_ctrl_r_records_a_finding_of_kind_query_with_the_files_sha256(qtbot, window, tmp_path):
    jpeg = coffee_as_jpeg(tmp_path)
    dropped(qtbot, window, jpeg)
    window.grid.setFocus()
    with qtbot.waitSignal(window.query_recorded, timeout=30_000) as recorded:
        qtbot.keyClick(window.grid, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    fid = recorded.args[0]
    [row] = findings(window.casebook_path)
    assert (row.id, row.kind, row.file_name, row.label) == (fid, "query", "found on the web.jpg", "unlabeled")
    with Casebook.open(window.casebook_path, readonly=True) as book:
        finding = book.get(fid)
        assert book.verify().ok
    prov = finding.provenance
    assert prov["file_sha256"] == hashlib.sha256(jpeg.read_bytes()).hexdigest()
    assert (prov["width"], prov["height"], prov["schema"]) == (200, 200, "inspector.query/1")
    assert prov["index"]["content_hash"] == finding.index["content_hash"]
    assert finding.generation_key is None and not finding.run_ids  # no seed, no model: never merged as one
    assert Path(finding.neighbours[0].source).name == "coffee_000.png"
    assert finding.neighbours[0].pixels_png  # the compared pixels, for the report's heatmaps

    with qtbot.waitSignal(window.query_recorded, timeout=30_000) as again:  # the same image again: the same one
        qtbot.keyClick(window.grid, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert again.args[0] == fid and len(findings(window.casebook_path)) == 1


def test_a_label_on_a_searched_image_records_it_with_the_label(qtbot, window):
    dropped(qtbot, window, COFFEE)
    window.grid.setFocus()
    with qtbot.waitSignal(window.label_written, timeout=30_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_1)
    [row] = findings(window.casebook_path)
    assert (row.kind, row.label, row.reviewer) == ("query", "memorized", "test reviewer")


def tiny_png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge picture (a decompression bomb's trick), a few bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, content, words", [
    ("notes.txt", b"not a picture", "not an image file"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "was not searched"),
    ("huge.png", tiny_png_claiming(40_000, 40_000), "too large"),
])
def test_a_file_that_cannot_be_searched_is_one_message_and_nothing_is_recorded(qtbot, window, tmp_path, name,
                                                                               content, words):
    dropped(qtbot, window, COFFEE)  # something on screen, which must stay
    (tmp_path / name).write_bytes(content)
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        drop(window, tmp_path / name)
    message = shown.args[0]
    assert name in message and words in message and "nothing was recorded" in message
    assert "\n" not in message
    assert window.model.run.kind == "query" and window.model.selected.provenance["file_name"] == "coffee_000.png"
    assert findings(window.casebook_path) == []


def test_ctrl_v_searches_a_pasted_picture_and_a_pasted_file_path(qtbot, window, tmp_path):
    QApplication.clipboard().setImage(QImage(str(COFFEE)))
    window.grid.setFocus()
    with qtbot.waitSignals([window.run_finished, window.views_shown], timeout=60_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    item = window.model.selected
    assert item.provenance["file_name"] == "pasted image" and item.provenance["origin"] == "clipboard"
    assert Path(item.neighbours[0].source).name == "coffee_000.png" and item.neighbours[0].tiled_l2 < 1e-9

    jpeg = coffee_as_jpeg(tmp_path)
    QApplication.clipboard().setText(str(jpeg))
    with qtbot.waitSignals([window.run_finished, window.views_shown], timeout=60_000):
        qtbot.keyClick(window.grid, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert window.model.selected.provenance["file_name"] == "found on the web.jpg"


def test_ctrl_v_in_the_prompt_pastes_text_there_and_searches_nothing(qtbot, window):
    QApplication.clipboard().setText("a cup of coffee")
    prompt = window.prompt_panel.prompt
    prompt.setFocus()
    qtbot.keyClick(prompt, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert prompt.toPlainText() == "a cup of coffee"
    assert window.model.run is None


def test_an_empty_clipboard_says_what_to_copy(qtbot, window):
    QApplication.clipboard().setText("")
    with qtbot.waitSignal(window.error_shown, timeout=10_000) as shown:
        window.paste_image()
    assert "clipboard holds no image" in shown.args[0]


@pytest.mark.slow
def test_on_the_demo_index_a_dropped_coffee_photo_finds_the_demos_coffee(qtbot, tmp_path, monkeypatch):
    """The whole demo training set (its index built on first use), as a person meets it."""
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), index_source="demo", settings=settings)
    qtbot.addWidget(win)
    win.show()
    try:
        item = dropped(qtbot, win, coffee_as_jpeg(tmp_path), timeout=900_000)  # the demo index is built first
        assert item.neighbours[0].caption == "a cup of coffee" and item.neighbours[0].tiled_l2 < 0.05
        assert item.neighbours[0].duplicate_count > 1 and item.suggestion.verdict == "memorized"
    finally:
        win.hub.shutdown()
