"""The one way files are written, hashed and named to SQLite (inspector.fileio)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from inspector.fileio import (
    TEMPORARY_SUFFIX,
    atomic_open,
    publish,
    sha256_and_size,
    sha256_file,
    sqlite_uri,
    temporary_path,
    write_atomic,
    write_part,
)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMPORARY_SUFFIX))


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("the old, complete file")

    def half_then_fail(stream):
        stream.write(b"half of the new ")
        raise RuntimeError("disk pulled out")

    with pytest.raises(RuntimeError, match="disk pulled out"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "the old, complete file"
    assert leftovers(tmp_path) == []


def test_a_text_stream_that_fails_inside_the_block_leaves_nothing(tmp_path):
    target = tmp_path / "export.csv"
    with pytest.raises(KeyboardInterrupt), atomic_open(target, "w", newline="") as stream:
        stream.write("a,b\r\n")
        raise KeyboardInterrupt  # a cancel is cleaned up like an error
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_finished_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "seed_00000001.png"
    target.write_bytes(b"old")
    assert write_atomic(target, b"new bytes") == target
    assert target.read_bytes() == b"new bytes"
    write_atomic(target, "tekst \u00e9\n")
    assert target.read_bytes() == "tekst \u00e9\n".encode()
    with atomic_open(target, "w", newline="") as stream:
        stream.write("x\r\ny\n")
    assert target.read_bytes() == b"x\r\ny\n"
    assert leftovers(tmp_path) == []


def test_overwrite_false_refuses_an_existing_file_and_keeps_it(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("someone else's report")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"<html>mine</html>", overwrite=False)
    assert target.read_text() == "someone else's report"
    assert leftovers(tmp_path) == []


def test_overwrite_false_refuses_a_file_that_appears_while_writing(tmp_path):
    target = tmp_path / "report.html"

    def slow_writer(stream):
        stream.write(b"mine")
        target.write_text("another program was faster")

    with pytest.raises(FileExistsError):
        write_atomic(target, slow_writer, overwrite=False)
    assert target.read_text() == "another program was faster"
    assert leftovers(tmp_path) == []


def test_overwrite_false_writes_a_new_file(tmp_path):
    target = tmp_path / "new.json"
    write_atomic(target, b"{}", overwrite=False)
    assert target.read_bytes() == b"{}"
    assert leftovers(tmp_path) == []


def test_a_read_only_folder_raises_and_leaves_nothing(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            write_atomic(folder / "out.png", b"png")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_files_written_have_ordinary_permissions(tmp_path):
    # mkstemp made 0600 files: a generated PNG or export must be readable like any file the person saves.
    old = os.umask(0o022)
    try:
        target = write_atomic(tmp_path / "a.png", b"x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


def test_parts_published_together(tmp_path):
    target = tmp_path / "export.json"
    tmp = write_part(target, b"{}")
    assert tmp.parent == tmp_path and tmp.name.startswith(".export.json.") and tmp.read_bytes() == b"{}"
    publish(tmp, target, overwrite=False)
    assert target.read_bytes() == b"{}" and not tmp.exists()
    again = write_part(target, b"[]")
    with pytest.raises(FileExistsError):
        publish(again, target, overwrite=False)
    assert target.read_bytes() == b"{}"
    assert temporary_path(target) != temporary_path(target)


def test_sha256_of_a_file_is_read_in_blocks(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_and_size(path) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize("folder", ["idx#1", "a?b", "100%", "sp ace", "ünï"])
def test_a_sqlite_uri_names_exactly_the_file_whatever_its_folder_is_called(tmp_path, folder):
    (tmp_path / folder).mkdir()
    path = tmp_path / folder / "index.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (42)")
    conn.close()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    ro = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True)
    try:
        assert ro.execute("SELECT x FROM t").fetchall() == [(42,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.execute("INSERT INTO t VALUES (1)")
    finally:
        ro.close()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_file_a_library_writes_by_name_appears_whole_or_not_at_all(tmp_path):
    import numpy as np

    from inspector.fileio import atomic_path

    target = tmp_path / "semantic.f16"
    target.write_bytes(b"old rows")
    with atomic_path(target) as tmp:
        rows = np.memmap(tmp, dtype="<f2", mode="w+", shape=(4, 3))
        rows[:] = 1.5
        rows.flush()
        del rows
        assert target.read_bytes() == b"old rows"  # not yet: only when the block finishes
    assert np.fromfile(target, dtype="<f2").tolist() == [1.5] * 12
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("the memory map could not be filled")
    assert np.fromfile(target, dtype="<f2").tolist() == [1.5] * 12
    assert leftovers(tmp_path) == []


def test_a_part_can_be_streamed_as_text(tmp_path):
    target = tmp_path / "export.csv"
    tmp = write_part(target, lambda stream: stream.write("a,b\r\n1,2\r\n"), mode="w", newline="")
    assert tmp.read_bytes() == b"a,b\r\n1,2\r\n" and not target.exists()
    with pytest.raises(RuntimeError):
        write_part(target, lambda stream: (_ for _ in ()).throw(RuntimeError("writer failed")), mode="w")
    assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name]
