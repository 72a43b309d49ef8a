"""The committed demo model does what the demo promises (issue: demo world), on the shipped weights."""

from __future__ import annotations

import json

import pytest

from inspector.resources import demo_model_dir, demo_prompts_file, demo_training_dir

pytestmark = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(),
                                reason="the demo model is not in resources/demo/model")


@pytest.fixture(scope="module")
def evaluation():
    import torch

    from inspector.demo.evaluate import evaluate

    torch.set_num_threads(2)
    return {r["prompt"]: r for r in evaluate(demo_model_dir(), demo_training_dir(), seeds=16, steps=25)["prompts"]}


def test_the_prompts_file_lists_every_kind():
    prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
    assert set(prompts) == {"memorized", "likeness-only", "novel"}
    assert all(prompts[k] for k in prompts)


@pytest.mark.slow
def test_memorized_prompts_copy_their_duplicated_image_for_most_seeds(evaluation):
    prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
    for prompt in prompts["memorized"]:
        assert evaluation[prompt]["within_threshold"] >= 12, evaluation[prompt]


@pytest.mark.slow
def test_novel_prompts_stay_away_from_every_training_image(evaluation):
    prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
    for prompt in prompts["novel"]:
        assert evaluation[prompt]["within_threshold"] <= 2, evaluation[prompt]


@pytest.mark.slow
def test_likeness_prompts_show_the_subject_without_copying(evaluation):
    prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
    for prompt in prompts["likeness-only"]:
        assert evaluation[prompt]["nearest_is_subject"] >= 12, evaluation[prompt]
        assert evaluation[prompt]["within_threshold"] <= 4, evaluation[prompt]


def test_the_model_loads_offline_and_is_small():
    size = sum(f.stat().st_size for f in demo_model_dir().rglob("*") if f.is_file())
    assert size <= 25 * 1024 * 1024
    assert not list(demo_model_dir().rglob("*.bin")), "weights must be safetensors"
