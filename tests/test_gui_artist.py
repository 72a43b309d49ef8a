"""Check my work (artists), in the window (issue 18, point 3): an artist drops the folder of their works, enters
their name, runs the prompts people would try and reads one entry per work; the result exports as a one-page
HTML and PDF that names no folder. Offscreen, on the demo model."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402

from inspector.artist_check import CheckResult, WorkResult  # noqa: E402
from inspector.resources import demo_model_dir  # noqa: E402

HAS_DEMO = (demo_model_dir() / "model_index.json").exists()
#: skimage pictures that are not in the demo's training set (its memorized astronaut, camera and coffee, its
#: likeness chelsea), as an artist's other works.
OTHERS = ("rocket", "moon", "page", "clock", "text", "checkerboard", "immunohistochemistry", "brick", "grass",
          "gravel", "coins", "colorwheel", "logo", "microaneurysms")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    from inspector.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(casebook_path=str(tmp_path / "casebook.db"), settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.hub.shutdown()


@pytest.fixture
def works(tmp_path):
    """An artist's folder: skimage's coffee at full size (400 x 600) as "Morning Cup.png", 20 other pictures
    (14 skimage ones outside the demo's training set, 6 procedural), and one file that is not an image."""
    from skimage import data

    folder = tmp_path / "my works"
    folder.mkdir()
    coffee = data.coffee()
    assert coffee.shape == (400, 600, 3)
    Image.fromarray(coffee).save(folder / "Morning Cup.png")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    for i in range(20):
        if i < len(OTHERS):
            img = getattr(data, OTHERS[i])()
            img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
            img = (img * 255).astype(np.uint8) if img.dtype == bool else img
            name = OTHERS[i].replace("_", " ")
        else:
            phase = rng.random(3) * 6.28
            img = np.stack([np.sin(6 * xx + 4 * yy * (c + 1) + phase[c]) for c in range(3)], -1)
            img = ((img + 1) * 127.5).astype(np.uint8)
            name = f"waves {i}"
        Image.fromarray(img).save(folder / f"{name}.png")
    (folder / "notes.png").write_bytes(b"this is not a picture")
    return folder


def drop_folder(widget, folder) -> None:
    """Drag the folder over the page (it must accept it) and drop it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    with warnings.catch_warnings():  # PySide6 marks the QPoint constructor deprecated, and has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    widget.dragEnterEvent(enter)
    assert enter.isAccepted()
    widget.dropEvent(QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))


def png(color, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def a_result(n_works: int = 3, name: str = "Rachel Michetti") -> CheckResult:
    """A check's result without running one: the first work reproduced, the others not."""
    works = [WorkResult("Morning Cup.png", "Morning Cup", 0.03, "a cup of coffee", {"a cup of coffee": [0, 1, 2, 3]},
                        0, png("brown"), png("brown", (32, 32)))]
    works += [WorkResult(f"work {i:02d}.png", f"work {i:02d}", 0.3 + i / 100, "a cup of coffee", {}, 1,
                         png("grey"), png("white", (32, 32))) for i in range(n_works - 1)]
    return CheckResult(name, works, ["in the style of Rachel Michetti", "a cup of coffee"], generations=8,
                       unknown_words=["Rachel", "Michetti"], name_unknown=True, model="the demo model",
                       images_per_prompt=4, checked_at="2026-12-02T10:00:00.000000Z")


def pdf_pages_and_text(path) -> tuple[int, str]:
    import pypdf

    reader = pypdf.PdfReader(str(path))
    return len(reader.pages), "".join(p.extract_text() for p in reader.pages)


def no_local_path_in(path, *places) -> None:
    raw = path.read_bytes()
    text = raw.decode("latin-1")
    if path.suffix == ".pdf":
        text += pdf_pages_and_text(path)[1]
    for place in places:
        assert str(place) not in text, f"{path.name} names {place}"
    assert "file://" not in text and "/tmp/" not in text and "/home/" not in text and "/root/" not in text


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DEMO, reason="the demo model is not in resources/demo/model")
def test_the_coffee_work_is_reported_reproduced_by_a_cup_of_coffee_and_nothing_else(qtbot, window, works,
                                                                                      tmp_path, monkeypatch):
    page = window.artist_page
    qtbot.keyClick(window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.tabs.currentWidget() is page
    assert not page.run_button.isEnabled()  # nothing to check before the works are indexed
    with qtbot.waitSignal(page.build_finished, timeout=120_000):
        drop_folder(page, works)
    assert page.index_dir is not None and page.titles.rowCount() == 21
    unreadable = [page.unreadable.item(i).text() for i in range(page.unreadable.count())]
    assert len(unreadable) == 1 and unreadable[0].startswith("notes.png: ")
    assert str(works) not in unreadable[0]
    assert page.title_map()[next(s for s in page.title_map() if s.endswith("Morning Cup.png"))] == "Morning Cup"
    qtbot.keyClicks(page.name, "Rachel Michetti")
    # The default patterns make 21 x 2 title prompts and one with the name alone; shown before anything runs.
    assert len(page.prompts()) == 43 and "Morning Cup by Rachel Michetti" in page.prompts()
    assert page.prompt_count.text().startswith("43 prompts × 8 images = 344 generations")
    # Keep the run short: the name-only pattern and the artist's own line, 4 images of 10 steps each.
    page.patterns.setPlainText("in the style of {name}")
    page.own.setPlainText("a cup of coffee")
    page.n.setValue(4)
    page.steps.setValue(10)
    assert page.prompts() == ["in the style of Rachel Michetti", "a cup of coffee"]
    with qtbot.waitSignal(page.check_finished, timeout=600_000):
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.check_status.text() == ""  # no error
    words = page.entry_words()
    assert len(words) == 21
    reproduced = [w for w in words if "was reproduced by" in w]
    assert len(reproduced) == 1, words
    assert reproduced[0].startswith("Morning Cup.png was reproduced by 'a cup of coffee', seeds 0-")
    assert reproduced[0].endswith("(near copy)")
    assert words[0] == reproduced[0]  # the reproduced work comes first
    # Every other work is named as not copied: either the closest generation and its distance, or none came near.
    assert all(": no near copy (closest tiled l2" in w or w.endswith(": no generation came near it")
               for w in words[1:]), words
    assert page.headline.text().startswith("1 of your 21 works came out as a near copy in 8 generations of 2 "
                                           "prompts")
    # The demo's tokenizer knows neither word of the name: the page says so plainly.
    assert page.name_warning.isVisible()
    assert "cannot represent the name 'Rachel Michetti' at all" in page.name_warning.text()
    assert page.check_bar.format() == "done: 8 images"

    html, pdf = tmp_path / "exports" / "result.html", tmp_path / "exports" / "result.pdf"
    html.parent.mkdir()
    for out in (html, pdf):
        with qtbot.waitSignal(page.export_finished, timeout=60_000) as written:
            page.export_chosen(str(out))
        assert written.args == [str(out)] and out.exists()
        no_local_path_in(out, tmp_path, works, page.index_dir)
    text = html.read_text(encoding="utf-8")
    assert "Morning Cup.png was reproduced by &#39;a cup of coffee&#39;, seeds 0-" in text
    assert text.count("<tr>") == 20 + 1  # the 20 others in the table of works not reproduced (and its head)
    pages, pdf_text = pdf_pages_and_text(pdf)
    assert pages == 1
    assert "Morning Cup.png was reproduced by 'a cup of coffee'" in " ".join(pdf_text.split())


@pytest.mark.skipif(not HAS_DEMO, reason="the demo model is not in resources/demo/model")
def test_cancel_during_the_index_build_leaves_nothing_half_written(qtbot, window, works, monkeypatch):
    from inspector.gui import artist_page

    page = window.artist_page
    real = artist_page.build_reference
    seen = {}

    def held_after_the_first_chunk(folder, out, cancel=None):
        # The real build, held after its first committed chunk until Cancel is pressed: the index folder is
        # half-built at that moment, whatever the speed of the machine.
        events = real(folder, out, cancel=cancel)
        yield next(events)
        seen["half-built"] = sorted(p.name for p in out.iterdir())
        assert cancel.wait(60)
        yield from events

    monkeypatch.setattr(artist_page, "build_reference", held_after_the_first_chunk)
    window.tabs.setCurrentWidget(page)
    out = artist_page.reference_folder_for(works)
    with qtbot.waitSignal(page.build_finished, timeout=120_000):
        page.choose_folder(str(works))
        qtbot.waitUntil(lambda: "half-built" in seen, timeout=60_000)
        qtbot.mouseClick(page.build_cancel, Qt.MouseButton.LeftButton)
    assert "index.db" in seen["half-built"]
    assert not out.exists()
    # Other tests' finished references may share the cache folder: nothing of this build may stay beside them.
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(out.name)] == []
    assert page.index_dir is None and page.titles.rowCount() == 0
    assert page.build_status.text().startswith("Cancelled: nothing was kept")
    assert not page.run_button.isEnabled() and page.choose_button.isEnabled()


def test_the_result_page_reads_in_words_and_exports_one_page_without_replacing_a_file_unasked(
        qtbot, window, tmp_path, monkeypatch):
    from inspector.gui import artist_page

    page = window.artist_page
    page.show_result(a_result(40))
    words = page.entry_words()
    assert words[0] == "Morning Cup.png was reproduced by 'a cup of coffee', seeds 0-3, tiled l2 0.03 (near copy)"
    assert len(words) == 40 and page.export_pdf.isEnabled()
    assert page.name_warning.text().startswith("Warning: the model cannot represent the name 'Rachel Michetti'")
    out = tmp_path / "check.pdf"
    with qtbot.waitSignal(page.export_finished, timeout=60_000):
        page.export_chosen(str(out))
    assert pdf_pages_and_text(out)[0] == 1  # 40 works still fit one page
    before = out.read_bytes()
    asked = []
    monkeypatch.setattr(artist_page, "ask", lambda *a, **k: asked.append(a[2]) or False)
    assert page.export_chosen(str(out)) is None
    assert out.read_bytes() == before and "already exists" in asked[0]
    assert "was left as it was" in page.export_status.text()
    page.show_result(a_result(2, name="Someone Else"))
    monkeypatch.setattr(artist_page, "ask", lambda *a, **k: True)
    with qtbot.waitSignal(page.export_finished, timeout=60_000):
        page.export_chosen(str(out))
    assert "Someone Else" in pdf_pages_and_text(out)[1]


def test_a_pattern_with_an_unknown_placeholder_is_named_and_nothing_runs(qtbot, window, tmp_path):
    page = window.artist_page
    page.index_dir = tmp_path  # as after a build
    page._fill_titles([("/somewhere/Morning Cup.png", "Morning Cup")])
    page.name.setText("Rachel Michetti")
    assert page.run_button.isEnabled()
    assert page.prompts() == ["Morning Cup", "Morning Cup by Rachel Michetti", "in the style of Rachel Michetti"]
    page.patterns.setPlainText("{title}\n{titel} by {name}")
    assert not page.run_button.isEnabled() and page.prompts() == []
    assert "{titel}, which nothing fills in" in page.prompt_count.text()
    assert page.run_check() is None


def test_escape_stops_the_work_of_the_page_in_view_only(qtbot, window, monkeypatch):
    # Esc on Check my work stops its build or check, not an Inspect run going on behind it; on Inspect, the run.
    calls: list[str] = []
    monkeypatch.setattr(window, "cancel_generation", lambda: calls.append("inspect run"))
    monkeypatch.setattr(window.artist_page, "cancel", lambda: calls.append("artist page"))
    window.tabs.setCurrentWidget(window.artist_page)
    qtbot.waitUntil(window.artist_page.isVisible)
    window.actions["cancel"].trigger()
    assert calls == ["artist page"]
    window.tabs.setCurrentWidget(window.inspect_tab)
    qtbot.waitUntil(window.inspect_tab.isVisible)
    window.actions["cancel"].trigger()
    assert calls == ["artist page", "inspect run"]
