"""`inspector scan`: a messy prompt file, a scan that resumes without duplicates, a kill that loses at most one
image, the laptop default and the paper preset of --n, and the estimate printed before the first image."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inspector.errors import UserError
from inspector.resources import demo_model_dir
from inspector.scan import N_DEFAULT, ScanClock, ScanProgress, read_prompts, scan

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")


def test_a_messy_prompt_file_gives_each_distinct_prompt_once(tmp_path):
    long_prompt = "a very long prompt " * 40
    f = tmp_path / "prompts.txt"
    f.write_text("\ufeffthe cameraman\n\n   \nthe  cameraman \nchelsea the cat\r\n" + long_prompt + "\n",
                 encoding="utf-8")
    prompts = read_prompts(f)
    assert prompts == ["the cameraman", "chelsea the cat", " ".join(long_prompt.split())]


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"\n\n  \n", "no prompts"),
                                              (b"\xff\xfe\xfa bad", "UTF-8")])
def test_bad_prompt_files_are_refused_with_a_reason(tmp_path, content, message):
    f = tmp_path / "prompts.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_prompts(f)


@needs_demo
@pytest.mark.slow
def test_an_interrupted_scan_resumes_without_duplicate_findings(tmp_path):
    from inspector.casebook import Casebook

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("astronaut eileen collins\ncolourful squares\n", encoding="utf-8")
    prompts = read_prompts(prompts_file)
    book = tmp_path / "casebook.db"
    kwargs = dict(n=3, steps=5, prompts_file=prompts_file)
    first = scan(prompts, book, **kwargs)
    done = next(first)  # the first prompt finishes, then the scan is interrupted
    first.close()
    assert done["prompt"] == "astronaut eileen collins" and done["findings"]
    with pytest.raises(UserError, match="--resume"):
        next(scan(prompts, book, **kwargs))
    results = list(scan(prompts, book, resume=True, **kwargs))
    assert [r["prompt"] for r in results] == prompts
    assert results[0].get("resumed") and results[0]["findings"] == done["findings"]
    with Casebook.open(book) as cb:
        rows = cb.findings()
    keys = [(r.prompt, r.seed, r.image_sha256) for r in rows]
    assert len(keys) == len(set(keys)), "a finding was recorded twice"
    assert all(r.label == "unlabeled" for r in rows)


def test_n_defaults_to_a_laptop_scale_and_paper_names_the_papers_500():
    from inspector.cli import build_parser

    parser = build_parser()
    base = ["scan", "p.txt", "--casebook", "c.db"]
    assert parser.parse_args(base).n is None and N_DEFAULT == 16
    assert parser.parse_args([*base, "--n", "paper"]).n == 500
    assert parser.parse_args([*base, "--n", "PAPER"]).n == 500
    assert parser.parse_args([*base, "--n", "4"]).n == 4


@pytest.mark.parametrize("value", ["lots", "0", "10001"])
def test_a_bad_n_is_refused_with_exit_2(value, capsys):
    from inspector.cli import main

    assert main(["scan", "p.txt", "--casebook", "c.db", "--n", value]) == 2
    assert "--n" in capsys.readouterr().err


def test_the_estimate_before_the_first_image_is_step_time_x_steps_x_images_left():
    clock = ScanClock(images_left=10, prompts_left=2)
    assert clock.eta() is None  # nothing measured yet
    for step, t in enumerate([100.0, 100.5, 101.0], start=1):  # 0.5 s a step, measured between steps
        clock.on_step(0, step, 20, t)
    assert clock.seconds_per_step == pytest.approx(0.5)
    assert clock.eta() == pytest.approx(0.5 * 20 * 10)
    for step in range(4, 21):
        clock.on_step(0, step, 20, 99.5 + 0.5 * step)
    clock.on_image(110.5)  # 11 s for the image: its 20 steps and its neighbours
    assert clock.eta() == pytest.approx(9 * 11.0)
    clock.on_prompt(115.5)  # the clique and Wen score of a prompt took 5 s: the prompt left will too
    assert clock.eta() == pytest.approx(9 * 11.0 + 5.0)


def recorded_on_disk(book: Path) -> dict[tuple[str, int], tuple[str, str]]:
    """(prompt, seed) -> (PNG sha256, attempt) of every generation a scan recorded beside ``book``, finished
    prompts (their result.json) and unfinished ones (their per-seed records) alike."""
    found: dict[tuple[str, int], tuple[str, str]] = {}
    for folder in Path(book.parent).glob(book.name + ".scan-*/*/"):
        try:
            prompt = (folder / "prompt.txt").read_text(encoding="utf-8")
            result = folder / "result.json"
            records = json.loads(result.read_text(encoding="utf-8"))["generations"] if result.exists() else \
                [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("seed_*.json")]
        except (OSError, ValueError):  # a prompt finishing under our feet: its files move to result.json
            continue
        for r in records:
            assert (prompt, r["seed"]) not in found or found[prompt, r["seed"]][0] == r["png_sha256"]
            found[prompt, r["seed"]] = (r["png_sha256"], r["attempt"])
    return found


@needs_demo
@pytest.mark.slow
def test_a_stopped_scan_keeps_each_image_made_and_resume_makes_only_the_rest(tmp_path):
    prompts = ["the cameraman", "colourful squares"]
    book = tmp_path / "casebook.db"
    kwargs = dict(n=3, steps=2, prompts_file=tmp_path / "prompts.txt")
    cancel = threading.Event()
    events: list[ScanProgress] = []

    def stop_after_one_image_of_the_second_prompt(event: ScanProgress) -> None:
        events.append(event)
        if event.stage == "estimate":  # measured on the first image, before it is recorded
            assert not recorded_on_disk(book)
        if event.prompt_index == 1 and event.stage == "sampling" and event.done >= 1:
            cancel.set()

    first = list(scan(prompts, book, cancel=cancel, progress=stop_after_one_image_of_the_second_prompt, **kwargs))
    assert [r["complete"] for r in first] == [True, False]
    assert first[1] == {"prompt": "colourful squares", "complete": False, "n": 3, "generated": 1,
                        "clique_size": None, "flagged": None, "wen_score": None, "findings": []}
    assert all(isinstance(e, ScanProgress) for e in events)  # the one progress event, with the scan's facts
    plan = events[0]
    assert (plan.stage, plan.images_left, plan.recorded) == ("plan", 6, 0)
    estimate = next(e for e in events if e.stage == "estimate")
    assert estimate.images_left == 6 and estimate.eta_s > 0 and estimate.steps == 2
    before = recorded_on_disk(book)
    assert len(before) == 4

    events.clear()
    second = list(scan(prompts, book, resume=True, progress=events.append, **kwargs))
    assert (events[0].finished, events[0].recorded, events[0].images_left) == (1, 1, 2)
    assert next(e for e in events if e.stage == "estimate").images_left == 2  # only the work left
    done = [e for e in events if e.stage == "prompt done"]
    assert [(e.prompt_index, e.fraction) for e in done] == [(1, 1.0)] and done[0].result["complete"]
    assert second[0]["resumed"] and second[0]["findings"] == first[0]["findings"]
    assert (second[1]["made_now"], second[1]["brought_back"], second[1]["generated"]) == (2, 1, 3)
    after = recorded_on_disk(book)
    assert len(after) == 6 and all(after[key] == before[key] for key in before), "a recorded image was made again"


def start_scan(prompts_file: Path, book: Path, *extra: str, out=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inspector", "scan", str(prompts_file), "--casebook", str(book),
                             "--n", "4", "--steps", "3", *extra], stdout=out, stderr=subprocess.PIPE, text=True)


def signal_when(proc: subprocess.Popen, book: Path, images: int, sig: int, timeout: float = 300.0) -> None:
    """Send ``sig`` once ``images`` generations are recorded on disk (the demo index may be built first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the scan ended before {images} images: {proc.stderr.read()}"
        if len(recorded_on_disk(book)) >= images:
            proc.send_signal(sig)
            return
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the scan did not progress")


@needs_demo
@pytest.mark.slow
def test_a_killed_then_terminated_scan_resumes_to_every_image_recorded_exactly_once(tmp_path):
    from inspector.casebook import Casebook

    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("the cameraman\ncolourful squares\n", encoding="utf-8")
    book = tmp_path / "casebook.db"

    killed = start_scan(prompts_file, book)
    signal_when(killed, book, 2, signal.SIGKILL)  # in the middle of the first prompt
    killed.wait(timeout=60)
    after_kill = recorded_on_disk(book)
    assert len(after_kill) >= 2 and {p for p, _s in after_kill} == {"the cameraman"}

    stopped = start_scan(prompts_file, book, "--resume", "--json", out=subprocess.PIPE)
    signal_when(stopped, book, 5, signal.SIGTERM)  # the first prompt finished, the second under way
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, err
    rows = json.loads(out)  # what finished, and which prompt is not
    assert [(r["prompt"], r["complete"]) for r in rows] == [("the cameraman", True), ("colourful squares", False)]
    assert rows[0]["findings"] and rows[0]["generated"] == 4
    after_term = recorded_on_disk(book)
    assert rows[1]["generated"] == sum(1 for p, _s in after_term if p == "colourful squares") >= 1
    assert "--resume" in err

    done = subprocess.run([sys.executable, "-m", "inspector", "scan", str(prompts_file), "--casebook", str(book),
                           "--n", "4", "--steps", "3", "--resume", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["complete"] for r in rows] == [True, True]
    final = recorded_on_disk(book)
    assert sorted(final) == [(p, s) for p in ("colourful squares", "the cameraman") for s in range(4)]
    for earlier in (after_kill, after_term):
        assert all(final[key] == earlier[key] for key in earlier), "a recorded image was made again"
    assert not list(tmp_path.glob("casebook.db.scan-*/*/seed_*")), "finished prompts keep no images in the state"
    with Casebook.open(book) as cb:
        findings = cb.findings()
    keys = [(f.prompt, f.seed, f.image_sha256) for f in findings]
    assert len(keys) == len(set(keys)), "a finding was recorded twice"
    assert sorted(f.id for f in findings) == sorted(i for r in rows for i in r["findings"])
    assert all(final[f.prompt, f.seed][0] == f.image_sha256 for f in findings)
