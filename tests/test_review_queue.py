"""The annotator's review queue without Qt (issue 18, point 1): label and advance, skip, back, notes, undo,
several at once, new candidates another program writes, and the adjudication of a merge's disagreements."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
from test_casebook import make_finding

from inspector.casebook import ADJUDICATED, Casebook, merge_casebooks
from inspector.review_queue import ReviewQueue


def distance_finding(seed: int, tiled: float, suggestion: str = "novel", prompt: str = "a lighthouse"):
    f = make_finding(seed, prompt=prompt)
    for n in f.neighbours:
        n.tiled_l2 = tiled + 0.1 * (n.rank - 1)
    f.suggested_verdict = suggestion
    return f


@pytest.fixture
def book(tmp_path):
    with Casebook.open(tmp_path / "queue.db") as b:
        b.record(distance_finding(1, 0.30))
        b.record(distance_finding(2, 0.05, "memorized", prompt="a zebra"))
        b.record(distance_finding(3, 0.20, prompt="a bridge"))
        b.record(distance_finding(4, 0.10, "memorized", prompt="a bridge"))
        yield b


def test_the_queue_walks_unlabeled_findings_nearest_first_and_labels_advance(book):
    q = ReviewQueue(book, "ana")
    assert [book.summary(i).seed for i in q.ids] == [2, 4, 3, 1]
    assert q.in_words() == "1 of 4, 4 left"
    q.label("memorized")
    assert q.current.seed == 4 and q.in_words() == "2 of 4, 3 left"
    q.skip()
    assert q.current.seed == 3
    q.label("novel")
    assert q.current.seed == 1
    q.label("novel")
    assert q.current.seed == 4, "the skipped finding comes back once the rest is done"
    q.back()
    assert q.current.seed == 2, "back is the previous finding in the queue's order, labeled or not"
    assert book.get(q.ids[0]).label == "memorized" and book.get(q.ids[0]).reviewer == "ana"


def test_orders_filters_notes_undo_and_several_at_once(book):
    assert [book.summary(i).prompt for i in ReviewQueue(book, "ana", order="prompt").ids] == \
        ["a bridge", "a bridge", "a lighthouse", "a zebra"]
    q = ReviewQueue(book, "ana", order="suggestion", suggestion="memorized")
    assert [book.summary(i).seed for i in q.ids] == [2, 4]
    q.set_notes("the zebra's stripes match")
    q.label_many(q.ids, "memorized")
    assert q.left == 0 and all(book.get(i).label == "memorized" for i in q.ids)
    assert q.undo() == q.ids[1] and book.get(q.ids[1]).label == "unlabeled" and q.left == 1
    q.undo()
    q.undo()
    assert book.get(q.ids[0]).notes == "" and q.current.id == q.ids[0]
    history = [e.action for e in book.label_history(q.ids[0])]
    assert history == ["record", "note", "label", "undo", "note"]


def test_new_candidates_written_by_another_process_join_the_queue_behind_the_annotator(book, tmp_path):
    q = ReviewQueue(book, "ana")
    q.label("memorized")
    place = q.current.id
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from test_review_queue import distance_finding
        from inspector.casebook import Casebook
        with Casebook.open({str(book.path)!r}) as b:
            b.record(distance_finding(9, 0.01, "memorized"))
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert q.refresh() == 1
    assert q.current.id == place and book.summary(q.ids[-1]).seed == 9 and q.left == 4
    assert q.refresh() == 0


def test_adjudication_walks_the_disagreements_and_records_its_own_event(tmp_path):
    base = tmp_path / "base.db"
    with Casebook.open(base) as b:
        for seed in range(3):
            b.record(make_finding(seed))
    a, c = tmp_path / "a.db", tmp_path / "b.db"
    shutil.copy(base, a)
    shutil.copy(base, c)
    for path, who, labels in ((a, "ana", ["memorized", "novel", "novel"]), (c, "ben", ["memorized", "memorized",
                                                                                          "likeness-only"])):
        with Casebook.open(path) as b:
            for fid, label in enumerate(labels, start=1):
                b.label(fid, label, reviewer=who)
    merge_casebooks([a, c], tmp_path / "merged.db")
    with Casebook.open(tmp_path / "merged.db") as merged:
        q = ReviewQueue(merged, "carol", adjudicate=True, order="prompt")
        assert sorted(q.ids) == [2, 3] and q.disagreement(2).labels == {"ana": "novel", "ben": "memorized"}
        q.go_to(2)
        q.label("memorized", note="the tiles match")
        event = merged.label_history(2)[-1]
        assert event.reviewer == "carol" and event.note.startswith(ADJUDICATED)
        assert "ana novel, ben memorized" in event.note and merged.get(2).label == "memorized"
        assert q.left == 1 and q.current.id == 3
        assert ReviewQueue(merged, "carol", adjudicate=True).ids == [3]
        assert merged.verify().ok


def test_a_candidate_written_just_before_the_annotators_label_is_still_picked_up(book, tmp_path):
    q = ReviewQueue(book, "ana")
    with Casebook.open(book.path) as scan:  # another writer, between the queue's last read and its label
        scan.record(distance_finding(9, 0.01, "memorized"))
    q.label("novel")
    assert q.refresh() == 1 and book.summary(q.ids[-1]).seed == 9
    q.set_notes("checked")
    assert q.refresh() == 0, "the queue's own writes need no re-read"


def test_an_undo_the_busy_casebook_refused_undoes_the_same_change_when_tried_again(book):
    from inspector.casebook import CasebookBusyError

    q = ReviewQueue(book, "ana")
    first, second = q.current.id, q.ids[1]
    q.label("memorized")
    q.label("novel")
    real = book.undo_last_label

    def busy(*args, **kwargs):
        raise CasebookBusyError("another program is writing the casebook", waited=0)

    book.undo_last_label = busy
    with pytest.raises(CasebookBusyError):
        q.undo()
    book.undo_last_label = real
    assert q.undo() == second and book.get(second).label == "unlabeled" and book.get(first).label == "memorized"
