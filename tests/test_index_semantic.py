"""The optional semantic signal: CLIP image embeddings from a local model, here a tiny random CLIP built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.training_index import TrainingIndex, TrainingIndexError, build_index

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: the code asks for local files only anyway


def tiny_clip_config():
    return transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    transformers.CLIPModel(tiny_clip_config()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("training")
    rng = np.random.default_rng(0)
    for i in range(12):
        grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(grid).resize((48, 48), Image.Resampling.BICUBIC).save(src / f"{i:02d}.png")
    return src


def test_clip_embeddings_are_stored_and_used_as_a_second_signal(clip_folder, training, tmp_path):
    report = build_index(training, tmp_path / "idx", comparison_size=32, workers=1, clip=clip_folder)
    assert report.unique_images == 12
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["semantic"]["dim"] == 8 and manifest["semantic"]["faiss"]["metric"] == "ip"
    assert (tmp_path / "idx" / "semantic.f16").stat().st_size == 12 * 8 * 2
    with TrainingIndex.open(tmp_path / "idx") as index:
        [by_l2] = index.query(training / "03.png", k=4)
        assert by_l2[0].l2 == 0.0 and by_l2[0].semantic_similarity == pytest.approx(1.0, abs=2e-3)
        assert all(-1.001 <= n.semantic_similarity <= 1.001 for n in by_l2)
        [by_meaning] = index.query(training / "03.png", k=4, rank_by="semantic")
        sims = [n.semantic_similarity for n in by_meaning]
        assert sims == sorted(sims, reverse=True) and by_meaning[0].item_id == by_l2[0].item_id
        assert index.info()["semantic"]["available"] is True


def test_a_vision_only_clip_checkpoint_works_too(training, tmp_path):
    folder = tmp_path / "vision"
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=8)
    transformers.CLIPVisionModelWithProjection(vision).save_pretrained(folder)
    build_index(training, tmp_path / "idx", comparison_size=32, workers=1, clip=folder)
    with TrainingIndex.open(tmp_path / "idx", semantic=True) as index:
        [[n]] = index.query(training / "05.png", k=1, rank_by="semantic")
        assert n.semantic_similarity == pytest.approx(1.0, abs=2e-3)


def test_the_command_line_builds_and_ranks_by_clip_similarity(clip_folder, training, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", "build", str(training), "--out", str(out), "--size", "32", "--workers", "1",
                 "--clip", str(clip_folder)]) == 0
    capsys.readouterr()
    assert main(["index", "query", str(out), str(training / "07.png"), "--rank-by", "semantic", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["neighbours"][0]["source"].endswith("07.png")


def wrong_model(kind: str, root: Path) -> Path:
    """A --clip argument that cannot work: a missing path, a non-CLIP model, a folder without config.json."""
    folder = root / kind
    if kind == "bert":
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    elif kind == "empty":
        folder.mkdir()
    return folder


@pytest.mark.parametrize("kind, message", [
    ("nowhere", "neither a folder nor in the local Hugging Face cache"),
    ("bert", "not CLIP"),
    ("empty", "has no config.json"),
])
def test_a_missing_or_wrong_clip_model_exits_2_before_anything_is_written(training, tmp_path, capsys, kind,
                                                                          message):
    out = tmp_path / "idx"
    assert main(["index", "build", str(training), "--out", str(out), "--clip", str(wrong_model(kind, tmp_path))]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_clip_model_changed_since_the_build_turns_the_signal_off_with_a_warning(training, tmp_path):
    folder = tmp_path / "clip"
    transformers.CLIPModel(tiny_clip_config()).save_pretrained(folder)
    build_index(training, tmp_path / "idx", comparison_size=32, workers=1, clip=folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["projection_dim"] = 8  # same model, rewritten config: the identity no longer matches
    (folder / "config.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    with TrainingIndex.open(tmp_path / "idx") as index:
        with pytest.warns(UserWarning, match="has changed since the index was built"):
            [[n]] = index.query(training / "01.png", k=1)
        assert n.l2 == 0.0 and n.semantic_similarity is None
        with pytest.raises(TrainingIndexError, match="cannot rank by CLIP"):
            index.query(training / "01.png", rank_by="semantic")


# --- Stable Diffusion 1.x folders: the safety checker's CLIP tower is the embedder --------------------------------


@pytest.fixture(scope="module", params=["saved by transformers 5", "named as in SD 1.5's files"])
def sd_folder(tmp_path_factory, request) -> tuple[Path, object]:
    """A Stable-Diffusion-like folder whose safety_checker is a tiny random StableDiffusionSafetyChecker, saved
    with save_pretrained, or with its weights renamed as the transformers-4 files of SD 1.x name them."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("sd15")
    torch.manual_seed(1)
    checker = StableDiffusionSafetyChecker(tiny_clip_config()).eval()
    with torch.no_grad():  # post_init leaves the projection at its default init: make it distinctive
        checker.visual_projection.weight.normal_()
    checker.save_pretrained(root / "safety_checker")
    if request.param != "saved by transformers 5":
        weights = root / "safety_checker" / "model.safetensors"
        old = {k.replace("vision_model.", "vision_model.vision_model.", 1): v for k, v in load_file(weights).items()}
        old["vision_model.vision_model.embeddings.position_ids"] = torch.arange(17)[None]
        save_file(old, weights)
    (root / "feature_extractor").mkdir()
    (root / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.25], "crop_size": {"height": 32, "width": 32}}))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"]}))
    return root, checker


def checker_embeddings(checker, images: np.ndarray, mean, std) -> np.ndarray:
    """What the safety checker itself computes before comparing with its concepts, L2-normalised."""
    x = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        pooled = checker.vision_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))[1]
        emb = checker.visual_projection(pooled).numpy()
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.mark.parametrize("which", ["model folder", "safety_checker folder"])
def test_a_stable_diffusion_folder_lends_its_safety_checker_as_the_embedder(sd_folder, which):
    from inspector.training_index.semantic import SemanticModel

    root, checker = sd_folder
    model = SemanticModel.load(root if which == "model folder" else root / "safety_checker")
    images = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    ours = model.embed(images)
    assert model.input_size == 32 and model.dim == 8
    assert np.allclose(ours, checker_embeddings(checker, images, [0.4, 0.5, 0.6], [0.2, 0.3, 0.25]), atol=1e-5)


def test_index_build_with_the_model_folder_as_clip_stores_the_checker_embeddings(sd_folder, training, tmp_path):
    root, _ = sd_folder
    build_index(training, tmp_path / "idx", comparison_size=32, workers=1, clip=root)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["semantic"]["folder"] == str((root / "safety_checker").resolve())
    assert manifest["semantic"]["likeness_threshold"] == 0.9  # no calibration shipped: the documented default
    with TrainingIndex.open(tmp_path / "idx", semantic=True) as index:
        [[n]] = index.query(training / "04.png", k=1, rank_by="semantic")
        assert n.source.endswith("04.png") and n.semantic_similarity == pytest.approx(1.0, abs=2e-3)


def test_a_diffusers_folder_without_a_safety_checker_is_refused_in_plain_words(tmp_path, training, capsys):
    sdxl = tmp_path / "sdxl"
    sdxl.mkdir()
    (sdxl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    assert main(["index", "build", str(training), "--out", str(tmp_path / "idx"), "--clip", str(sdxl)]) == 2
    assert "without a safety checker" in capsys.readouterr().err
