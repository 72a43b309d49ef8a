"""Likeness works offline: the demo's own image embedder, its calibrated threshold, and the verdicts it suggests."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from inspector.extraction import suggest_verdict
from inspector.findings import Neighbour
from inspector.resources import demo_embedder_dir, demo_model_dir, demo_training_dir
from inspector.training_index.semantic import likeness_score

shipped = pytest.mark.skipif(not (demo_embedder_dir() / "model.safetensors").exists(),
                             reason="the demo embedder is not in resources/demo/embedder")


def neighbour(tiled: float, score: float | None, threshold: float | None, k: int | None = 8, **kw) -> Neighbour:
    return Neighbour(rank=1, item_id=1, source="x.png", caption="", duplicate_count=1, l2=tiled, tiled_l2=tiled,
                     ssim=0.5, calibrated_l2=1.5, likeness_score=score, likeness_threshold=threshold,
                     likeness_k=k, **kw)


# --- the score and the rule ---------------------------------------------------------------------------------------


def test_the_likeness_score_is_the_similarity_k_training_images_reach_duplicates_counted():
    sims = np.array([0.99, 0.5, 0.97, 0.8, 0.96])
    assert likeness_score(sims, np.ones(5), 1) == 0.99
    assert likeness_score(sims, np.ones(5), 3) == 0.96
    # One image that occurs 200 times in training is 200 images of its subject.
    assert likeness_score(sims, np.array([1, 1, 1, 200, 1]), 5) == 0.8
    assert likeness_score(sims, np.ones(5), 6) is None  # fewer images than k


def test_the_threshold_comes_from_the_embedder_not_a_fixed_number():
    # 0.80 is below the old fixed 0.9, but above this embedder's calibrated 0.75: a likeness for this embedder.
    s = suggest_verdict([neighbour(0.3, 0.80, 0.75)])
    assert s.verdict == "likeness?" and "0.75" in s.reason and "8 training images" in s.reason
    assert s.evidence["likeness_score"] == 0.80 and s.evidence["likeness_threshold"] == 0.75
    # 0.95 is above 0.9, but not above an embedder whose threshold is 0.97.
    assert suggest_verdict([neighbour(0.3, 0.95, 0.97)]).verdict == "novel"


def test_a_near_copy_stays_memorized_whatever_the_embedder_says():
    assert suggest_verdict([neighbour(0.05, 0.2, 0.75)]).verdict == "memorized"


def test_findings_recorded_before_likeness_scores_still_use_the_similarity_of_the_four():
    old = neighbour(0.3, None, None, None, semantic_similarity=0.95)
    assert suggest_verdict([old]).verdict == "likeness?"


# --- the note that offers a model's own embedder ---------------------------------------------------------------------


def test_inspect_notes_that_the_model_ships_an_embedder_the_index_does_not_use(tmp_path):
    from inspector.session import embedder_note

    sd = tmp_path / "sd15"
    (sd / "safety_checker").mkdir(parents=True)
    (sd / "safety_checker" / "config.json").write_text("{}")
    (sd / "model_index.json").write_text(json.dumps(
        {"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}))
    model = SimpleNamespace(identity=SimpleNamespace(kind="folder", source=str(sd)))
    note = embedder_note(model, SimpleNamespace(manifest={"semantic": None}))
    assert f"build the index with --clip {sd} to get the likeness signal" in note
    assert embedder_note(model, SimpleNamespace(manifest={"semantic": {"model": str(sd)}})) == ""
    (sd / "model_index.json").write_text(json.dumps({"safety_checker": [None, None]}))  # SD 2.x: none
    assert embedder_note(model, SimpleNamespace(manifest={"semantic": None})) == ""


# --- training: deterministic and resumable ------------------------------------------------------------------------


@pytest.mark.slow
def test_an_interrupted_embedder_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from inspector.demo import embedder

    cfg = embedder.EmbedderConfig(steps=4, batch_size=6, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, projection_dim=8, checkpoint_every=2, warmup_steps=1)
    pixels = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    straight, _ = embedder.train_embedder(pixels, cfg, tmp_path / "a", log=lambda _: None)

    real_save = embedder._save_checkpoint

    def killed_after_first_checkpoint(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(embedder, "_save_checkpoint", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        embedder.train_embedder(pixels, cfg, tmp_path / "b", log=lambda _: None)
    monkeypatch.setattr(embedder, "_save_checkpoint", real_save)
    logged = []
    resumed, record = embedder.train_embedder(pixels, cfg, tmp_path / "b", log=logged.append)
    assert "resuming the embedder from step 2" in logged
    assert record["steps_done"] == 4 and [s for s, _ in record["loss"]] == []  # fewer than 50 steps: no points
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_demo_build_embedder_only_refuses_model_options(capsys):
    from inspector.cli import main

    assert main(["demo", "build", "--embedder-only", "--steps", "5"]) == 2
    assert "--embedder-only" in capsys.readouterr().err


# --- the shipped embedder -------------------------------------------------------------------------------------------


@shipped
def test_the_shipped_embedder_is_small_and_loads_through_the_clip_path():
    from inspector.training_index.semantic import SemanticModel, read_likeness

    folder = demo_embedder_dir()
    assert sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) < 3 * 1024 * 1024
    model = SemanticModel.load(folder)
    assert model.input_size == 32
    emb = model.embed(np.zeros((2, 32, 32, 3), np.uint8))
    assert emb.shape == (2, model.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    likeness = read_likeness(folder)
    assert 0 < likeness["threshold"] < 1 and likeness["k"] >= 1
    assert likeness["held_out"]["true_positive_rate"] >= 0.8 and likeness["held_out"]["false_positive_rate"] <= 0.05


@shipped
@pytest.mark.slow
def test_the_demo_index_carries_the_embedders_calibrated_threshold():
    from inspector.training_index import demo_index
    from inspector.training_index.semantic import read_likeness

    with demo_index() as index:
        semantic = index.manifest["semantic"]
        assert Path(semantic["folder"]) == demo_embedder_dir().resolve()
        assert semantic["likeness_threshold"] == read_likeness(demo_embedder_dir())["threshold"]
        [[n]] = index.query(demo_training_dir() / "chelsea_crop_000.png", k=1)
        assert n.l2 == 0.0 and n.likeness_threshold == semantic["likeness_threshold"]
        assert n.likeness_score is not None and n.likeness_k == semantic["likeness_k"]


@shipped
@pytest.mark.slow
@pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model")
def test_the_demo_prompts_get_the_verdicts_they_were_made_for():
    """Issue 13's acceptance: 16 seeds of each demo prompt through the app's own path and the demo index."""
    import torch

    from inspector.demo.evaluate import evaluate_suggestions
    from inspector.resources import demo_prompts_file
    from inspector.training_index import demo_index

    torch.set_num_threads(2)
    with demo_index() as index:
        result = evaluate_suggestions(demo_model_dir().parent, seeds=16, index=index)
    rows = {r["prompt"]: r for r in result["prompts"]}
    prompts = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
    for prompt in prompts["likeness-only"]:
        assert rows[prompt]["likeness?"] >= 12, rows[prompt]
    for prompt in prompts["memorized"]:
        assert rows[prompt]["memorized"] >= 14, rows[prompt]
    for prompt in prompts["novel"]:
        assert rows[prompt]["likeness?"] + rows[prompt]["memorized"] <= 2, rows[prompt]
