"""Two annotators label copies of one casebook; `inspector casebook merge` keeps both, shows where they disagree
and how far they agree (issue 18, point 2)."""

from __future__ import annotations

import json
import shutil

import pytest
from test_casebook import make_finding

from inspector.casebook import (
    ADJUDICATED,
    MERGE_REVIEWER,
    Casebook,
    agreement,
    disagreements,
    merge_casebooks,
    reviewer_labels,
)
from inspector.cli import main
from inspector.errors import UserError

M, L, N = "memorized", "likeness-only", "novel"
# Ten findings; ana and ben disagree on findings 4, 7 and 9.
ANA = [M, M, M, M, N, N, N, L, L, N]
BEN = [M, M, M, N, N, N, L, L, N, N]
# By hand: observed agreement po = 7/10. Marginals: ana M 4, N 4, L 2; ben M 3, N 5, L 2.
# Chance pe = (4*3 + 4*5 + 2*2) / 10**2 = 36/100. kappa = (0.70 - 0.36) / (1 - 0.36) = 0.34 / 0.64.
KAPPA_BY_HAND = 0.34 / 0.64  # 0.53125


@pytest.fixture
def copies(tmp_path):
    """A scan's casebook of ten unlabeled findings, copied to two annotators who each label every finding."""
    base = tmp_path / "scan.db"
    with Casebook.open(base) as b:
        run = b.start_run(kind="scan", prompt="a photo of a lighthouse", n_requested=10)
        b.record_many([make_finding(seed) for seed in range(10)], run_id=run)
        b.finish_run(run, n_finished=10)
    a, bb = tmp_path / "ana.db", tmp_path / "ben.db"
    shutil.copy(base, a)
    shutil.copy(base, bb)
    for path, who, labels in ((a, "ana", ANA), (bb, "ben", BEN)):
        with Casebook.open(path) as b:
            for finding_id, label in enumerate(labels, start=1):
                b.label(finding_id, label, reviewer=who)
    return a, bb


def test_merging_two_reviewers_keeps_every_label_and_reports_kappa_computed_by_hand(copies, tmp_path):
    a, b = copies
    report = merge_casebooks([a, b], tmp_path / "merged.db")
    assert report.findings == 10 and report.findings_in_several == 10 and report.runs == 1
    assert report.agreement.measure == "Cohen's kappa"
    assert report.agreement.value == pytest.approx(KAPPA_BY_HAND)
    assert (report.agreement.compared, report.agreement.agreeing) == (10, 7)
    assert [d.finding_id for d in report.disagreements] == [4, 7, 9]
    assert report.disagreements[0].labels == {"ana": M, "ben": N}
    with Casebook.open(tmp_path / "merged.db", readonly=True) as merged:
        assert merged.verify().ok
        assert len(merged) == 10
        # Every label of both, each with its reviewer; the history both copies share (the record) once.
        for finding_id in range(1, 11):
            history = merged.label_history(finding_id)
            assert [e.action for e in history if e.action == "record"] == ["record"]
            given = {(e.reviewer, e.label) for e in history if e.action == "label" and e.reviewer != MERGE_REVIEWER}
            assert given == {("ana", ANA[finding_id - 1]), ("ben", BEN[finding_id - 1])}
        # No label replaces another silently: a disagreement is unlabeled, by an event that says why.
        assert merged.get(4).label == "unlabeled" and merged.label_history(4)[-1].reviewer == MERGE_REVIEWER
        assert merged.get(1).label == M and merged.get(10).label == N
        run = merged.runs()[0]
        assert run.n_finished == 10 and {s.id for s in merged.findings(run_id=run.id)} == set(range(1, 11))


def test_an_adjudicated_label_is_its_own_event_and_settles_the_disagreement(copies, tmp_path):
    a, b = copies
    merge_casebooks([a, b], tmp_path / "merged.db")
    with Casebook.open(tmp_path / "merged.db") as merged:
        merged.label(7, L, reviewer="carol", note=f"{ADJUDICATED}: ana novel, ben likeness-only")
        found = {d.finding_id: d for d in disagreements(merged)}
        assert found[7].adjudicated == L and found[4].adjudicated is None
        # The adjudication is not a third reviewer's opinion: kappa stays the two reviewers'.
        assert agreement(reviewer_labels(merged)[0]).value == pytest.approx(KAPPA_BY_HAND)
        assert merged.verify().ok


def test_three_reviewers_are_compared_with_krippendorffs_alpha(copies, tmp_path):
    a, b = copies
    c = tmp_path / "cat.db"
    shutil.copy(a, c)
    with Casebook.open(c) as book:
        for finding_id in range(1, 11):
            book.label(finding_id, M if finding_id <= 5 else N, reviewer="cat")
    report = merge_casebooks([a, b, c], tmp_path / "merged.db")
    assert report.agreement.measure == "Krippendorff's alpha" and report.agreement.reviewers == ("ana", "ben", "cat")
    assert -1 <= report.agreement.value < 1


def test_merge_refuses_an_input_as_output_and_an_existing_file(copies, tmp_path, capsys):
    a, b = copies
    before = a.read_bytes()
    assert main(["casebook", "merge", str(a), str(b), "--out", str(a)]) == 2
    assert "one of the casebooks to merge" in capsys.readouterr().err
    assert a.read_bytes() == before
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    with pytest.raises(UserError, match="--overwrite"):
        merge_casebooks([a, b], taken)
    assert taken.read_bytes() == b"keep me"
    merge_casebooks([a, b], taken, overwrite=True)
    with Casebook.open(taken, readonly=True) as merged:
        assert merged.verify().ok


def test_merge_json_lists_the_disagreements_and_the_agreement(copies, tmp_path, capsys):
    a, b = copies
    out = tmp_path / "merged.db"
    assert main(["casebook", "merge", str(a), str(b), "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["finding_id"] for d in doc["disagreements"]] == [4, 7, 9]
    assert doc["agreement"]["value"] == pytest.approx(KAPPA_BY_HAND)
    assert main(["casebook", "verify", str(out)]) == 0
    assert main(["casebook", "merge", str(a), str(b), "--out", str(tmp_path / "again.db")]) == 0
    text = capsys.readouterr().out
    assert "3 findings where reviewers disagree" in text and "Cohen's kappa 0.531" in text
