"""The benchmark world's training resumes from its checkpoint with the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from inspector.demo.tokenizer import save_tokenizer
from inspector.demo.train import STATE_FILE, TrainConfig, TrainingPaused, make_pipeline, train

CAPTIONS = ["photo of amber", "photo of birch", "colourful circles", "colourful circles"]


def _tiny(tmp_path, name):
    cfg = TrainConfig(steps=6, batch_size=2, warmup_steps=2, checkpoint_every=2, block_out_channels=(8, 16),
                      text_width=16, threads=1)
    tokenizer = save_tokenizer(tmp_path / name / "tokenizer", CAPTIONS)
    pipe = make_pipeline(tokenizer, cfg)
    pixels = torch.linspace(-1, 1, 4 * 3 * 32 * 32).reshape(4, 3, 32, 32)
    return cfg, pipe, pixels


def _weights(pipe):
    return torch.cat([p.detach().flatten() for m in (pipe.unet, pipe.text_encoder) for p in m.parameters()])


def test_a_paused_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    cfg, pipe, pixels = _tiny(tmp_path, "whole")
    whole = train(pipe, pixels, CAPTIONS, cfg, tmp_path / "whole", log=lambda _m: None)
    expected = _weights(pipe)

    cfg, pipe, pixels = _tiny(tmp_path, "legs")
    work = tmp_path / "legs"
    with pytest.raises(TrainingPaused) as paused:
        train(pipe, pixels, CAPTIONS, cfg, work, log=lambda _m: None, leg_seconds=0)
    assert paused.value.step == 2 and (work / STATE_FILE).is_file()
    # A fresh process would start from new weights: so does this one, then resumes from the checkpoint.
    cfg, pipe, pixels = _tiny(tmp_path, "legs2")
    with pytest.raises(TrainingPaused):
        train(pipe, pixels, CAPTIONS, cfg, work, log=lambda _m: None, resume=True, leg_seconds=0)
    cfg, pipe, pixels = _tiny(tmp_path, "legs3")
    record = train(pipe, pixels, CAPTIONS, cfg, work, log=lambda _m: None, resume=True)
    assert torch.equal(_weights(pipe), expected)
    assert record["loss"] == [list(x) for x in whole["loss"]] or record["loss"] == whole["loss"]
    assert [(leg["from_step"], leg["to_step"]) for leg in record["legs"]] == [(0, 2), (2, 4), (4, 6)]


def test_resuming_with_other_settings_is_refused(tmp_path):
    cfg, pipe, pixels = _tiny(tmp_path, "a")
    with pytest.raises(TrainingPaused):
        train(pipe, pixels, CAPTIONS, cfg, tmp_path / "a", log=lambda _m: None, leg_seconds=0)
    cfg.learning_rate = 0.5
    with pytest.raises(ValueError, match="other training settings"):
        train(pipe, pixels, CAPTIONS, cfg, tmp_path / "a", log=lambda _m: None, resume=True)
