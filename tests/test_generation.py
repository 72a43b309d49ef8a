"""The generation engine: loading any local model safely, seeded sampling, cancel, provenance, reproduce, CLI.

Every model here is tiny and randomly initialised (built and saved in the standard folder layouts in about a
second); the shipped demo model is used too when it has been built.
"""

from __future__ import annotations

import json
import math
import pathlib
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inspector.cli import main
from inspector.generation import (
    GenerationError,
    GenerationOutOfMemory,
    GenerationRequest,
    LoadedModel,
    ModelIdentity,
    ModelLoadError,
    generate,
    load_model,
    reproduce,
    request_from_provenance,
)
from inspector.provenance import (
    PARAMETERS_KEY,
    PROVENANCE_KEY,
    ProvenanceError,
    file_sha256,
    read_provenance,
)
from inspector.resources import demo_model_dir

CAPTIONS = ["a red fox in the snow", "a blue car", "a photo of a cat"]


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory):
    """One torch thread, a private hash cache and an empty Hugging Face cache for the whole module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSPECTOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hub")))
        yield
    torch.set_num_threads(threads)


def _build_demo(folder: Path) -> Path:
    from inspector.demo.tokenizer import save_tokenizer
    from inspector.demo.train import TrainConfig, make_pipeline

    tokenizer = save_tokenizer(folder.parent / f"{folder.name}-tokenizer", CAPTIONS)
    make_pipeline(tokenizer, TrainConfig(block_out_channels=(8, 16), text_width=16)).save_pretrained(
        folder, safe_serialization=True)
    return folder


def _build_sd(folder: Path):
    """A tiny Stable Diffusion pipeline (UNet, VAE, CLIP text encoder and tokenizer, DDIM) saved to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from inspector.demo.tokenizer import save_tokenizer

    tok = save_tokenizer(folder.parent / f"{folder.name}-tokenizer", CAPTIONS)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, projection_dim=16))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    sd = _build_sd(root / "sd")
    from safetensors.torch import save_file

    save_file(_ldm_checkpoint(sd), root / "sd-single.safetensors")
    return {"demo": _build_demo(root / "demo"), "sd": root / "sd", "single": root / "sd-single.safetensors"}


@pytest.fixture(scope="module")
def demo(models) -> LoadedModel:
    return load_model(models["demo"], device="cpu")


@pytest.fixture(scope="module")
def sd(models) -> LoadedModel:
    return load_model(models["sd"], device="cpu")


def _pixels(images) -> list[np.ndarray]:
    return [np.asarray(i.image) for i in images]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------------------- loading


def test_demo_like_model_loads_through_the_public_loader_and_generates(demo, models):
    assert demo.identity.kind == "folder" and demo.identity.class_name == "DemoPipeline"
    assert demo.device == "cpu" and demo.dtype == "float32"
    assert demo.native_size == 32 and demo.fixed_size and demo.default_guidance == 2.0
    assert set(demo.identity.files) == {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"}
    assert demo.identity.files["unet/diffusion_pytorch_model.safetensors"] == file_sha256(
        models["demo"] / "unet" / "diffusion_pytorch_model.safetensors", use_cache=False)
    images = list(generate(demo, GenerationRequest("a red fox", n=2, seed=5, steps=3)))
    assert [(i.index, i.seed, i.filename) for i in images] == [(0, 5, "seed_00000005.png"), (1, 6, "seed_00000006.png")]
    assert all(i.image.size == (32, 32) and i.image.mode == "RGB" for i in images)
    assert not np.array_equal(*_pixels(images))


def test_stable_diffusion_folder_loads_through_the_public_loader_and_generates(sd):
    assert sd.identity.class_name == "StableDiffusionPipeline" and type(sd.pipeline).__name__ == "StableDiffusionPipeline"
    assert sd.native_size == 32 and sd.size_step == 2 and not sd.fixed_size
    assert (sd.default_steps, sd.default_guidance) == (50, 7.5)
    images = list(generate(sd, GenerationRequest("a blue car", negative_prompt="a cat", n=2, steps=3)))
    assert [i.image.size for i in images] == [(32, 32)] * 2
    wide = next(generate(sd, GenerationRequest("a blue car", n=1, steps=2, width=48, height=32)))
    assert wide.image.size == (48, 32)


def test_single_file_safetensors_checkpoint_loads_with_its_config_folder(models, sd):
    single = load_model(models["single"], device="cpu", config=models["sd"])
    assert single.identity.kind == "single-file"
    assert single.identity.sha256 == file_sha256(models["single"])
    request = GenerationRequest("a red fox", n=2, steps=3)
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(generate(single, request)),
                                                     _pixels(generate(sd, request)), strict=True))


def test_single_file_checkpoint_without_a_config_folder_says_to_pass_one(models):
    with pytest.raises(ModelLoadError, match="--config"):
        load_model(models["single"])


def test_hub_id_loads_only_from_the_local_cache(models, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="never downloads"):
        load_model("someone/tiny-demo")
    repo = tmp_path / "models--someone--tiny-demo"
    _copy(models["demo"], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    model = load_model("someone/tiny-demo", device="cpu")
    assert (model.identity.kind, model.identity.source, model.identity.revision) == (
        "hub-cache", "someone/tiny-demo", "0123abcd")


def test_a_missing_folder_is_one_clear_error():
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        load_model("/no/such/model/folder")


def test_a_folder_without_model_index_says_which_folder_to_pick(models, tmp_path):
    with pytest.raises(ModelLoadError, match=r"has no model_index\.json.*pick the folder that holds it"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match=r"found one in .*models.*/(demo|sd)\)"):
        load_model(models["sd"].parent)


def test_the_demo_source_names_the_build_command_when_the_demo_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr("inspector.resources.demo_model_dir", lambda: tmp_path / "model")
    with pytest.raises(ModelLoadError, match="inspector demo build"):
        load_model("demo")


def test_picking_another_model_frees_the_one_loaded_before(models):
    from inspector.session import MODELS

    first = MODELS.get(str(models["demo"]))
    assert MODELS.get(str(models["demo"])) is first  # the same model again is the cached one
    second = MODELS.get(str(models["sd"]))
    assert first.pipeline is None and second.pipeline is not None  # GPU memory would be free for the second
    with pytest.raises(GenerationError, match="released"):  # anyone still holding the first is told, not fed garbage
        list(generate(first, GenerationRequest("a cat", n=1, steps=2)))
    assert len(list(generate(second, GenerationRequest("a cat", n=1, steps=2)))) == 1


def test_unknown_or_absent_devices_and_dtypes_are_refused(models):
    with pytest.raises(ModelLoadError, match="unknown device"):
        load_model(models["demo"], device="tpu")
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model(models["demo"], device="cpu", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model(models["demo"], device="cuda")


def test_weight_hashes_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    import hashlib
    import os

    import inspector.provenance

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    calls = []
    real = inspector.provenance.sha256_file
    monkeypatch.setattr(inspector.provenance, "sha256_file", lambda *a: calls.append(1) or real(*a))
    first = file_sha256(weights)
    assert file_sha256(weights) == first == hashlib.sha256(b"weights").hexdigest() and len(calls) == 1
    weights.write_bytes(b"WEIGHTS")
    os.utime(weights, ns=(1, 1))
    assert file_sha256(weights) == hashlib.sha256(b"WEIGHTS").hexdigest() and len(calls) == 2


# -------------------------------------------------------------------------------------------- security


class _Plant:
    """Unpickling this creates ``marker``: a stand-in for code hidden in a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def test_the_planted_pickle_is_live_when_unpickled_unsafely(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Plant(marker)))  # the test's own sanity check, never the engine
    assert marker.exists()


def _plant_text_encoder_pickle(folder: Path, marker: Path, keep_safetensors: bool) -> None:
    if not keep_safetensors:
        (folder / "text_encoder" / "model.safetensors").unlink()
    torch.save({"text_model.embeddings.token_embedding.weight": _Plant(marker)},
               folder / "text_encoder" / "pytorch_model.bin")


def test_a_model_whose_weights_are_pickles_is_refused_and_the_pickle_never_runs(models, tmp_path):
    folder = _copy(models["demo"], tmp_path / "model")
    marker = tmp_path / "pwned"
    _plant_text_encoder_pickle(folder, marker, keep_safetensors=False)
    with pytest.raises(ModelLoadError, match="pickle-based weights are refused.*run any code.*--allow-pickle"):
        load_model(folder, device="cpu")
    with pytest.raises(ModelLoadError, match="weights-only loader refused"):
        load_model(folder, device="cpu", allow_pickle=True)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_never_opened(models, tmp_path):
    folder = _copy(models["demo"], tmp_path / "model")
    marker = tmp_path / "pwned"
    _plant_text_encoder_pickle(folder, marker, keep_safetensors=True)
    model = load_model(folder, device="cpu")
    assert "text_encoder/pytorch_model.bin" not in model.identity.files
    assert not marker.exists()


def test_a_single_file_pickle_checkpoint_is_refused_and_never_runs(models, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": _Plant(marker)}))
    with pytest.raises(ModelLoadError, match="pickle-based weights are refused"):
        load_model(ckpt, device="cpu", config=models["sd"])
    with pytest.raises(ModelLoadError, match="weights-only loader refused"):
        load_model(ckpt, device="cpu", config=models["sd"], allow_pickle=True)
    assert not marker.exists()


def test_trusted_pickle_weights_load_with_the_explicit_opt_in(models, tmp_path):
    from safetensors.torch import load_file

    folder = _copy(models["demo"], tmp_path / "model")
    tensors = load_file(folder / "text_encoder" / "model.safetensors")
    (folder / "text_encoder" / "model.safetensors").unlink()
    torch.save(tensors, folder / "text_encoder" / "pytorch_model.bin")
    model = load_model(folder, device="cpu", allow_pickle=True)
    assert "text_encoder/pytorch_model.bin" in model.identity.files
    assert next(generate(model, GenerationRequest("a cat", n=1, steps=2))).image.size == (32, 32)


def test_model_folders_that_name_custom_code_are_refused_before_any_import(models, tmp_path):
    marker = tmp_path / "imported"
    folder = _copy(models["demo"], tmp_path / "model")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "unet" / "diffusers.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ModelLoadError, match="ships Python code"):
        load_model(folder, device="cpu")
    (folder / "unet" / "diffusers.py").unlink()
    for bad, message in (({"unet": ["evil_library", "UNet"]}, "neither diffusers nor transformers"),
                         ({"_class_name": ["pipeline", "EvilPipeline"]}, "custom pipeline code"),
                         ({"_class_name": "NoSuchPipeline"}, "does not know the pipeline class"),
                         ({"_class_name": "StableDiffusionImg2ImgPipeline"}, "not a text-to-image pipeline")):
        (folder / "model_index.json").write_text(json.dumps(index | bad))
        with pytest.raises(ModelLoadError, match=message):
            load_model(folder, device="cpu")
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("name", ["demo", "sd"])
def test_batch_size_1_and_4_give_the_same_images(name, request):
    model = request.getfixturevalue(name)
    one = list(generate(model, GenerationRequest("a red fox", n=4, seed=10, steps=4, batch_size=1)))
    four = list(generate(model, GenerationRequest("a red fox", n=4, seed=10, steps=4, batch_size=4)))
    assert [i.seed for i in one] == [i.seed for i in four] == [10, 11, 12, 13]
    for a, b in zip(_pixels(one), _pixels(four), strict=True):
        assert np.array_equal(a, b)
    assert [i.provenance["batch"] for i in four][2] == {"seeds": [10, 11, 12, 13], "index": 2}
    assert all(i.provenance["batch_invariant"] for i in one + four)
    fast = list(generate(model, GenerationRequest("a red fox", n=4, seed=10, steps=4, batch_size=4,
                                                  batch_invariant=False)))
    assert not any(i.provenance["batch_invariant"] for i in fast)


def _sampled_with(model, request: GenerationRequest, threads: int) -> tuple[list, set[bool]]:
    """The images of ``request`` sampled with ``threads`` torch threads, and whether oneDNN was on while it ran."""
    before = torch.get_num_threads()
    seen: list[bool] = []
    torch.set_num_threads(threads)
    try:
        images = list(generate(model, request, progress=lambda _e: seen.append(torch.backends.mkldnn.enabled)))
        return images, set(seen[:-1])  # the last event comes after the pipeline call, the others inside it
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["demo", "sd"])
def test_the_torch_thread_count_does_not_change_the_pixels(name, request):
    # oneDNN's CPU convolutions pick their blocking by thread count (one seed of the demo differed by a level
    # between 1 and 2 threads on an AMD EPYC), so invariant sampling runs PyTorch's own convolutions.
    model = request.getfixturevalue(name)
    ask = GenerationRequest("a red fox", n=3, seed=20, steps=3)
    one, onednn_one = _sampled_with(model, ask, 1)
    two, onednn_two = _sampled_with(model, ask, 2)
    assert onednn_one == onednn_two == {False} and torch.backends.mkldnn.enabled  # turned off for the call only
    for a, b in zip(_pixels(one), _pixels(two), strict=True):
        assert np.array_equal(a, b)
    assert [i.provenance["torch_threads"] for i in one + two] == [1] * 3 + [2] * 3
    assert all(i.provenance["thread_invariant"] for i in one + two)
    # Off with batch invariance (or asked off): oneDNN's kernels, and the record says so.
    fast, onednn_fast = _sampled_with(model, GenerationRequest("a red fox", n=1, seed=20, steps=2,
                                                               batch_invariant=False), 2)
    assert onednn_fast == {True} and not fast[0].provenance["thread_invariant"]


def test_a_record_made_before_thread_invariance_is_reproduced_with_onednn_and_its_thread_count(demo, tmp_path,
                                                                                             monkeypatch):
    image = next(generate(demo, GenerationRequest("a red fox", seeds=[3], steps=3, thread_invariant=False)))
    assert image.provenance["thread_invariant"] is False
    record = dict(image.provenance)
    del record["thread_invariant"]  # what records made before the field look like
    request, _index = request_from_provenance(record)
    assert request.thread_invariant is False
    seen: list[tuple[bool, int]] = []
    import inspector.generation.reproduction as reproduction

    real = reproduction.generate

    def spy(model, req, *args, **kwargs):
        return list(real(model, req, *args, progress=lambda _e: seen.append(
            (torch.backends.mkldnn.enabled, torch.get_num_threads())), **kwargs))

    monkeypatch.setattr(reproduction, "generate", spy)
    assert reproduce(image.save(tmp_path), demo).match
    assert seen and set(seen[:-1]) == {(True, 1)}  # oneDNN's convolutions, with the recorded thread count
    fresh = next(generate(demo, GenerationRequest("a red fox", seeds=[3], steps=3)))
    assert request_from_provenance(fresh.provenance)[0].thread_invariant is True
    assert GenerationRequest("x").thread_invariant is None
    with pytest.raises(GenerationError, match="thread_invariant"):
        GenerationRequest("x", thread_invariant="yes").validate()


@pytest.mark.parametrize(("name", "guidance"), [("demo", 2.0), ("sd", 7.5), ("sd", 1.0)])
def test_per_image_calls_make_a_batch_compute_exactly_what_each_image_computes_alone(name, guidance, request):
    """Float outputs, not 8-bit pixels: a batch of 4 equals 4 batches of one to the last bit, with and without
    classifier-free guidance (whose batch stacks unconditional and conditional rows)."""
    from inspector.generation.invariance import per_image_calls

    pipe = request.getfixturevalue(name).pipeline
    seeds = [3, 4, 5, 6]

    def run(batch: list[int]) -> np.ndarray:
        with per_image_calls(pipe, len(batch)) as state:
            out = pipe("a red fox", num_images_per_prompt=len(batch), num_inference_steps=3, output_type="np",
                       guidance_scale=guidance, generator=[torch.Generator("cpu").manual_seed(s) for s in batch])
        assert state.held and state.calls > 0
        return np.asarray(out.images)

    together = run(seeds)
    alone = np.concatenate([run([s]) for s in seeds])
    assert together.dtype == np.float32 and np.array_equal(together, alone)


class _Mixing(torch.nn.Module):
    """A stand-in network whose rows depend on the whole batch (so any batch shape changes every output)."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def forward(self, sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=True):
        self.seen.append(sample.shape[0])
        out = sample + sample.mean(0, keepdim=True) + encoder_hidden_states.mean((1, 2))[:, None, None, None]
        out = out + added_cond_kwargs["time_ids"].sum(1)[:, None, None, None]
        return (out,) if not return_dict else {"sample": out}


def test_per_image_calls_give_each_image_its_own_rows_and_restore_the_network():
    from inspector.generation.invariance import per_image_calls

    class Pipe:
        unet = _Mixing()

    pipe = Pipe()
    g = torch.Generator().manual_seed(0)
    n = 3
    latents = torch.randn(n, 2, 4, 4, generator=g)
    uncond, cond = torch.randn(n, 5, 8, generator=g), torch.randn(n, 5, 8, generator=g)
    time_ids = torch.randn(2 * n, 6, generator=g)
    # Classifier-free guidance stacks [uncond_1 .. uncond_n, cond_1 .. cond_n].
    batch_in = (torch.cat([latents, latents]), torch.tensor(7), torch.cat([uncond, cond]))
    with per_image_calls(pipe, n) as state:
        together = pipe.unet(*batch_in, added_cond_kwargs={"time_ids": time_ids}, return_dict=False)[0]
    assert state.held and state.calls == 1 and pipe.unet.seen == [2] * n
    assert "forward" not in pipe.unet.__dict__  # the network is itself again
    for i in range(n):
        alone = pipe.unet(torch.cat([latents[i:i + 1]] * 2), torch.tensor(7), torch.cat([uncond[i:i + 1], cond[i:i + 1]]),
                          added_cond_kwargs={"time_ids": time_ids[[i, n + i]]}, return_dict=False)[0]
        assert torch.equal(together[[i, n + i]], alone)
    unsplit = pipe.unet(*batch_in, added_cond_kwargs={"time_ids": time_ids}, return_dict=False)[0]
    assert not torch.equal(unsplit, together)  # the stand-in really does depend on the batch

    with per_image_calls(pipe, 2) as state:  # 6 rows for 2 images: 3 rows each
        pipe.unet(*batch_in, added_cond_kwargs={"time_ids": time_ids})
    assert state.held and pipe.unet.seen[-2:] == [3, 3]
    with per_image_calls(pipe, 4) as state:  # 6 rows cannot be 4 images: computed whole, and recorded as such
        pipe.unet(*batch_in, added_cond_kwargs={"time_ids": time_ids})
    assert not state.held and pipe.unet.seen[-1] == 6


def test_the_same_request_gives_identical_pixels_and_explicit_seeds_pick_images(demo):
    request = GenerationRequest("a blue car", n=3, seed=7, steps=3, batch_size=3)
    first, again = _pixels(generate(demo, request)), _pixels(generate(demo, request))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    picked = list(generate(demo, GenerationRequest("a blue car", seeds=[9, 7], steps=3, batch_size=3)))
    assert [i.seed for i in picked] == [9, 7] and [i.index for i in picked] == [0, 1]


def test_images_stream_out_one_by_one_with_per_step_progress_and_an_eta(demo):
    from inspector.progress import Progress

    events: list[Progress] = []
    stream = generate(demo, GenerationRequest("a cat", n=3, steps=4, batch_size=1), progress=events.append)
    assert events == []  # nothing runs before the first next()
    first = next(stream)
    assert first.seed == 0
    assert [(e.stage, e.done, e.total, e.step, e.steps) for e in events] == [("sampling", 0, 3, s, 4)
                                                                             for s in (1, 2, 3, 4)]
    rest = list(stream)
    assert [i.seed for i in rest] == [1, 2]
    assert (events[-1].done, events[-1].step, events[-1].fraction, events[-1].eta_s) == (3, 4, 1.0, 0.0)
    assert all(type(e) is Progress and e.eta_s is not None and e.eta_s >= 0 for e in events)
    assert [e.done for e in events[4:8]] == [1] * 4
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(1 / 12)  # 1 step of 3 x 4


def test_cancel_mid_batch_keeps_finished_images_and_stops_within_one_step(demo):
    cancel = threading.Event()
    steps_after_cancel = []

    def progress(event):
        if cancel.is_set():
            steps_after_cancel.append(event.step)
        if event.done == 2 and event.step == 2:
            cancel.set()

    images = list(generate(demo, GenerationRequest("a red fox", n=6, steps=5, batch_size=2),
                           progress=progress, cancel=cancel))
    assert [i.seed for i in images] == [0, 1]
    assert steps_after_cancel == []  # the step that saw the cancel was the last one run
    pipe = demo.pipeline
    assert pipe._interrupt is False and type(pipe.scheduler).__name__ == "DDIMScheduler"
    again = list(generate(demo, GenerationRequest("a red fox", n=2, steps=5, batch_size=2)))
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(images), _pixels(again), strict=True))


def test_cancel_before_the_first_batch_yields_nothing(demo):
    cancel = threading.Event()
    cancel.set()
    assert list(generate(demo, GenerationRequest("a cat", n=2, steps=2), cancel=cancel)) == []


def test_cancel_from_another_thread_is_honoured(sd):
    cancel = threading.Event()
    seen = []

    def progress(event):
        seen.append((event.done, event.step))
        if event.done == 1 and event.step == 1:
            other = threading.Thread(target=cancel.set)  # e.g. the GUI thread, on Esc
            other.start()
            other.join()

    images = list(generate(sd, GenerationRequest("a cat", n=3, steps=6, batch_size=1), progress=progress,
                           cancel=cancel))
    assert [i.seed for i in images] == [0]
    assert seen[-1] == (1, 1)


def test_a_failing_progress_callback_raises_its_own_error(demo):
    def progress(event):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        list(generate(demo, GenerationRequest("a cat", n=1, steps=2), progress=progress))
    assert demo.pipeline._interrupt is False


def test_a_compatible_scheduler_can_be_swapped_in_for_one_request(sd):
    image = next(generate(sd, GenerationRequest("a cat", n=1, steps=3, scheduler="EulerDiscrete")))
    assert image.provenance["scheduler"]["class"] == "EulerDiscreteScheduler"
    assert type(sd.pipeline.scheduler).__name__ == "DDIMScheduler"


@pytest.mark.parametrize(("settings", "message"), [
    ({"n": 0}, r"number of images \(n\) must be between 1"),
    ({"steps": 0}, "number of steps must be between 1 and 1000"),
    ({"steps": 5000}, "number of steps must be between 1 and 1000"),
    ({"guidance": -1.0}, "guidance scale must be a number between 0 and 100"),
    ({"guidance": math.nan}, "guidance scale must be a number"),
    ({"seed": -1}, "seed must be between 0"),
    ({"seeds": [3, 3]}, "seeds must be distinct"),
    ({"batch_size": 0}, "batch size must be between 1"),
    ({"n": 2.5}, "must be a whole number"),
    ({"height": 30}, "only makes 32x32 images"),
    ({"width": 9000}, "width must be between 1 and 4096"),
    ({"scheduler": "NoSuchScheduler"}, "is not a diffusers scheduler; choose one of: .*DDIMScheduler"),
])
def test_out_of_range_arguments_are_refused_before_anything_runs(demo, settings, message):
    with pytest.raises(GenerationError, match=message):
        generate(demo, GenerationRequest("a cat", **settings))


def test_sizes_must_fit_the_model(sd):
    with pytest.raises(GenerationError, match="multiples of 2 pixels"):
        generate(sd, GenerationRequest("a cat", height=33))


class _FailingPipe:
    """A pipeline stand-in that fails the way a real one does on a full GPU or a bad setting."""

    def __init__(self, error: Exception):
        from diffusers import DDIMScheduler

        self.error = error
        self.scheduler = DDIMScheduler()
        self._interrupt = False

    def __call__(self, prompt, negative_prompt=None, num_images_per_prompt=1, generator=None,
                 num_inference_steps=25, guidance_scale=7.5, callback_on_step_end=None, output_type="pil"):
        raise self.error


def _fake_model(error: Exception) -> LoadedModel:
    pipe = _FailingPipe(error)
    identity = ModelIdentity(source="fake", kind="folder", class_name="Fake", sha256="0" * 64, files={},
                             config_sha256="0" * 64, name="fake")
    return LoadedModel(pipeline=pipe, identity=identity, device="cuda", dtype="float16", native_size=64,
                       size_step=8, fixed_size=False, default_steps=25, default_guidance=7.5,
                       base_scheduler=pipe.scheduler)


def test_out_of_memory_becomes_a_typed_error_that_says_what_to_lower(monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    model = _fake_model(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(GenerationOutOfMemory, match="out of memory on cuda: lower the batch size"):
        list(generate(model, GenerationRequest("a cat", n=1)))


def test_a_pipeline_refusing_settings_becomes_a_generation_error():
    model = _fake_model(ValueError("`height` and `width` have to be divisible by 8"))
    with pytest.raises(GenerationError, match="the model refused these settings: `height`"):
        list(generate(model, GenerationRequest("a cat", n=1)))


# ------------------------------------------------------------------------------------------ provenance


def test_provenance_is_returned_and_round_trips_through_the_png(sd, tmp_path):
    image = next(generate(sd, GenerationRequest("a red fox", negative_prompt="a blue car", seeds=[3], steps=3,
                                                guidance=5.0)))
    p = image.provenance
    assert (p["prompt"], p["negative_prompt"], p["seed"], p["steps"], p["guidance"]) == (
        "a red fox", "a blue car", 3, 3, 5.0)
    assert (p["width"], p["height"], p["device"], p["dtype"]) == (32, 32, "cpu", "float32")
    assert p["scheduler"]["class"] == "DDIMScheduler" and p["scheduler"]["config"]["beta_schedule"] == "scaled_linear"
    assert p["model"]["sha256"] == sd.identity.sha256 and p["model"]["source"] == sd.identity.source
    assert set(p["versions"]) >= {"diffusers", "transformers", "torch", "inspector"}
    path = image.save(tmp_path)
    assert path.name == "seed_00000003.png" and path.read_bytes() == image.png
    assert read_provenance(path) == p
    with Image.open(path) as im:
        parameters = im.text[PARAMETERS_KEY]
        assert json.loads(im.text[PROVENANCE_KEY]) == p
    assert parameters.splitlines()[:2] == ["a red fox", "Negative prompt: a blue car"]
    assert "Steps: 3, Sampler: DDIMScheduler, CFG scale: 5.0, Seed: 3, Size: 32x32, " \
           f"Model hash: {sd.identity.sha256[:10]}, Model: sd" in parameters


def test_reading_provenance_from_a_foreign_png_says_why_it_cannot(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ProvenanceError, match="no 'inspector' provenance chunk"):
        read_provenance(tmp_path / "plain.png")
    with pytest.raises(ProvenanceError, match="no such file"):
        read_provenance(tmp_path / "missing.png")


# ------------------------------------------------------------------------------------------- reproduce


def test_reproduce_regenerates_identical_pixels_from_the_png(sd, tmp_path):
    images = list(generate(sd, GenerationRequest("a cat", n=3, seed=4, steps=3, batch_size=3,
                                                 scheduler="EulerDiscrete")))
    path = images[1].save(tmp_path)
    result = reproduce(path, sd)
    # Batch-invariant: the seed is regenerated alone and must match to the last bit.
    assert result.match and result.max_abs_diff == 0 and result.same_model and result.batch_seeds == [5]
    fast = list(generate(sd, GenerationRequest("a cat", n=3, seed=4, steps=3, batch_size=3, batch_invariant=False)))
    path = fast[1].save(tmp_path / "fast.png")
    replayed = reproduce(path, sd)  # the record says the batch mattered: the whole batch is replayed
    assert replayed.match and replayed.max_abs_diff == 0 and replayed.batch_seeds == [4, 5, 6]
    alone = reproduce(path, sd, exact_batch=False)
    assert alone.batch_seeds == [5] and alone.max_abs_diff <= 1


def test_reproduce_loads_the_recorded_model_and_reports_a_tampered_image(demo, tmp_path):
    image = next(generate(demo, GenerationRequest("a red fox", seeds=[2], steps=3)))
    path = image.save(tmp_path)
    assert reproduce(path).match  # loads the recorded source itself
    with Image.open(path) as im:
        pixels = np.asarray(im).copy()
        text = dict(im.text)
    pixels[0, 0] = 255 - pixels[0, 0]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    Image.fromarray(pixels).save(path, pnginfo=info)
    result = reproduce(path, demo)
    assert not result.match and result.max_abs_diff > 0 and "MISMATCH" in result.summary()


@pytest.mark.skipif(not (demo_model_dir() / "model_index.json").is_file(), reason="the demo model is not built")
def test_the_shipped_demo_model_loads_generates_and_reproduces(tmp_path):
    model = load_model("demo", device="cpu")
    assert model.identity.kind == "demo" and model.identity.source == "demo"
    images = list(generate(model, GenerationRequest("a photo", n=2, steps=5, batch_size=2)))
    assert reproduce(images[1].save(tmp_path), model).match


# ------------------------------------------------------------------------------------------ command line


def test_cli_generate_writes_pngs_named_by_seed_and_a_manifest(models, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["generate", "a red fox", "--model", str(models["sd"]), "--n", "3", "--seed", "2", "--steps", "3",
            "--batch-size", "2", "--negative", "a cat", "--scheduler", "DDIM", "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.split() == [str(out / f"seed_0000000{s}.png") for s in (2, 3, 4)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["model"]["class_name"] == "StableDiffusionPipeline"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "seed_00000002.png", "seed_00000003.png",
                                                      "seed_00000004.png"]
    import hashlib

    for entry in manifest["images"]:
        png = out / entry["file"]
        assert entry["sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
        assert read_provenance(png) == entry["provenance"] and entry["provenance"]["negative_prompt"] == "a cat"

    assert main(args) == 2  # never overwrites earlier evidence by accident
    assert "already holds generated images" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()

    assert main(["generate", "--reproduce", str(out / "seed_00000003.png")]) == 0
    assert "seed 3: match (max abs pixel difference 0" in capsys.readouterr().out
    assert main(["generate", "--reproduce", str(out / "manifest.json"), "--model", str(models["sd"])]) == 0
    assert capsys.readouterr().out.count(": match") == 3
    assert all(e["provenance"]["batch_invariant"] for e in manifest["images"])

    assert main([*args, "--overwrite", "--fast-batches"]) == 0
    capsys.readouterr()
    fast = json.loads((out / "manifest.json").read_text())["images"]
    assert [e["provenance"]["batch_invariant"] for e in fast] == [False, False, True]  # seed 4 was a batch of one
    assert main(["generate", "--reproduce", str(out / "seed_00000003.png")]) == 0
    assert "regenerated with its batch of 2 seeds" in capsys.readouterr().out

    with Image.open(out / "seed_00000004.png") as im:
        Image.eval(im, lambda v: 255 - v).save(out / "seed_00000004.png", pnginfo=_pnginfo(im.text))
    assert main(["generate", "--reproduce", str(out / "seed_00000004.png")]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def _pnginfo(text: dict):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    return info


@pytest.mark.parametrize(("extra", "message"), [
    (["--n", "0"], "--n: the number of images"),
    (["--steps", "0"], "--steps: the number of steps"),
    (["--guidance", "-2"], "--guidance: the guidance scale"),
    (["--batch-size", "0"], "--batch-size"),
    (["--size", "big"], "--size must be N or WxH"),
    (["--model", "/no/such/model"], "no such file or folder"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--n", "-1"], "not available|--n"),
])
def test_cli_bad_arguments_exit_2_and_write_nothing(models, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    args = ["generate", "a cat", "--model", str(models["demo"]), "--out", str(out)]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inspector: error:") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err)
    assert not out.exists()


def test_cli_refused_pickle_model_exits_2(models, tmp_path, capsys):
    folder = _copy(models["demo"], tmp_path / "model")
    marker = tmp_path / "pwned"
    _plant_text_encoder_pickle(folder, marker, keep_safetensors=False)
    assert main(["generate", "a cat", "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "pickle-based weights are refused" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_cli_help_documents_reproduce_and_the_safety_options(capsys):
    assert main(["generate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--reproduce PNG", "--allow-pickle", "--negative", "--scheduler", "--batch-size", "--device",
                   "manifest.json"):
        assert option in text


def test_importing_the_engine_does_not_import_torch():
    code = ("import sys, inspector.generation, inspector.provenance, inspector.commands.generate; "
            "print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------- single-file checkpoint helper


def _ldm_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """The tiny Stable Diffusion pipeline as one original-layout (LDM) checkpoint, as A1111 and civitai ship.

    The inverse of diffusers' ``convert_ldm_*_checkpoint`` key mapping, generalised to any block count.
    """
    cfg = pipe.unet.config
    per, blocks = cfg.layers_per_block + 1, len(cfg.block_out_channels)
    unet_prefixes = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
                     "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
                     "mid_block.attentions.0.": "middle_block.1.", "mid_block.resnets.0.": "middle_block.0.",
                     "mid_block.resnets.1.": "middle_block.2."}
    for i in range(blocks):
        for j in range(per):
            if j < per - 1:
                unet_prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{per * i + j + 1}.0."
                unet_prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{per * i + j + 1}.1."
            unet_prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{per * i + j}.0."
            unet_prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{per * i + j}.1."
        unet_prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{per * (i + 1)}.0.op."
        attn = "CrossAttn" in cfg.up_block_types[i]
        unet_prefixes[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{per * i + per - 1}.{2 if attn else 1}."
    resnet_parts = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                    ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    ckpt = {}
    for key, value in pipe.unet.state_dict().items():
        prefix = max((p for p in unet_prefixes if key.startswith(p)), key=len)
        rest = key[len(prefix):]
        if "resnets" in prefix:
            for new, old in resnet_parts:
                rest = rest.replace(new, old)
        ckpt["model.diffusion_model." + unet_prefixes[prefix] + rest] = value

    vblocks = len(pipe.vae.config.block_out_channels)
    vae_prefixes = {}
    for i in range(vblocks):
        vae_prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        vae_prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        vae_prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{vblocks - 1 - i}.block."
        vae_prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{vblocks - 1 - i}.upsample."
    for part in ("encoder", "decoder"):
        vae_prefixes |= {f"{part}.mid_block.resnets.0.": f"{part}.mid.block_1.",
                         f"{part}.mid_block.resnets.1.": f"{part}.mid.block_2.",
                         f"{part}.mid_block.attentions.0.": f"{part}.mid.attn_1.",
                         f"{part}.conv_norm_out.": f"{part}.norm_out."}
    attention_parts = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                       ("to_out.0.", "proj_out.")]
    for key, value in pipe.vae.state_dict().items():
        prefix = next((p for p in vae_prefixes if key.startswith(p)), "")
        rest = key[len(prefix):]
        if "attn_1" in vae_prefixes.get(prefix, ""):
            for new, old in attention_parts:
                rest = old + rest[len(new):] if rest.startswith(new) else rest
            value = value[:, :, None, None] if value.ndim == 2 else value
        ckpt["first_stage_model." + vae_prefixes.get(prefix, "") + rest.replace("conv_shortcut", "nin_shortcut")] = value
    for key, value in pipe.text_encoder.state_dict().items():
        ckpt["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value
    return {k: v.detach().contiguous().clone() for k, v in ckpt.items()}


def test_onednn_stays_off_until_the_last_of_two_overlapping_samplings_ends():
    from inspector.generation.sampling import _without_onednn

    first, second = _without_onednn(), _without_onednn()
    first.__enter__()
    second.__enter__()
    assert not torch.backends.mkldnn.enabled
    first.__exit__(None, None, None)  # the other sampling still runs: its convolutions must stay invariant
    assert not torch.backends.mkldnn.enabled
    second.__exit__(None, None, None)
    assert torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # a program that turned it off itself gets it back off
    try:
        with _without_onednn():
            pass
        assert not torch.backends.mkldnn.enabled
    finally:
        torch.backends.mkldnn.enabled = True
