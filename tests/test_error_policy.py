"""One error policy (issue 15, point 5): a condition the person caused or can fix ends every command with one
plain line on stderr and exit 2, never a bare exception name, whatever the command.

Each case runs ``python -m inspector`` as its own process, as a person would: a read-only output folder, a disk
that fills up (a file-size limit on the process: SQLite and Python then get EFBIG / a short write, as from a full
disk), ids and seeds far out of range (2**64), and a casebook another program keeps locked.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_casebook import make_finding

from inspector.casebook import Casebook

HUGE = str(2**64)
#: An exception's class name in a message ("OperationalError:", "OverflowError") means the policy failed.
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")


# ------------------------------------------------------------------------------------------------- helpers


def cases(names, fast: set[str]) -> list:
    """Parameters for pytest: every case, those not in ``fast`` marked slow (each case is a process that
    starts the command line, a second or two; ``make check`` runs one or two of each kind, ``make test`` all)."""
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in names]


def run_cli(*args: str, cwd: Path, file_size_limit: int | None = None, timeout: float = 600) -> \
        subprocess.CompletedProcess:
    """``python -m inspector ARGS`` in its own process; with ``file_size_limit`` (bytes) no file it writes may
    grow past that size (RLIMIT_FSIZE), the way a full disk stops a write."""

    def limit() -> None:
        # Ignored SIGXFSZ: the write fails with EFBIG instead of the process being killed (Python ignores it too).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "inspector", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if file_size_limit is not None else None)


def assert_one_plain_line(proc: subprocess.CompletedProcess, *words: str, progress_allowed: bool = False) -> str:
    """Exit 2 and exactly one line on stderr, in words: no traceback, no exception class name. With
    ``progress_allowed`` (a failure after the work started) earlier progress lines may stand before it, but the
    error is the one line that says "error" and it comes last."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line]
    if progress_allowed:
        assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-2000:]
    else:
        assert len(lines) == 1, proc.stderr
    line = lines[-1]
    assert line.startswith("inspector"), line
    assert not CLASS_NAME.search(line), line
    for word in words:
        assert word in line, (word, line)
    return line


@contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for the command, even when the tests run as root (who ignores permission bits):
    permission bits for anyone else, an immutable folder (chattr +i) for root. Skips when neither works here."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("cannot make a folder read-only here: running as root on a file system without chattr +i")
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except OSError as exc:
            assert exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else:
            probe.unlink()
            pytest.skip(f"{folder} stayed writable after {' '.join(undo[:2])}")
        yield folder
    finally:
        subprocess.run(undo, check=True)


@contextmanager
def held_for_writing(casebook: Path, *, exclusive: bool = False):
    """Another program writing the casebook: a transaction that holds its write lock (BEGIN IMMEDIATE), or
    (``exclusive``) a tool that took the whole file (locking_mode EXCLUSIVE, as some SQLite browsers do), which
    keeps readers out too."""
    other = sqlite3.connect(casebook, isolation_level=None)
    try:
        if exclusive:
            other.execute("PRAGMA locking_mode = EXCLUSIVE")
            other.execute("BEGIN EXCLUSIVE")
            other.execute("CREATE TABLE IF NOT EXISTS other_program (x)")
        else:
            other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def labels(casebook: Path) -> dict[int, str]:
    with Casebook.open(casebook, create=False, readonly=True) as book:
        return {s.id: s.label for s in book.findings()}


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A working folder with a casebook of three findings, two images, a folder of images and a prompt file."""
    root = tmp_path_factory.mktemp("world")
    with Casebook.open(root / "casebook.db") as book:
        for seed in range(3):
            book.record(make_finding(seed))
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
    shutil.copy(root / "images" / "0.png", root / "a.png")
    shutil.copy(root / "images" / "1.png", root / "b.png")
    (root / "prompts.txt").write_text("a red fox in the snow\n", encoding="utf-8")
    return root


@pytest.fixture
def casebook(world, tmp_path) -> Path:
    """A fresh copy of the world's casebook (a command that fails must leave it as it was)."""
    copy = tmp_path / "casebook.db"
    shutil.copy(world / "casebook.db", copy)
    return copy


@pytest.fixture
def locked_out(world, tmp_path) -> Path:
    """An empty folder that the commands below cannot write into."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    with read_only(folder):
        yield folder


# ------------------------------------------------------------------------------------- a read-only folder

READ_ONLY_CASES = {
    "generate --out": lambda w, ro, cb: ["generate", "a red fox", "--n", "1", "--out", ro / "images"],
    "generate --out (the folder itself)": lambda w, ro, cb: ["generate", "a red fox", "--n", "1", "--out", ro],
    "index build --out": lambda w, ro, cb: ["index", "build", w / "images", "--out", ro / "index", "--workers", 1],
    "casebook export --out": lambda w, ro, cb: ["casebook", "export", cb, "--format", "html", "--out",
                                                ro / "report.html"],
    "compare --heatmap": lambda w, ro, cb: ["compare", w / "a.png", w / "b.png", "--heatmap", ro / "sheet.png"],
    "inspect --casebook": lambda w, ro, cb: ["inspect", "a red fox", "--n", "2", "--casebook", ro / "new.db"],
    "scan --casebook": lambda w, ro, cb: ["scan", w / "prompts.txt", "--n", "2", "--casebook", ro / "new.db"],
    "gui --screenshot": lambda w, ro, cb: ["gui", "--screenshot", ro / "window.png", "--prompt", "a red fox"],
}


@pytest.mark.parametrize("case", cases(READ_ONLY_CASES, {"generate --out", "casebook export --out",
                                                         "inspect --casebook"}))
def test_a_read_only_output_folder_is_one_line_naming_it(case, world, locked_out, casebook):
    proc = run_cli(*READ_ONLY_CASES[case](world, locked_out, casebook), cwd=world)
    assert_one_plain_line(proc, "cannot write", str(locked_out), "choose a folder you can write to")
    assert list(locked_out.iterdir()) == []  # nothing half-written


@pytest.mark.slow
def test_labeling_a_casebook_in_a_read_only_folder_is_one_line_and_changes_nothing(world, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(world / "casebook.db", folder / "casebook.db")
    before = labels(folder / "casebook.db")
    with read_only(folder):
        proc = run_cli("casebook", "label", folder / "casebook.db", "1", "memorized", "--reviewer", "ana", cwd=world)
    assert_one_plain_line(proc, "cannot write to the casebook", "read-only")
    assert labels(folder / "casebook.db") == before


# ----------------------------------------------------------------------------------------- a full disk

#: Bytes a file may grow to. 33,000: the casebook's shared-memory index (32 KiB) still fits, its write-ahead
#: log does not fit a label; 1,000: no PNG, manifest or index file fits.
DISK_FULL_CASES = {
    "casebook label": (lambda w, cb: ["casebook", "label", cb, "1", "memorized", "--reviewer", "ana"], 33_000),
    "casebook export": (lambda w, cb: ["casebook", "export", cb, "--format", "html", "--out", "report.html"],
                        33_000),
    "compare --heatmap": (lambda w, cb: ["compare", w / "a.png", w / "b.png", "--heatmap", "sheet.png"], 1_000),
    "index build": (lambda w, cb: ["index", "build", w / "images", "--out", "index", "--workers", 1], 1_000),
}


@pytest.mark.parametrize("case", cases(DISK_FULL_CASES, {"casebook label", "compare --heatmap"}))
def test_a_full_disk_is_one_line_that_says_to_free_space_and_loses_nothing(case, world, casebook, tmp_path):
    command, limit = DISK_FULL_CASES[case]
    before = labels(casebook)
    proc = run_cli(*command(world, casebook), cwd=tmp_path, file_size_limit=limit)
    assert_one_plain_line(proc, "disk is full", "free space and run again; nothing stored was lost")
    assert labels(casebook) == before
    assert not list(tmp_path.glob("**/.*.part"))  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["generate", "a red fox", "--n", "2", "--steps", "2", "--out", "images"],
    ["inspect", "a red fox", "--n", "2", "--steps", "2", "--no-wen", "--casebook", "CASEBOOK"],
], ids=["generate", "inspect"])
def test_a_disk_that_fills_up_while_generating_is_one_line_too(command, casebook, tmp_path):
    """The model loads and samples first (seconds); the write that fails comes after, with progress before it."""
    from inspector.training_index import demo_index

    demo_index(os.environ.get("INSPECTOR_CACHE_DIR")).close()  # built here, without the limit: the limit is for
    # the inspection's own writes
    args = [str(casebook) if a == "CASEBOOK" else a for a in command]
    before = labels(casebook)
    proc = run_cli(*args, cwd=tmp_path, file_size_limit=33_000 if "inspect" in command else 1_000)
    assert_one_plain_line(proc, "disk is full", "nothing stored was lost", progress_allowed=True)
    assert labels(casebook) == before


# ----------------------------------------------------------------------------------------- huge numbers

HUGE_CASES = {
    "casebook label FINDING_ID": ["casebook", "label", "CASEBOOK", HUGE, "novel", "--reviewer", "ana"],
    "casebook list --run": ["casebook", "list", "CASEBOOK", "--run", HUGE],
    "casebook export --id": ["casebook", "export", "CASEBOOK", "--format", "json", "--out", "x.json", "--id", HUGE],
    "casebook export --run": ["casebook", "export", "CASEBOOK", "--format", "json", "--out", "x.json", "--run", HUGE],
    "generate --seed": ["generate", "a red fox", "--seed", HUGE, "--out", "images"],
    "inspect --seed": ["inspect", "a red fox", "--seed", HUGE, "--casebook", "CASEBOOK"],
    "scan --seed": ["scan", "PROMPTS", "--seed", HUGE, "--casebook", "CASEBOOK"],
    "gui --seed": ["gui", "--screenshot", "window.png", "--prompt", "a red fox", "--seed", HUGE],
    "index query --k": ["index", "query", "index", "a.png", "--k", HUGE],
    "index build --workers": ["index", "build", "IMAGES", "--out", "index", "--workers", HUGE],
    "compare --size": ["compare", "A", "B", "--size", HUGE],
}


@pytest.mark.parametrize("case", cases(HUGE_CASES, {"casebook label FINDING_ID", "inspect --seed"}))
def test_a_number_far_out_of_range_is_one_line_naming_the_range(case, world, casebook, tmp_path):
    names = {"CASEBOOK": casebook, "PROMPTS": world / "prompts.txt", "IMAGES": world / "images",
             "A": world / "a.png", "B": world / "b.png"}
    before = labels(casebook)
    proc = run_cli(*[names.get(a, a) for a in HUGE_CASES[case]], cwd=tmp_path)
    assert_one_plain_line(proc, "must be between", HUGE)
    assert labels(casebook) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["casebook.db"]  # nothing written


@pytest.mark.slow
def test_the_largest_id_sqlite_holds_is_simply_not_found(casebook, tmp_path):
    proc = run_cli("casebook", "label", casebook, str(2**63 - 1), "novel", "--reviewer", "ana", cwd=tmp_path)
    assert_one_plain_line(proc, str(2**63 - 1))


# ------------------------------------------------------------------------------------- a busy casebook

BUSY_CASES = {
    "casebook label": (["casebook", "label", "CASEBOOK", "1", "memorized", "--reviewer", "ana"], False),
    "inspect": (["inspect", "a red fox", "--n", "2", "--casebook", "CASEBOOK"], False),
    "scan": (["scan", "PROMPTS", "--n", "2", "--casebook", "CASEBOOK"], False),
    "casebook list (the file taken whole)": (["casebook", "list", "CASEBOOK"], True),
    "casebook export (the file taken whole)": (["casebook", "export", "CASEBOOK", "--format", "json", "--out",
                                                "x.json"], True),
    "casebook verify (the file taken whole)": (["casebook", "verify", "CASEBOOK"], True),
}


@pytest.mark.parametrize("case", cases(BUSY_CASES, {"casebook label", "casebook list (the file taken whole)"}))
def test_a_casebook_another_program_is_writing_is_busy_not_damaged(case, world, casebook, tmp_path):
    command, exclusive = BUSY_CASES[case]
    names = {"CASEBOOK": casebook, "PROMPTS": world / "prompts.txt"}
    before = labels(casebook)
    with held_for_writing(casebook, exclusive=exclusive):
        start = time.monotonic()
        proc = run_cli(*[names.get(a, a) for a in command], "--timeout", "0.3", cwd=tmp_path)
        took = time.monotonic() - start
    line = assert_one_plain_line(proc, f"another program is writing the casebook {casebook}",
                                 "try again when it finishes, or raise --timeout")
    assert "damaged" not in line
    assert took < 120  # refused before any model loads (a bound against a hang, not a stopwatch)
    assert labels(casebook) == before


# --------------------------------------------------------------------------- the rest of issue 15 point 5


@pytest.mark.parametrize("command", [
    ["inspect", "a red fox", "--model", ""],
    pytest.param(["inspect", "a red fox", "--index", ""], marks=pytest.mark.slow),
    pytest.param(["scan", "PROMPTS", "--casebook", "CASEBOOK", "--model", ""], marks=pytest.mark.slow),
    pytest.param(["generate", "a red fox", "--model", "", "--out", "images"], marks=pytest.mark.slow),
    pytest.param(["gui", "--index", " "], marks=pytest.mark.slow),
], ids=["inspect --model", "inspect --index", "scan --model", "generate --model", "gui --index"])
def test_an_empty_model_or_index_is_refused_not_taken_for_the_demo(command, world, casebook, tmp_path):
    names = {"CASEBOOK": casebook, "PROMPTS": world / "prompts.txt"}
    proc = run_cli(*[names.get(a, a) for a in command], cwd=tmp_path)
    assert_one_plain_line(proc, "is empty: give")


@pytest.mark.parametrize("command", [
    ["inspect", "a red fox", "--casebook", "MISSING"],
    pytest.param(["scan", "PROMPTS", "--casebook", "MISSING"], marks=pytest.mark.slow),
    pytest.param(["gui", "--casebook", "MISSING"], marks=pytest.mark.slow),
], ids=["inspect", "scan", "gui"])
def test_a_casebook_in_a_folder_that_does_not_exist_is_refused_not_created(command, world, tmp_path):
    missing = tmp_path / "no such folder" / "casebook.db"
    proc = run_cli(*[{"MISSING": missing, "PROMPTS": world / "prompts.txt"}.get(a, a) for a in command],
                   cwd=tmp_path)
    assert_one_plain_line(proc, f"the folder {missing.parent} does not exist")
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", [
    ["inspect", "a red fox", "--steps", "0"],
    pytest.param(["inspect", "a red fox", "--guidance", "nan"], marks=pytest.mark.slow),
    pytest.param(["inspect", "a red fox", "--seed", str(2**63 - 1), "--n", "2"], marks=pytest.mark.slow),
    pytest.param(["scan", "PROMPTS", "--steps", "5000"], marks=pytest.mark.slow),
    pytest.param(["generate", "a red fox", "--guidance", "-1", "--out", "images"], marks=pytest.mark.slow),
], ids=["inspect steps", "inspect guidance", "inspect last seed", "scan steps", "generate guidance"])
def test_numbers_are_checked_before_the_model_or_the_casebook_is_touched(command, world, tmp_path):
    # A model that does not exist and a casebook in a fresh folder: were either touched first, the message
    # would be about the model, or a casebook file would appear.
    args = [{"PROMPTS": world / "prompts.txt"}.get(a, a) for a in command]
    args += ["--model", str(tmp_path / "no-model")]
    if args[0] != "generate":
        args += ["--casebook", str(tmp_path / "casebook.db")]
    proc = run_cli(*args, cwd=tmp_path)
    line = assert_one_plain_line(proc, "must be")
    assert "--steps" in line or "--guidance" in line or "--seed" in line
    assert "no-model" not in line and not (tmp_path / "casebook.db").exists()


@pytest.mark.slow
def test_a_model_folder_missing_a_component_names_it(tmp_path):
    from inspector.resources import demo_model_dir

    model = tmp_path / "model"
    shutil.copytree(demo_model_dir(), model)
    shutil.rmtree(model / "tokenizer")
    proc = run_cli("generate", "a red fox", "--n", "1", "--model", model, "--out", tmp_path / "images", cwd=tmp_path)
    assert_one_plain_line(proc, "component 'tokenizer'", f"no folder {model / 'tokenizer'}", "missing")


# ------------------------------------------------------------------------------------- CLIP pickle weights


@pytest.fixture(scope="module")
def pickled_clip(tmp_path_factory) -> Path:
    """A tiny CLIP vision model whose weights exist only as ``pytorch_model.bin`` (a pickle)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("pickled-clip")
    torch.manual_seed(0)
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=8)
    transformers.CLIPVisionModelWithProjection(vision).save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.slow
def test_index_build_refuses_pickle_clip_weights_unless_allowed(pickled_clip, world, tmp_path):
    proc = run_cli("index", "build", world / "images", "--out", tmp_path / "index", "--size", "32", "--workers", 1,
                   "--clip", pickled_clip, cwd=tmp_path)
    assert_one_plain_line(proc, "pytorch_model.bin", "pickle", "--allow-pickle")
    assert not (tmp_path / "index").exists()

    proc = run_cli("index", "build", world / "images", "--out", tmp_path / "index", "--size", "32", "--workers", 1,
                   "--clip", pickled_clip, "--allow-pickle", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("index", "query", tmp_path / "index", world / "a.png", "--k", "1", "--rank-by", "semantic",
                   "--json", cwd=tmp_path)  # the index remembers the opt-in: its queries load the same weights
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"semantic_similarity"' in proc.stdout
