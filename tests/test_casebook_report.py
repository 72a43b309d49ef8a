"""Exports a legal reviewer, a spreadsheet user and a program can rely on."""

from __future__ import annotations

import csv
import json
import re

import pytest
from test_casebook import make_finding

from inspector import report
from inspector.casebook import Casebook
from inspector.errors import UserError

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def book(tmp_path):
    with Casebook.open(tmp_path / "case.db") as b:
        first = b.record(make_finding(1, prompt=f"a photo of {HOSTILE}", negative_prompt="<b>bold</b>",
                                      captions=(f"caption {HOSTILE}", "<img src=x onerror=alert(1)>", "c", "d")))
        b.label(first, "memorized", reviewer="<i>ana</i>", note=f"note {HOSTILE}")
        second = b.record(make_finding(2, prompt="=HYPERLINK(\"http://evil\")"))
        b.label(second, "novel", reviewer="bob")
        b.label(second, "likeness-only", reviewer="bob")
        b.record(make_finding(3, prompt="an unlabeled one"))
        yield b


def _html(book, tmp_path) -> str:
    out = tmp_path / "report.html"
    assert report.export(book, out, "html") == 3
    return out.read_text(encoding="utf-8")


def test_the_html_report_escapes_every_user_supplied_string(book, tmp_path):
    page = _html(book, tmp_path)
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "<i>ana</i>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "&lt;i&gt;ana&lt;/i&gt;" in page


def test_the_html_report_is_one_self_contained_file(book, tmp_path):
    page = _html(book, tmp_path)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Content-Security-Policy" in page and "<link" not in page


def test_the_html_report_shows_each_finding_with_its_neighbours_distances_heatmaps_history_and_provenance(
        book, tmp_path):
    page = _html(book, tmp_path)
    section = page[page.index('id="finding-2"'):page.index('id="finding-3"')]
    assert section.count('alt="training image') == 4
    assert section.count("pixel difference heatmap") == 4 and "tile l2 grid" in section
    assert "tiled l2 0.08: near copy (threshold 0.15)" in section
    assert "calibrated l2 0.40: far closer than the crowd" in section
    assert "occurs 2 times in training" in section
    assert "Label history" in section and "novel \u2192 likeness-only" in section
    assert "DDIMScheduler" in section and "model.sha256" in section
    assert "Likeness only" in section  # the label in words, not only in colour


def test_the_html_summary_counts_findings_per_label_and_states_integrity(book, tmp_path):
    page = _html(book, tmp_path)
    summary = page[: page.index('id="finding-1"')]
    for words, n in (("Memorized", 1), ("Likeness only", 1), ("Novel", 0), ("Not labeled yet", 1)):
        assert re.search(rf"{words}[^<]*</td><td>{n}</td>", summary), words
    assert "Integrity: <b>verified</b>" in summary


def test_csv_has_one_row_per_finding_and_no_formula_a_spreadsheet_would_run(book, tmp_path):
    out = tmp_path / "findings.csv"
    report.export(book, out, "csv")
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["prompt"] == "'=HYPERLINK(\"http://evil\")" and rows[1]["label"] == "likeness-only"
    assert float(rows[0]["nearest_tiled_l2"]) == pytest.approx(0.08)
    assert json.loads(rows[0]["provenance"])["scheduler"] == "DDIMScheduler"


def test_json_export_holds_findings_with_neighbours_and_label_history(book, tmp_path):
    out = tmp_path / "findings.json"
    report.export(book, out, "json")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["counts"] == {"memorized": 1, "likeness-only": 1, "novel": 0, "unlabeled": 1}
    assert [f["id"] for f in doc["findings"]] == [1, 2, 3]
    second = doc["findings"][1]
    assert len(second["neighbours"]) == 4 and second["neighbours"][0]["thumbnail_sha256"]
    assert [e["label"] for e in second["label_history"]] == ["unlabeled", "novel", "likeness-only"]
    assert second["prompt"] == '=HYPERLINK("http://evil")'  # JSON keeps the data as it is


def test_an_export_that_fails_leaves_the_old_file_and_no_partial_file(book, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("the previous report")

    def broken(casebook, stream, **_):
        stream.write("<html>half a report")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "write_html", broken)
    with pytest.raises(RuntimeError):
        report.export(book, out, "html", overwrite=True)
    assert out.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.db", "case.db-shm", "case.db-wal", "report.html"]
    # no manifest either: a failed export writes nothing at all


def test_export_to_a_missing_folder_or_onto_a_folder_is_a_user_error(book, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        report.export(book, tmp_path / "nope" / "r.html", "html")
    with pytest.raises(UserError, match="is a folder"):
        report.export(book, tmp_path, "csv")
    with pytest.raises(UserError, match="format"):
        report.export(book, tmp_path / "r.docx", "docx")


def test_an_empty_casebook_exports_cleanly(tmp_path):
    with Casebook(memory=True) as b:
        for fmt in report.FORMATS:
            assert report.export(b, tmp_path / f"empty.{fmt}", fmt) == 0
    assert json.loads((tmp_path / "empty.json").read_text())["findings"] == []


def test_a_borderline_suggestion_is_called_borderline_with_its_margin_in_the_json_export_and_the_report(tmp_path):
    import numpy as np

    from inspector.extraction import suggest_verdict
    from inspector.session import Inspected, finding_from

    with Casebook.open(tmp_path / "case.db") as b:
        for tiled in (0.14, 0.16, 0.05):
            made = make_finding(int(tiled * 100))
            for n in made.neighbours:
                n.tiled_l2 = tiled + 0.1 * (n.rank - 1)
            item = Inspected(position=0, seed=made.seed, image=np.zeros((8, 8, 3), np.uint8), png=made.image_png,
                             provenance=made.provenance, neighbours=made.neighbours,
                             suggestion=suggest_verdict(made.neighbours))
            b.record(finding_from(item))  # what the window, inspect and scan record
        report.export(b, tmp_path / "r.json", "json")
        report.export(b, tmp_path / "r.html", "html")
    found = {f["seed"]: f for f in json.loads((tmp_path / "r.json").read_text())["findings"]}
    assert found[14]["metrics"]["borderline"] is True and found[14]["metrics"]["margin"] == pytest.approx(0.01)
    assert "borderline" in found[14]["suggestion_reason"]
    assert found[16]["metrics"]["borderline"] is True and found[16]["metrics"]["margin"] == pytest.approx(-0.01)
    assert "just above the line" in found[16]["suggestion_reason"]
    assert found[5]["metrics"]["borderline"] is False and "borderline" not in found[5]["suggestion_reason"]
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    sections = {int(m.group(1)): m.group(0) for m in re.finditer(r'<section class="finding".*?Seed</th><td>(\d+)'
                                                                  r'.*?</section>', page, re.S)}
    assert "<strong>Borderline</strong>: +0.010" in sections[14]
    assert "<strong>Borderline</strong>: -0.010" in sections[16] and "just above the line" in sections[16]
    assert "Borderline" not in sections[5] and "+0.100" in sections[5]
