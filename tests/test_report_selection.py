"""Choosing what to export (issue 17, point 3): by id, label, prompt, run and date; the report counts what it
holds, the summaries count what was generated, and a filter that chooses nothing is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from test_casebook import make_finding

from inspector.casebook import Casebook
from inspector.cli import main


@pytest.fixture
def casebook(tmp_path):
    """Two runs of two prompts; four findings, one recorded later than the others."""
    path = tmp_path / "case.db"
    with Casebook.open(path) as book:
        lotz = book.start_run(kind="inspect", prompt="a photo of Ann Graham Lotz", n_requested=16)
        book.record(make_finding(1, prompt="a photo of Ann Graham Lotz"), run_id=lotz)
        book.record(make_finding(2, prompt="a photo of Ann Graham Lotz"), run_id=lotz)
        book.finish_run(lotz, n_finished=16, near_copies=2, likeness=0, novel=14, clique_size=11,
                        clique_flagged=True, clique_min_size=10, wen_score=4.2)
        squares = book.start_run(kind="inspect", prompt="colourful squares", n_requested=8)
        book.record(make_finding(3, prompt="colourful squares"), run_id=squares)
        book.finish_run(squares, n_finished=8, near_copies=0, likeness=0, novel=8, clique_size=1,
                        clique_flagged=False, clique_min_size=10, wen_score=0.4)
        book.label(1, "memorized", reviewer="ana")
        book.label(3, "novel", reviewer="ana")
    moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with Casebook.open(path) as book:
        book.record(make_finding(4, prompt="colourful squares"))
    return path, lotz, squares, moment


def exported(path, tmp_path, *filters) -> dict:
    out = tmp_path / "r.json"
    assert main(["casebook", "export", str(path), "--format", "json", "--out", str(out), "--overwrite",
                 *filters]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_each_filter_chooses_its_findings_and_they_combine(casebook, tmp_path):
    path, lotz, squares, moment = casebook
    ids = lambda *f: [x["id"] for x in exported(path, tmp_path, *f)["findings"]]  # noqa: E731
    assert ids() == [1, 2, 3, 4]
    assert ids("--id", "3", "1") == [1, 3]
    assert ids("--label", "memorized") == [1]
    assert ids("--label", "unlabeled") == [2, 4]
    assert ids("--prompt", "colourful squares") == [3, 4]
    assert ids("--run", str(lotz)) == [1, 2]
    assert ids("--since", moment) == [4]
    assert ids("--prompt", "colourful squares", "--label", "novel") == [3]


def test_the_summary_counts_what_the_runs_generated_not_only_what_was_kept(casebook, tmp_path):
    path, lotz, _, _ = casebook
    doc = exported(path, tmp_path, "--run", str(lotz))
    [summary] = doc["prompts"]
    assert summary["generated"] == 16 and summary["generated_from_runs"] is True
    assert summary["suggested"] == {"near copies": 2, "likeness": 0, "novel": 14}
    assert summary["clique"].startswith("11 of 16 (flagged)")
    assert doc["filters"]["run"] == lotz and doc["counts"]["memorized"] == 1


def test_the_pdf_cover_says_which_filters_chose_its_findings(casebook, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    path, *_ = casebook
    out = tmp_path / "r.pdf"
    assert main(["casebook", "export", str(path), "--format", "pdf", "--out", str(out), "--label",
                 "memorized"]) == 0
    cover = pypdf.PdfReader(out).pages[0].extract_text()
    assert "1 (label memorized)" in cover
    manifest = json.loads((tmp_path / "r.pdf.manifest.json").read_text())
    assert manifest["filters"]["label"] == "memorized" and manifest["findings"] == [1]


@pytest.mark.parametrize(("filters", "words"), [
    (["--id", "9"], "has no finding 9"),
    (["--run", "9"], "no run 9"),
    (["--since", "last tuesday"], "is not a date"),
    (["--prompt", "nobody asked this"], "no finding matches prompt exactly"),
    (["--id", "1", "--label", "novel"], "no finding matches"),
])
def test_a_filter_that_chooses_nothing_is_refused_and_writes_nothing(casebook, tmp_path, capsys, filters, words):
    path, *_ = casebook
    out = tmp_path / "r.html"
    assert main(["casebook", "export", str(path), "--format", "html", "--out", str(out), *filters]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "r.html.manifest.json").exists()
