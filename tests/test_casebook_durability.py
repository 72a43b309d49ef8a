"""The casebook never loses a committed label: not when the writer is killed mid-write, not when two
programs (the GUI and a headless scan) write at once."""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import sqlite3
import time

import pytest
from test_casebook import make_finding

from inspector.casebook import Casebook, CasebookError
from inspector.findings import LABELS

# Forked children start in milliseconds (nothing to import again), which keeps 50 kills fast.
FORK = multiprocessing.get_context("fork")


def _say(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())  # one write of less than PIPE_BUF bytes: never half a line


def _record_and_relabel_forever(path: str, fd: int, seed: int) -> None:
    """The child: records and relabels findings, reporting each write once it is committed."""
    rng = random.Random(seed)
    book = Casebook.open(path)
    _say(fd, "ready")
    recorded: list[int] = []
    while True:
        finding_id = book.record(make_finding(rng.randrange(1_000_000), captions=("a", "b", "c", "d")))
        recorded.append(finding_id)
        _say(fd, f"R {finding_id}")
        target = rng.choice(recorded)
        try:
            if rng.random() < 0.7:
                event = book.label(target, rng.choice(LABELS), reviewer=f"child {seed}")
            else:
                event = book.undo_last_label(target)
        except CasebookError:  # nothing to undo
            continue
        _say(fd, f"E {event.id} {target} {event.label}")


def _read_lines(fd: int, until: int, deadline: float) -> list[str]:
    """Lines from the child until ``until`` of them arrived (or the deadline passed)."""
    buffer = b""
    while buffer.count(b"\n") < until and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode().splitlines(keepends=True)


def _drain(fd: int) -> str:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data.decode()


@pytest.mark.slow
def test_killing_the_writer_at_random_moments_50_times_loses_no_committed_write(tmp_path):
    path = str(tmp_path / "crash.db")
    rng = random.Random(2026)
    committed_findings: set[int] = set()
    committed_events: dict[int, tuple[int, str]] = {}
    for round_ in range(50):
        read_fd, write_fd = os.pipe()
        child = FORK.Process(target=_record_and_relabel_forever, args=(path, write_fd, round_))
        child.start()
        os.close(write_fd)
        # Let it get some writes done (a random number, sometimes none), then kill it at a random moment.
        lines = _read_lines(read_fd, until=1 + rng.randrange(12), deadline=time.monotonic() + 20)
        time.sleep(rng.uniform(0, 0.01))
        child.kill()
        child.join()
        output = "".join(lines) + _drain(read_fd)
        os.close(read_fd)
        for line in output.splitlines():
            kind, *rest = line.split()
            if kind == "R":
                committed_findings.add(int(rest[0]))
            elif kind == "E":
                committed_events[int(rest[0])] = (int(rest[1]), rest[2])

        conn = sqlite3.connect(path)  # any connection recovers the write-ahead log of the killed writer
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"round {round_}"
        conn.close()
        with Casebook.open(path) as book:
            report = book.verify()
            assert report.ok, f"round {round_}: {[str(p) for p in report.problems]}"
            present = {s.id for s in book.findings()}
            assert committed_findings <= present, f"round {round_}: lost {committed_findings - present}"
            events = {row[0]: (row[1], row[2]) for row in
                      book.db.conn.execute("SELECT id, finding_id, label FROM label_events")}
            for event_id, expected in committed_events.items():
                assert events.get(event_id) == expected, f"round {round_}: label event {event_id} lost"
    assert len(committed_findings) >= 50 and len(committed_events) >= 25  # the children really wrote


def _record_many(path: str, tag: str, n: int) -> None:
    with Casebook.open(path) as book:
        for i in range(n):
            book.record(make_finding(i, prompt=f"{tag} prompt {i}", captions=("a",)))


def _run_writers(path: str, n: int) -> None:
    writers = [FORK.Process(target=_record_many, args=(path, tag, n)) for tag in ("gui", "scan")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
    assert [w.exitcode for w in writers] == [0, 0]  # an exception in a writer would exit 1


@pytest.mark.slow
def test_two_programs_writing_500_findings_each_at_once_store_all_1000(tmp_path):
    path = str(tmp_path / "shared.db")
    Casebook.open(path).close()
    _run_writers(path, 500)
    with Casebook.open(path) as book:
        assert len(book) == 1000
        assert book.count(text="gui") == 500 and book.count(text="scan") == 500
        assert book.verify().ok


def test_two_programs_creating_the_same_casebook_at_once_share_it(tmp_path):
    path = str(tmp_path / "new" / "casebook.db")
    _run_writers(path, 20)
    with Casebook.open(path) as book:
        assert len(book) == 40 and book.verify().ok
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["casebook.db"]
