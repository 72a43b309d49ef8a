"""`inspector casebook list | label | export | verify` as DESIGN.md's command line promises them."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys

import pytest
from test_casebook import make_finding

from inspector.casebook import Casebook
from inspector.cli import main


@pytest.fixture
def casebook(tmp_path):
    path = tmp_path / "case.db"
    with Casebook.open(path) as b:
        b.record(make_finding(1, prompt="a photo of Ann Graham Lotz", captions=("portrait of Ann",)))
        b.record(make_finding(2, prompt="an oil painting of a castle"))
        b.record(make_finding(3, prompt="a castle made of sand\x1b[31m"))
        b.label(2, "novel", reviewer="bob")
    return path


def _json(capsys):
    captured = capsys.readouterr()
    return json.loads(captured.out)


def test_list_json_is_one_list_of_findings_each_with_its_id(casebook, capsys):
    assert main(["casebook", "list", str(casebook), "--json"]) == 0
    found = _json(capsys)
    assert [f["id"] for f in found] == [1, 2, 3]
    assert found[1]["label"] == "novel" and found[0]["prompt"] == "a photo of Ann Graham Lotz"


def test_list_filters_by_label_and_search_text(casebook, capsys):
    assert main(["casebook", "list", str(casebook), "--label", "unlabeled", "--json"]) == 0
    assert [f["id"] for f in _json(capsys)] == [1, 3]
    assert main(["casebook", "list", str(casebook), "--search", "castle", "--json"]) == 0
    assert [f["id"] for f in _json(capsys)] == [2, 3]
    assert main(["casebook", "list", str(casebook), "--search", "castle", "--label", "novel", "--json"]) == 0
    assert [f["id"] for f in _json(capsys)] == [2]


def test_list_prints_a_readable_table_without_terminal_escapes(casebook, capsys):
    assert main(["casebook", "list", str(casebook)]) == 0
    out = capsys.readouterr().out
    assert "a photo of Ann Graham Lotz" in out and "3 findings" in out
    assert "\x1b" not in out


def test_label_appends_to_the_history_and_says_what_changed(casebook, capsys):
    assert main(["casebook", "label", str(casebook), "2", "memorized", "--note", "copy of item 100",
                 "--reviewer", "ana"]) == 0
    assert "novel -> memorized" in capsys.readouterr().out
    with Casebook.open(casebook, readonly=True) as b:
        assert [e.label for e in b.label_history(2)] == ["unlabeled", "novel", "memorized"]
        assert b.get(2).notes == "copy of item 100" and b.get(2).reviewer == "ana"


def test_a_label_without_a_reviewer_is_refused_and_nothing_is_labeled(casebook, capsys, monkeypatch):
    monkeypatch.delenv("INSPECTOR_REVIEWER", raising=False)
    before = casebook.read_bytes()
    for reviewer in ([], ["--reviewer", "  "]):
        assert main(["casebook", "label", str(casebook), "1", "memorized", *reviewer]) == 2
        err = capsys.readouterr().err.strip()
        assert "a label needs a reviewer" in err and "--reviewer NAME" in err and "INSPECTOR_REVIEWER" in err
        assert len(err.splitlines()) == 1
    assert casebook.read_bytes() == before
    with Casebook.open(casebook, readonly=True) as b:
        assert b.get(1).label == "unlabeled" and len(b.label_history(1)) == 1


def test_the_configured_reviewer_labels_when_none_is_given(casebook, capsys, monkeypatch):
    monkeypatch.setenv("INSPECTOR_REVIEWER", "Ana Lawyer")
    assert main(["casebook", "label", str(casebook), "1", "memorized"]) == 0
    assert "by Ana Lawyer" in capsys.readouterr().out
    assert main(["casebook", "label", str(casebook), "1", "novel", "--reviewer", "bob"]) == 0  # the option wins
    with Casebook.open(casebook, readonly=True) as b:
        assert [e.reviewer for e in b.label_history(1)][1:] == ["Ana Lawyer", "bob"]


def test_label_with_an_unknown_finding_or_label_exits_2(casebook, capsys):
    assert main(["casebook", "label", str(casebook), "99", "novel", "--reviewer", "ana"]) == 2
    assert "no finding 99" in capsys.readouterr().err
    assert main(["casebook", "label", str(casebook), "1", "copied"]) == 2
    assert main(["casebook", "label", str(casebook), "one", "novel"]) == 2


def test_label_on_a_read_only_casebook_exits_2_and_changes_nothing(casebook, capsys):
    casebook.chmod(stat.S_IRUSR)
    try:
        before = casebook.read_bytes()
        assert main(["casebook", "label", str(casebook), "1", "novel", "--reviewer", "ana"]) == 2
        assert "read-only" in capsys.readouterr().err
        assert casebook.read_bytes() == before
        assert main(["casebook", "list", str(casebook), "--json"]) == 0  # reading still works
        assert len(_json(capsys)) == 3
    finally:
        casebook.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
def test_export_writes_each_format(casebook, tmp_path, capsys, fmt):
    out = tmp_path / f"report.{fmt}"
    assert main(["casebook", "export", str(casebook), "--format", fmt, "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "3 findings" in capsys.readouterr().out


def test_export_with_a_bad_format_or_folder_exits_2_and_writes_nothing(casebook, tmp_path):
    assert main(["casebook", "export", str(casebook), "--format", "docx", "--out", str(tmp_path / "r.docx")]) == 2
    assert main(["casebook", "export", str(casebook), "--format", "csv", "--out", str(tmp_path / "no" / "r")]) == 2
    assert main(["casebook", "export", str(casebook), "--format", "csv"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.db"]


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_export_over_the_casebook_itself_exits_2_even_with_overwrite_and_the_casebook_still_verifies(
        casebook, capsys, fmt, suffix):
    target = casebook.with_name(casebook.name + suffix)
    before = target.read_bytes() if target.exists() else None
    for extra in ([], ["--overwrite"]):
        assert main(["casebook", "export", str(casebook), "--format", fmt, "--out", str(target), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "is the casebook being exported" in err and len(err.splitlines()) == 1
    assert (target.read_bytes() if target.exists() else None) == before
    assert main(["casebook", "verify", str(casebook)]) == 0
    assert [p.name for p in casebook.parent.iterdir() if p.name.endswith(".part")] == []


def test_export_over_the_casebook_through_another_spelling_or_a_link_exits_2(casebook, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.db").symlink_to(casebook)
    (tmp_path / "hard.db").hardlink_to(casebook)
    for out in ("case.db", "sub/../case.db", "alias.db", "hard.db"):
        args = ["casebook", "export", str(casebook), "--format", "csv", "--out", out, "--overwrite"]
        assert main(args) == 2, out
    assert main(["casebook", "verify", str(casebook)]) == 0


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
def test_export_refuses_an_existing_file_unless_overwrite_is_given(casebook, tmp_path, capsys, fmt):
    out = tmp_path / f"old.{fmt}"
    out.write_text("last week's report")
    assert main(["casebook", "export", str(casebook), "--format", fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_text() == "last week's report"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("case.db")) == [out.name]

    assert main(["casebook", "export", str(casebook), "--format", fmt, "--out", str(out), "--overwrite"]) == 0
    assert out.read_text() != "last week's report" and out.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("case.db")) == [
        out.name, f"{out.name}.manifest.json"]
    assert main(["casebook", "verify", str(casebook)]) == 0


def test_an_export_never_replaces_a_file_that_appears_while_it_is_written(casebook, tmp_path, monkeypatch):
    from inspector import report

    out = tmp_path / "r.csv"
    real = report.write_csv

    def slow(book, stream, **kwargs):
        out.write_text("someone else's file")  # created after the check, before the rename
        return real(book, stream, **kwargs)

    monkeypatch.setattr(report, "write_csv", slow)
    assert main(["casebook", "export", str(casebook), "--format", "csv", "--out", str(out)]) == 2
    assert out.read_text() == "someone else's file"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    assert not (tmp_path / "r.csv.manifest.json").exists()  # nothing half-published beside it


def test_verify_exits_0_when_all_is_well_and_1_naming_each_tampered_finding(casebook, capsys):
    assert main(["casebook", "verify", str(casebook)]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    conn = sqlite3.connect(casebook)
    conn.execute("UPDATE findings SET label = 'memorized' WHERE id = 3")
    conn.execute("UPDATE findings SET image_png = x'89504e47' WHERE id = 1")
    conn.commit()
    conn.close()
    assert main(["casebook", "verify", str(casebook)]) == 1
    out = capsys.readouterr().out
    assert "finding 1: the generation image does not match its sha256" in out
    assert "finding 3: its label is 'memorized'" in out
    assert "finding 2" not in out and "FAILED" in out


@pytest.mark.parametrize("action", [["list"], ["label", "1", "novel", "--reviewer", "ana"],
                                    ["export", "--format", "json", "--out", "x"],
                                    ["verify"]])
def test_every_action_on_a_missing_casebook_exits_2_and_creates_nothing(tmp_path, capsys, monkeypatch, action):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.db"
    args = ["casebook", action[0], str(missing), *action[1:]]
    assert main(args) == 2
    assert "no casebook at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_casebook_exits_2_with_one_line_and_no_traceback(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    proc = subprocess.run([sys.executable, "-m", "inspector", "casebook", "verify", str(notes)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a casebook" in lines[0] and "Traceback" not in proc.stderr
    assert notes.read_text() == "shopping list"


def test_casebook_without_an_action_is_a_usage_error():
    assert main(["casebook"]) == 2
