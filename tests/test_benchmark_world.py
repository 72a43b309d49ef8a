"""The benchmark world: written again from its seed with the same pixels, checked against its record, and
evaluated with the same numbers twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from inspector.demo import benchmark_world as bw
from inspector.demo.benchmark import DEFAULT_DIR, WORLD_FILE, ensure_training_set

pytestmark = pytest.mark.slow


def test_subjects_are_distinct_and_counts_as_designed():
    subjects = bw.subjects()
    duplicated = [s for s in subjects if s.kind == "duplicated"]
    assert sorted({s.copies for s in duplicated}) == list(bw.COPIES)
    assert all(sum(s.copies == c for s in duplicated) == bw.SUBJECTS_PER_COUNT for c in bw.COPIES)
    assert len({s.caption for s in subjects}) == len(subjects) == 44
    assert len({s.source for s in duplicated}) == len(duplicated)


def test_the_training_set_is_written_again_with_the_recorded_pixels(tmp_path):
    first = tmp_path / "a"
    ensure_training_set(first, seed=0, log=lambda _m: None)
    world = json.loads((first / WORLD_FILE).read_text())
    assert world["images"] == 3472
    if (DEFAULT_DIR / WORLD_FILE).is_file():  # the shipped model was trained on exactly these pixels
        assert world["pixel_digest"] == json.loads((DEFAULT_DIR / WORLD_FILE).read_text())["pixel_digest"]
    second = tmp_path / "b"
    second.mkdir()
    shutil.copy(first / WORLD_FILE, second / WORLD_FILE)
    ensure_training_set(second, log=lambda _m: None)
    assert bw.pixel_digest(second / "training") == world["pixel_digest"]
    # A record of other pixels is refused, not silently evaluated against.
    third = tmp_path / "c"
    third.mkdir()
    (third / WORLD_FILE).write_text(json.dumps(world | {"pixel_digest": "0" * 64}))
    with pytest.raises(ValueError, match="differs from the one the benchmark model was trained on"):
        ensure_training_set(third, log=lambda _m: None)
    assert sorted(p.name for p in third.iterdir()) == [WORLD_FILE]  # no folder of other pixels left to be used


needs_model = pytest.mark.skipif(not (DEFAULT_DIR / "model" / "model_index.json").is_file(),
                                 reason="the benchmark model is not built")


@needs_model
def test_evaluation_gives_the_same_numbers_twice(tmp_path):
    from inspector.demo.benchmark_eval import EvaluationConfig, evaluate_benchmark

    cfg = EvaluationConfig(n=4, sampling_steps=10, prompts=["photo of heron", "colourful dots"],
                           wen_settings=((1, 1), (5, 4)))
    first = evaluate_benchmark(DEFAULT_DIR, cfg, log=lambda _m: None)
    second = evaluate_benchmark(DEFAULT_DIR, cfg, log=lambda _m: None)
    assert first["results"] == second["results"]
    prompts = {p["prompt"]: p for p in first["results"]["prompts"]}
    assert prompts["photo of heron"]["copies"] == 200 and prompts["colourful dots"]["kind"] == "novel"
    assert set(first["timing"]["seconds_per_prompt"]) >= {"wen_1step_1gen", "wen_5step_4gen"}


@needs_model
def test_evaluate_command_writes_json_and_report_and_refuses_bad_prompts(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "inspector", "evaluate", "--prompt", "a photo of nothing", "--n", "2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not benchmark prompts: a photo of nothing" in bad.stderr
    out = subprocess.run([sys.executable, "-m", "inspector", "evaluate", "--prompt", "photo of heron", "--prompt",
                          "views of jasper", "--prompt", "colourful waves", "--n", "4", "--steps", "10",
                          "--json", str(tmp_path / "e.json"), "--doc", str(tmp_path / "docs" / "evaluation.md")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = (tmp_path / "docs" / "evaluation.md").read_text()
    assert "## Goals" in doc and "Wen et al." in doc and "Carlini et al." in doc
    for png in ("extraction_curve.png", "roc.png", "confusion.png"):
        assert (tmp_path / "docs" / "evaluation" / png).stat().st_size > 1000
    assert json.loads((tmp_path / "e.json").read_text())["config"]["n"] == 4


def test_evaluate_without_a_benchmark_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "inspector", "evaluate", "--benchmark", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "inspector demo build --benchmark" in out.stderr
