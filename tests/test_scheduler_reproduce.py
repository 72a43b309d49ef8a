"""Every scheduler reproduces: an image made with any scheduler the model can use regenerates pixel for pixel.

The story: a reviewer generates with ``--scheduler X``, files the PNG, and later runs ``inspector generate
--reproduce`` on the PNG or on the folder's manifest.json; the pixels must come back identical (max difference 0).
DPM-Solver's config holds ``lambda_min_clipped = -inf``, which strict JSON cannot hold: it is stored as
``{"__float__": "-inf"}`` and restored exactly (records written earlier held the string "-inf": restored too).

The demo model predicts the clean image (``prediction_type="sample"``); PNDM and Euler ancestral cannot sample
such a model, so they are refused before anything runs, with a message that says why. A tiny random-weight
Stable Diffusion pipeline (noise prediction) covers them and DPM-Solver in latent space.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from inspector.cli import main
from inspector.generation import load_model, reproduce, scheduler_names
from inspector.generation.sampling import scheduler_config_from_record
from inspector.provenance import PROVENANCE_KEY, json_restore, json_safe, read_provenance
from inspector.resources import demo_model_dir

#: The schedulers the demo can use (2 images, 3 steps each: fast, and every multistep solver still takes a
#: higher-order step).
DEMO_SCHEDULERS = ["DDIM", "EulerDiscrete", "DPMSolverMultistep", "DPMSolverSinglestep", "UniPCMultistep",
                   "LMSDiscrete", "HeunDiscrete", "DEISMultistep"]
#: Compatible with the demo's DDIM scheduler by class, but unable to sample an x0-predicting model.
DEMO_REFUSED = ["PNDM", "EulerAncestralDiscrete"]
STEPS = "3"

needs_demo = pytest.mark.skipif(not (demo_model_dir() / "model_index.json").is_file(),
                                reason="the demo model is not built")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def _generate(out: Path, *extra: str, steps: str = STEPS) -> dict:
    assert main(["generate", "a red fox", "--n", "2", "--steps", steps, "--device", "cpu", "--out", str(out),
                 *extra]) == 0
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _reproduces_exactly(out: Path, manifest: dict, model, capsys) -> list[int]:
    """Max pixel differences of each image reproduced by the CLI from manifest.json, then from its PNG."""
    capsys.readouterr()
    assert main(["generate", "--reproduce", str(out / "manifest.json"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    diffs = [int(d) for d in re.findall(r": match \(max abs pixel difference (\d+) of 255", printed)]
    assert len(diffs) == len(manifest["images"]), printed
    for entry in manifest["images"]:
        result = reproduce(out / entry["file"], model)
        assert result.match and result.same_model and not result.config_changed
        diffs.append(result.max_abs_diff)
    return diffs


# --------------------------------------------------------------------------------------------- the demo


@needs_demo
@pytest.mark.parametrize("scheduler", DEMO_SCHEDULERS)
@pytest.mark.slow
def test_an_image_made_with_each_demo_scheduler_reproduces_from_its_png_and_the_manifest(
        scheduler, demo, tmp_path, capsys):
    out = tmp_path / scheduler
    manifest = _generate(out, "--scheduler", scheduler)
    record = read_provenance(out / manifest["images"][0]["file"])
    assert record["scheduler"]["class"] == f"{scheduler}Scheduler"
    assert _reproduces_exactly(out, manifest, demo, capsys) == [0, 0, 0, 0]


@needs_demo
@pytest.mark.parametrize("scheduler", DEMO_REFUSED)
@pytest.mark.slow
def test_a_scheduler_that_cannot_sample_the_demo_is_refused_with_the_reason(scheduler, demo, tmp_path, capsys):
    assert f"{scheduler}Scheduler" not in scheduler_names(demo)
    assert main(["generate", "a red fox", "--n", "2", "--steps", STEPS, "--device", "cpu", "--scheduler",
                 scheduler, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{scheduler}Scheduler cannot sample this model: the model predicts 'sample'" in err
    assert "DPMSolverMultistepScheduler" in err  # the schedulers that can are listed
    assert "Traceback" not in err and not list((tmp_path / "out").glob("*.png"))


@pytest.fixture(scope="module")
def dpm_demo(tmp_path_factory) -> Path:
    """The demo model with DPM-Solver multistep as its own scheduler: -inf stands in its saved config."""
    from diffusers import DPMSolverMultistepScheduler

    folder = tmp_path_factory.mktemp("models") / "demo-dpm"
    if not (demo_model_dir() / "model_index.json").is_file():
        pytest.skip("the demo model is not built")
    shutil.copytree(demo_model_dir(), folder)
    own = DPMSolverMultistepScheduler.from_config(DPMSolverMultistepScheduler.load_config(folder / "scheduler"))
    own.save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    index["scheduler"] = ["diffusers", "DPMSolverMultistepScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_a_model_whose_own_scheduler_holds_minus_infinity_reproduces(dpm_demo, tmp_path, capsys):
    out = tmp_path / "out"
    manifest = _generate(out, "--model", str(dpm_demo))
    config = manifest["images"][0]["provenance"]["scheduler"]["config"]
    assert config["lambda_min_clipped"] == {"__float__": "-inf"}  # strict JSON, yet lossless
    assert "_use_default_values" not in config  # so the value itself is what rebuilds the scheduler
    png_config = read_provenance(out / "seed_00000000.png")["scheduler"]["config"]
    assert png_config["lambda_min_clipped"] == {"__float__": "-inf"}
    model = load_model(dpm_demo, device="cpu")
    assert _reproduces_exactly(out, manifest, model, capsys) == [0, 0, 0, 0]


@pytest.mark.slow
def test_a_png_written_before_the_tag_with_the_string_minus_inf_still_reproduces(dpm_demo, tmp_path, capsys):
    out = tmp_path / "out"
    manifest = _generate(out, "--model", str(dpm_demo))
    png = out / "seed_00000001.png"
    record = read_provenance(png)
    record["scheduler"]["config"]["lambda_min_clipped"] = "-inf"  # what older inspectors wrote
    _rewrite_record(png, record)
    for entry in manifest["images"]:
        entry["provenance"]["scheduler"]["config"]["lambda_min_clipped"] = "-inf"
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    model = load_model(dpm_demo, device="cpu")
    assert _reproduces_exactly(out, manifest, model, capsys) == [0, 0, 0, 0]


def _rewrite_record(png: Path, record: dict) -> None:
    with Image.open(png) as im:
        im.load()
        pixels, text = im.copy(), dict(im.text)
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, json.dumps(record) if key == PROVENANCE_KEY else value)
    pixels.save(png, pnginfo=info)


def test_a_scheduler_config_that_fails_is_named_not_the_model(dpm_demo, tmp_path, capsys):
    out = tmp_path / "out"
    _generate(out, "--model", str(dpm_demo))
    png = out / "seed_00000000.png"
    record = read_provenance(png)
    record["scheduler"]["config"]["lambda_min_clipped"] = "minus a lot"  # a damaged record
    _rewrite_record(png, record)
    assert main(["generate", "--reproduce", str(png), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot regenerate seed_00000000.png from its record" in err
    assert "scheduler DPMSolverMultistepScheduler failed with its config" in err
    assert "the model refused" not in err


def test_a_missing_component_or_changed_weights_are_named(dpm_demo, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(dpm_demo, tmp_path / "model")
    out = tmp_path / "out"
    _generate(out, "--model", str(copy), "--n", "1")
    png = out / "seed_00000000.png"
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    kept = weights.read_bytes()
    weights.unlink()
    assert main(["generate", "--reproduce", str(png), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"unet/diffusion_pytorch_model.safetensors is missing from {copy}" in err
    shutil.rmtree(copy / "unet")
    assert main(["generate", "--reproduce", str(png), "--device", "cpu"]) == 2
    assert "its component 'unet' is missing" in capsys.readouterr().err
    (copy / "unet").mkdir()
    shutil.copy(dpm_demo / "unet" / "config.json", copy / "unet")
    weights.write_bytes(kept)
    tensors = load_file(weights)
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * 1.5
    save_file(tensors, weights)
    assert main(["generate", "--reproduce", str(png), "--device", "cpu"]) == 1
    printed = capsys.readouterr().out
    assert "MISMATCH" in printed and "unet/diffusion_pytorch_model.safetensors changed (sha256" in printed


# ------------------------------------------------------------------------------- tiny Stable Diffusion


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    """A random-weight Stable Diffusion folder (VAE, UNet, CLIP text encoder) whose own scheduler is DPM-Solver."""
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from inspector.demo.tokenizer import save_tokenizer

    root = tmp_path_factory.mktemp("sd")
    tok = save_tokenizer(root / "tokenizer", ["a red fox in the snow", "a blue car"])
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, projection_dim=16))
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "model", safe_serialization=True)
    assert math.isinf(json.loads((root / "model" / "scheduler" / "scheduler_config.json").read_text())[
        "lambda_min_clipped"])
    return root / "model"


@pytest.mark.parametrize("scheduler", [None, "DPMSolverMultistep", "PNDM", "EulerAncestralDiscrete"])
@pytest.mark.slow
def test_a_tiny_stable_diffusion_reproduces_with_dpm_solver_and_the_noise_only_schedulers(
        scheduler, tiny_sd, tmp_path, capsys):
    out = tmp_path / "out"
    # PNDM's Runge-Kutta warm-up needs at least 4 steps.
    manifest = _generate(out, "--model", str(tiny_sd), *(["--scheduler", scheduler] if scheduler else []),
                         steps="4" if scheduler == "PNDM" else STEPS)
    record = manifest["images"][0]["provenance"]
    assert record["scheduler"]["class"] == f"{scheduler or 'DPMSolverMultistep'}Scheduler"
    images = [np.asarray(Image.open(out / e["file"])) for e in manifest["images"]]
    assert not np.array_equal(images[0], images[1])  # two seeds, two images: the comparison is not vacuous
    model = load_model(tiny_sd, device="cpu")
    assert _reproduces_exactly(out, manifest, model, capsys) == [0, 0, 0, 0]


def test_too_few_steps_for_pndm_names_the_scheduler_and_the_step_count(tiny_sd, tmp_path, capsys):
    assert main(["generate", "a red fox", "--n", "1", "--steps", "3", "--device", "cpu", "--scheduler", "PNDM",
                 "--model", str(tiny_sd), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the scheduler PNDMScheduler failed with its config at 3 steps" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------- the encoding


def test_non_finite_floats_are_strict_json_and_come_back_exactly():
    record = {"a": -math.inf, "b": [math.inf, math.nan, 1.5], "c": {"d": (2, "inf")}}
    text = json.dumps(json_safe(record), allow_nan=False)  # strict JSON: no NaN or Infinity tokens
    back = json_restore(json.loads(text))
    assert back["a"] == -math.inf and back["b"][0] == math.inf and math.isnan(back["b"][1])
    assert back["b"][2] == 1.5 and back["c"] == {"d": [2, "inf"]}  # a string stays a string


def test_old_bare_strings_become_floats_only_where_the_scheduler_takes_a_float():
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    config = scheduler_config_from_record(DPMSolverMultistepScheduler, {
        "lambda_min_clipped": "-inf", "timestep_spacing": "nan", "beta_end": {"__float__": "inf"}})
    assert config["lambda_min_clipped"] == -math.inf and config["timestep_spacing"] == "nan"
    assert config["beta_end"] == math.inf
    # ``sigma_min: float | None`` counts as a float field too.
    assert scheduler_config_from_record(EulerDiscreteScheduler, {"sigma_min": "Infinity"})["sigma_min"] == math.inf
