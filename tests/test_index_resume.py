"""Interrupted builds: killed with SIGKILL, cancelled between chunks, or left with torn files, then resumed."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.training_index import IndexBuilder, TrainingIndex, TrainingIndexError, build_index

SIZE = 16


def small_picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((32, 32), Image.Resampling.BICUBIC)


def make_training_set(src: Path, n: int, copies: int = 0, bad: int = 0) -> tuple[set[str], set[str], set[str]]:
    """n distinct pictures, ``copies`` extra copies of the first ones, ``bad`` unusable files.

    Returns (good file paths, sha256 of the distinct contents, bad file paths).
    """
    src.mkdir(parents=True)
    good, shas, bad_files = set(), set(), set()
    for i in range(n):
        path = src / f"{i // 100:02d}" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        small_picture(i).save(path)
        good.add(str(path))
        shas.add(hashlib.sha256(path.read_bytes()).hexdigest())
    for i in range(copies):
        path = src / "copies" / f"copy_{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(src / "00" / f"{i % 10:05d}.png", path)
        good.add(str(path))
    for i in range(bad):
        path = src / f"{(i * 37) % max(1, n // 100):02d}" / f"broken_{i}.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * i)
        bad_files.add(str(path))
    return good, shas, bad_files


def stored_items(out: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{out / 'index.db'}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def start_build(src: Path, out: Path, resume: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "inspector", "index", "build", str(src), "--out", str(out), "--size", str(SIZE),
            "--workers", "1", "--chunk-size", "8"]
    return subprocess.Popen(argv + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, out: Path, items: int, timeout: float = 300.0) -> bool:
    """SIGKILL the build once ``items`` images are committed; False when it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if stored_items(out) >= items:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the build did not progress")


def assert_every_good_image_exactly_once(out: Path, good: set[str], shas: set[str], bad: set[str]) -> None:
    with TrainingIndex.open(out) as index:
        assert len(index) == len(shas)
        conn = sqlite3.connect(out / "index.db")
        sources = [r[0] for r in conn.execute("SELECT source FROM sources")]
        item_shas = [r[0] for r in conn.execute("SELECT sha256 FROM items ORDER BY id")]
        skipped = {r[0] for r in conn.execute("SELECT source FROM skipped")}
        dup_total = conn.execute("SELECT SUM(duplicate_count) FROM items").fetchone()[0]
        conn.close()
        assert sorted(sources) == sorted(good)
        assert set(item_shas) == shas and len(item_shas) == len(shas)
        assert skipped == bad
        assert dup_total == len(good)
        assert (out / "features.f16").stat().st_size == len(shas) * 768 * 2
        assert (out / "pixels.u8").stat().st_size == len(shas) * SIZE * SIZE * 3
        for path in sorted(good)[::97]:  # a sample: each is its own nearest, at distance 0
            [[n]] = index.query(path, k=1)
            assert n.l2 == 0.0 and n.image_sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_build_killed_twice_resumes_to_every_good_image_exactly_once(tmp_path):
    src, out = tmp_path / "src", tmp_path / "idx"
    good, shas, bad = make_training_set(src, 1000, copies=40, bad=6)
    assert kill_when(start_build(src, out, resume=False), out, items=40), "the build finished before the kill"
    first = stored_items(out)
    killed_again = kill_when(start_build(src, out, resume=True), out, items=first + 150)
    second = start_build(src, out, resume=True)
    assert second.wait(timeout=600) == 0
    assert killed_again or stored_items(out) == len(shas)
    assert_every_good_image_exactly_once(out, good, shas, bad)
    report = json.loads((out / "build_report.json").read_text(encoding="utf-8"))
    assert report["resumed"] and report["files_already_indexed"] > 0


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.slow
def test_decoding_processes_exit_when_the_build_is_killed(tmp_path):
    src, out = tmp_path / "src", tmp_path / "idx"
    make_training_set(src, 1500)
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "index", "build", str(src), "--out", str(out),
                             "--size", str(SIZE), "--workers", "2", "--chunk-size", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # deadlines only bound a hang: generous, for a loaded machine
    while stored_items(out) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    kids = children_of(proc.pid)
    assert proc.poll() is None and len(kids) >= 2, "the build ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    def alive(pid: int) -> bool:
        # An exited orphan can stay a zombie until its new parent (PID 1 here, which may not reap promptly)
        # collects it: a zombie has exited.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 120
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [k for k in kids if alive(k)]
    for k in left:  # this test started them: do not leave them behind, but fail
        subprocess.run(["kill", "-9", str(k)], check=False)
    assert not left, "decoding processes outlived the killed build"


def test_a_decoding_process_that_starts_after_the_build_died_exits_at_once():
    """A process that finishes starting only after the build was killed has been adopted already: it must
    compare with the build's id, passed in, rather than with the adopter's."""
    code = ("import time; from inspector.training_index.decode import worker_init; "
            f"worker_init({2**22 + 1}); time.sleep(3600)")  # a parent id that is not this process's parent
    # Exiting "at once" is told from sleeping by an hour's margin, so a loaded machine's slow start cannot fail
    # it: a process that does not exit is stopped by the timeout, which fails the test.
    done = subprocess.run([sys.executable, "-c", code], timeout=300, check=False, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, "")


def test_rows_written_after_the_last_commit_are_cut_on_resume(tmp_path):
    src, out = tmp_path / "src", tmp_path / "idx"
    good, shas, bad = make_training_set(src, 60, copies=5, bad=1)
    build_index(src, out, comparison_size=SIZE, workers=1)
    # As if killed after appending a chunk's rows (one of them torn) but before its transaction committed:
    with open(out / "features.f16", "ab") as f:
        f.write(b"\x01" * (768 * 2 * 3 + 100))
    with open(out / "pixels.u8", "ab") as f:
        f.write(b"\x02" * (SIZE * SIZE * 3 * 2))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["status"] = "building"
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (out / "features.faiss").unlink()
    with pytest.raises(TrainingIndexError, match="--resume"):
        TrainingIndex.open(out)
    report = build_index(src, out, resume=True, workers=1)
    assert report.repaired == {"truncated_rows": 5, "dropped_items": 0}
    assert report.new_images == 0
    assert_every_good_image_exactly_once(out, good, shas, bad)


def test_items_whose_rows_were_lost_are_ingested_again(tmp_path):
    src, out = tmp_path / "src", tmp_path / "idx"
    good, shas, bad = make_training_set(src, 60, copies=5)
    build_index(src, out, comparison_size=SIZE, workers=1)
    # As after a power loss: the database committed rows that never reached the features file.
    with open(out / "features.f16", "r+b") as f:
        f.truncate((len(shas) - 7) * 768 * 2)
    report = build_index(src, out, resume=True, workers=1)
    assert report.repaired["dropped_items"] == 7 and report.new_images == 7
    assert_every_good_image_exactly_once(out, good, shas, bad)


@pytest.mark.slow
def test_cancelling_between_chunks_leaves_a_build_that_resumes(tmp_path):
    src, out = tmp_path / "src", tmp_path / "idx"
    good, shas, bad = make_training_set(src, 50, bad=2)
    run = IndexBuilder(src, out, comparison_size=SIZE, workers=2, chunk_size=5).run()
    for _ in range(3):
        next(run)
    run.close()  # the GUI's Cancel: stops between chunks, the decoding processes are shut down
    assert 0 < stored_items(out) < len(shas)
    report = build_index(src, out, resume=True, workers=2, chunk_size=5)
    assert report.resumed and report.files_already_indexed >= 15
    assert_every_good_image_exactly_once(out, good, shas, bad)


def test_resume_tries_skipped_files_again_and_adds_new_ones(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "idx"
    good, shas, bad = make_training_set(src, 20, bad=1)
    build_index(src, out, comparison_size=SIZE, workers=1)
    fixed = next(iter(bad))
    small_picture(999).save(fixed, format="JPEG", quality=95)  # the damaged file was replaced by a good one
    small_picture(1000).save(src / "00" / "new.png")
    assert main(["index", "build", str(src), "--out", str(out), "--resume", "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_images"] == 2 and report["skipped"] == [] and report["unique_images"] == len(shas) + 2


@pytest.mark.parametrize("extra, message", [
    (["--size", "64"], "compares at 16 px"),
    (["--no-store-pixels"], "pixels stored"),
    (["--clip", "some/model"], "without CLIP"),
])
def test_resume_refuses_to_change_how_the_index_was_built(tmp_path, capsys, extra, message):
    src, out = tmp_path / "src", tmp_path / "idx"
    make_training_set(src, 5)
    build_index(src, out, comparison_size=SIZE, workers=1)
    assert main(["index", "build", str(src), "--out", str(out), "--resume", *extra]) == 2
    assert message in capsys.readouterr().err


def test_resume_refuses_another_source_folder(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "idx"
    make_training_set(src, 5)
    build_index(src, out, comparison_size=SIZE, workers=1)
    other = tmp_path / "other"
    other.mkdir()
    assert main(["index", "build", str(other), "--out", str(out), "--resume"]) == 2
    assert "was built from" in capsys.readouterr().err
