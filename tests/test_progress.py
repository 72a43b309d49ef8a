"""One progress event from every engine, drawn by one terminal renderer (inspector.progress,
inspector.commands.progress)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from inspector.commands.progress import TerminalProgress
from inspector.progress import Progress, format_duration, sampling_fraction
from inspector.resources import demo_model_dir

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").is_file(),
                                reason="the demo model is not built")


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in a shell."""

    def isatty(self) -> bool:
        return True


def a_sampling_run(show) -> None:
    show(Progress("loading model", total=4))
    for done in range(4):
        for step in range(1, 6):
            show(Progress("sampling", done=done, total=4, step=step, steps=5,
                          fraction=sampling_fraction(done, 4, step, 5, 1), eta_s=30.0 - done * 7))
    show(Progress("sampling", done=4, total=4, step=5, steps=5, fraction=1.0, eta_s=0.0))


def test_in_a_log_each_update_is_a_plain_line_without_carriage_returns():
    log = io.StringIO()
    with TerminalProgress(log, interval_s=0) as show:
        a_sampling_run(show)
        show.note("skipped a.png: not an image")
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert lines[0] == "loading model: 0/4"
    assert lines[1] == "  5% sampling: 0/4, step 1/5, about 30 s left"
    assert lines[-2] == "100% sampling: 4/4, step 5/5"  # no time left to announce at the end
    assert lines[-1] == "skipped a.png: not an image"


def test_in_a_log_lines_are_rate_limited_but_every_stage_and_the_end_are_kept():
    log = io.StringIO()
    with TerminalProgress(log, interval_s=3600) as show:
        a_sampling_run(show)
    lines = log.getvalue().splitlines()
    # 22 events: the first of each stage and the finished one, not the 19 in between.
    assert [line.split(":")[0].split()[-1] for line in lines] == ["model", "sampling", "sampling"]
    assert lines[-1].startswith("100% sampling: 4/4")


def test_on_a_terminal_it_is_one_bar_redrawn_in_place():
    term = Terminal()
    with TerminalProgress(term) as show:
        assert show.tty
        a_sampling_run(show)
        drawn = term.getvalue()
    assert "\n" not in drawn  # one line, redrawn: no log of lines
    assert drawn.count("\r") >= 3
    assert "|" in drawn and "100% |" in drawn and "sampling: 4/4, step 5/5" in drawn
    assert term.getvalue().endswith("\r")  # closing wipes the bar: what follows starts on a clean line


def test_a_note_on_a_terminal_goes_above_the_bar():
    term = Terminal()
    with TerminalProgress(term) as show:
        show(Progress("indexing", done=3, fraction=0.25))
        show.note("skipped b.png: truncated file")
    assert "skipped b.png: truncated file\n" in term.getvalue()


def test_the_event_in_words():
    assert Progress("loading index").describe() == "loading index"
    assert Progress("sampling", done=3, total=16, step=12, steps=25, eta_s=40).describe() == \
        "sampling: 3/16, step 12/25, about 40 s left"
    assert Progress("finding cliques", done=16, total=16, message="prompt 2/5").describe() == \
        "finding cliques: 16/16 (prompt 2/5)"
    assert (format_duration(0.2), format_duration(600), format_duration(4 * 3600)) == \
        ("about 1 s", "about 10 min", "about 4.0 h")
    assert sampling_fraction(1, 4, 5, 10, 2) == pytest.approx((10 + 10) / 40)


# --- each engine speaks the same event ----------------------------------------------------------------------------


@pytest.mark.slow
@needs_demo
def test_generation_emits_the_progress_event():
    from inspector.generation import GenerationRequest, generate, load_model

    events: list[Progress] = []
    list(generate(load_model("demo"), GenerationRequest("a cat", n=2, steps=2), progress=events.append))
    assert events and all(type(e) is Progress and e.stage == "sampling" for e in events)
    assert events[-1].fraction == 1.0


def test_an_index_build_emits_the_progress_event(tmp_path):
    from inspector.training_index import build_index

    src = tmp_path / "training"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(src / f"{i}.png")
    events: list[Progress] = []
    build_index(src, tmp_path / "idx", comparison_size=32, workers=1, progress=events.append)
    assert events and all(isinstance(e, Progress) for e in events)
    assert events[-1].fraction == 1.0 and "3 files" in events[-1].describe()


@pytest.mark.slow
@needs_demo
def test_an_inspection_and_a_recorded_run_emit_the_progress_event(tmp_path):
    from inspector.runs import RunStarted, recorded_inspection
    from inspector.session import InspectRequest

    events: list[Progress] = []
    request = InspectRequest("a photo of the cameraman", n=2, steps=2, wen=False)
    list(recorded_inspection(tmp_path / "casebook.db", "demo", "demo", request, kind="inspect",
                             progress=events.append))
    assert all(isinstance(e, Progress) for e in events)
    stages = [e.stage for e in events]
    assert stages[:2] == ["loading model", "loading index"] and "sampling" in stages
    assert stages[-1] == "finding cliques"
    [started] = [e for e in events if isinstance(e, RunStarted)]
    assert started.run_id is not None


@pytest.mark.slow
@needs_demo
def test_a_scan_emits_the_progress_event(tmp_path):
    from inspector.scan import ScanProgress, scan

    events: list[Progress] = []
    list(scan(["colourful squares"], tmp_path / "casebook.db", n=2, steps=2, prompts_file=tmp_path / "p.txt",
              progress=events.append, cancel=threading.Event()))
    assert events and all(isinstance(e, ScanProgress) for e in events)
    assert events[0].stage == "plan" and events[-1].stage == "prompt done" and events[-1].fraction == 1.0
    sampling = [e for e in events if e.stage == "sampling"]
    assert sampling and all(e.message == "prompt 1/1" and e.total == 2 for e in sampling)
