"""Optional semantic feature: CLIP image embeddings from a model the user already has on disk.

Pixel distances find copies; they miss a likeness (the same person or artwork in another pose or crop). CLIP image
embeddings are a second retrieval signal for that: with ``--clip MODEL`` at build time, every unique image gets an
L2-normalised embedding, and queries also retrieve the images whose embeddings are most similar (cosine).

MODEL is a folder holding a transformers CLIP checkpoint (config.json + weights; a full ``CLIPModel`` or a vision
tower ``CLIPVisionModelWithProjection``), a Stable Diffusion 1.x folder (or its ``safety_checker`` folder: the
``StableDiffusionSafetyChecker`` holds a CLIP ViT-L/14 vision tower and projection, used here with nothing to
download), or a Hub id of either already in the local Hugging Face cache. The network is never used. torch and
transformers are imported only when a model is loaded.

An embedder folder may carry ``likeness.json`` (``{"threshold": ..., "score": ..., ...}``): its likeness
threshold, calibrated on held-out pairs (the demo embedder has one, see inspector/demo/embedder.py). The index
copies it into its manifest; without one the threshold is :data:`DEFAULT_LIKENESS_THRESHOLD`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import UserError

#: OpenAI CLIP's normalisation, used when the folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "model.fp16.safetensors")
#: Weight files that are Python pickles (unpickling can run code), as the generation engine names them.
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
#: The safety checker's class in diffusers, and its folder inside a Stable Diffusion 1.x model.
SAFETY_CHECKER = "StableDiffusionSafetyChecker"
SAFETY_CHECKER_FOLDER = "safety_checker"
#: Cosine similarity above which a generation may show a training image's subject, for an embedder that carries
#: no calibrated threshold of its own (likeness.json).
DEFAULT_LIKENESS_THRESHOLD = 0.9
#: ... and how many training images (duplicates counted) must be that similar: 1, the most similar alone.
DEFAULT_LIKENESS_K = 1
LIKENESS_FILE = "likeness.json"


class SemanticModelError(UserError):
    """A CLIP model could not be found or loaded; the message says what to give instead."""


def resolve_model_folder(ref: str | os.PathLike) -> Path:
    """The local folder of a CLIP model given as a folder or as a Hub id in the local cache (never downloads).

    A Stable Diffusion folder (model_index.json) resolves to its safety checker's folder, which holds the CLIP
    vision tower.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return safety_checker_folder(path)
        if not (path / "config.json").is_file():
            raise SemanticModelError(f"{path} has no config.json: give the folder that holds the CLIP model's "
                                     "config.json and weights")
        return path.resolve()
    if path.exists():
        raise SemanticModelError(f"{path} is a file: give the folder that holds the CLIP model")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(ref), local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not available locally"
        raise SemanticModelError(
            f"CLIP model '{ref}' is neither a folder nor in the local Hugging Face cache (the network is never "
            "used): give a folder holding config.json and the weights") from None
    if (folder / "model_index.json").is_file():
        return safety_checker_folder(folder)
    if not (folder / "config.json").is_file():
        raise SemanticModelError(f"the cached '{ref}' has no config.json: give a CLIP model folder instead")
    return folder


def has_safety_checker(model_folder: str | os.PathLike) -> bool:
    """Whether a diffusers model folder ships a safety checker whose CLIP tower can embed images."""
    try:
        safety_checker_folder(Path(model_folder))
    except SemanticModelError:
        return False
    return True


def safety_checker_folder(model_folder: Path) -> Path:
    """The ``safety_checker`` folder of a Stable Diffusion folder, checked to be a StableDiffusionSafetyChecker."""
    try:
        index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SemanticModelError(f"{model_folder / 'model_index.json'} is unreadable ({exc})") from None
    entry = index.get(SAFETY_CHECKER_FOLDER) if isinstance(index, dict) else None
    folder = model_folder / SAFETY_CHECKER_FOLDER
    if not (isinstance(entry, list) and len(entry) == 2 and entry[1] == SAFETY_CHECKER) \
            or not (folder / "config.json").is_file():
        raise SemanticModelError(
            f"{model_folder} is a diffusers model without a safety checker (Stable Diffusion 2.x and SDXL ship "
            "none), so it has no image embedder: give a CLIP model folder or cached Hub id")
    return folder.resolve()


def likeness_score(similarities: np.ndarray, counts: np.ndarray, k: int) -> float | None:
    """A generation's likeness score: the cosine similarity s such that k training images are at least s similar
    to it, each unique image counted as often as it occurs in training (its duplicate count).

    A subject recurs in training (many photos of one person, one artwork in many crops); a category member does
    not, however typical it looks. With k = 1 this is the similarity of the most similar image. None when the
    images given hold fewer than k training images.

    Parameters
    ----------
    similarities
        Cosine similarities in [-1, 1] of the generation to some training images, the most similar among them.
    counts
        How many times each of those images occurs in training (>= 1), in the same order.
    k
        Training images that must be that similar, >= 1.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    order = np.argsort(-sims, kind="stable")
    seen = np.cumsum(np.maximum(np.asarray(counts, dtype=np.int64)[order], 1))
    enough = np.nonzero(seen >= k)[0]
    return float(sims[order[enough[0]]]) if len(enough) else None


def read_likeness(folder: Path) -> dict[str, Any] | None:
    """The embedder's calibrated likeness record (likeness.json), or None when it has none."""
    path = Path(folder) / LIKENESS_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        float(record["threshold"])
        if int(record.get("k", DEFAULT_LIKENESS_K)) < 1:
            raise ValueError("k must be at least 1")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SemanticModelError(f"{path} is unreadable ({exc}): restore it or delete it (then the threshold "
                                 f"is {DEFAULT_LIKENESS_THRESHOLD})") from None
    return record


def model_identity(folder: Path) -> dict[str, Any]:
    """What identifies the model's weights cheaply: config hash, weight file names and sizes."""
    config = (folder / "config.json").read_bytes()
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name in WEIGHT_FILES}
    return {"config_sha256": hashlib.sha256(config).hexdigest(), "weight_files": files}


@dataclass
class SemanticModel:
    """A loaded CLIP image encoder: uint8 canonical images in, L2-normalised embeddings out."""

    folder: Path
    input_size: int
    dim: int
    mean: np.ndarray
    std: np.ndarray
    _model: Any
    _kind: str
    #: Loaded from pickle weights, as the person allowed (``--allow-pickle``); the index remembers it.
    allow_pickle: bool = False

    @classmethod
    def load(cls, ref: str | os.PathLike, *, allow_pickle: bool = False) -> SemanticModel:
        """Load a CLIP image encoder from a folder or the local Hugging Face cache (CPU, float32, eval mode).

        Weights are read from safetensors. A folder whose weights are only a pickle (``pytorch_model.bin``) is
        refused, because unpickling can run code, unless ``allow_pickle`` (``--allow-pickle``, as for models):
        it is then read with torch's weights-only unpickler, which takes tensors and nothing else.
        """
        folder = resolve_model_folder(ref)
        pickled = _only_pickle_weights(folder)
        if pickled and not allow_pickle:
            raise SemanticModelError(
                f"{folder}: the CLIP model's weights are a pickle ({pickled}), refused because unpickling a file "
                "can run any code hidden in it. Use a copy with model.safetensors, or, if you trust where it came "
                "from, pass --allow-pickle (it is then read with torch's weights-only loader)")
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SemanticModelError(f"{folder / 'config.json'} is unreadable ({exc})") from None
        kind = config.get("model_type")
        if kind not in ("clip", "clip_vision_model"):
            raise SemanticModelError(f"{folder} holds a '{kind}' model, not CLIP: give a CLIP model folder")
        if SAFETY_CHECKER in (config.get("architectures") or []):
            kind = "safety_checker"
        try:
            import torch  # noqa: F401 - imported here so that the rest of the index never needs it
            from transformers import CLIPModel, CLIPVisionModelWithProjection
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            if kind == "safety_checker":
                model = _load_safety_checker_tower(folder)
            else:
                model_class = CLIPModel if kind == "clip" else CLIPVisionModelWithProjection
                model = model_class.from_pretrained(str(folder), local_files_only=True, weights_only=True,
                                                    use_safetensors=None if pickled else True).eval()
        except ImportError as exc:
            raise SemanticModelError(f"CLIP embeddings need torch and transformers ({exc})") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise SemanticModelError(f"cannot load the CLIP model in {folder}: {exc}") from None
        if kind == "safety_checker":
            kind = "clip_vision_model"  # from here on it is a vision tower with its projection, like any other
        vision = model.config.vision_config if kind == "clip" else model.config
        dim = int(model.config.projection_dim)
        mean, std = CLIP_MEAN, CLIP_STD
        # A Stable Diffusion folder keeps the safety checker's preprocessing beside it, in feature_extractor/.
        for processor in (folder / "preprocessor_config.json",
                          folder.parent / "feature_extractor" / "preprocessor_config.json"):
            if not processor.is_file():
                continue
            try:
                pre = json.loads(processor.read_text(encoding="utf-8"))
                mean, std = tuple(pre.get("image_mean", mean)), tuple(pre.get("image_std", std))
            except (OSError, ValueError):
                pass  # the defaults are CLIP's own; a broken processor file does not change the model
            break
        return cls(folder=folder, input_size=int(vision.image_size), dim=dim,
                   mean=np.asarray(mean, dtype=np.float32), std=np.asarray(std, dtype=np.float32),
                   _model=model, _kind=kind, allow_pickle=bool(pickled))

    def describe(self, ref: str | os.PathLike) -> dict[str, Any]:
        """The manifest entry for this model, with its likeness threshold (calibrated, or the default)."""
        likeness = read_likeness(self.folder)
        return {
            "model": str(ref),
            "likeness_threshold": float(likeness["threshold"]) if likeness else DEFAULT_LIKENESS_THRESHOLD,
            "likeness_k": int(likeness.get("k", DEFAULT_LIKENESS_K)) if likeness else DEFAULT_LIKENESS_K,
            "likeness_calibration": likeness,
            "folder": str(self.folder),
            "identity": model_identity(self.folder),
            # The person allowed this model's pickle weights at build time; a query loads them the same way.
            **({"allow_pickle": True} if self.allow_pickle else {}),
            "dim": self.dim,
            "input_size": self.input_size,
            "dtype": "float16",
            "file": "semantic.f16",
            "definition": "CLIP image embedding of the centre-cropped image resized to input_size, "
                          "L2-normalised; similarity is the cosine (inner product)",
        }

    def embed(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embeddings of N x R x R x 3 uint8 images (R = input_size): N x dim float32, each of unit length."""
        import torch

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected N x {self.input_size} x {self.input_size} x 3 images, got {images.shape}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = (images[start:start + batch_size].astype(np.float32) / 255.0 - self.mean) / self.std
                pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                if self._kind == "clip":
                    emb = self._model.visual_projection(self._model.vision_model(pixel_values=pixels).pooler_output)
                else:
                    emb = self._model(pixel_values=pixels).image_embeds
                out.append(emb.float().numpy())
        emb = np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norms, 1e-12)).astype(np.float32)


def _only_pickle_weights(folder: Path) -> str:
    """The pickle weight file a CLIP folder would be loaded from (it has no safetensors), else ""."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return ""
    return next((n for n in names if n.endswith(PICKLE_SUFFIXES) or n == "pytorch_model.bin.index.json"), "")


def _load_safety_checker_tower(folder: Path) -> Any:
    """The CLIP vision tower and projection of a StableDiffusionSafetyChecker folder, as a
    ``CLIPVisionModelWithProjection`` (float32, eval mode).

    The checker's tower weights are named ``vision_model.vision_model.*`` in the files Stable Diffusion 1.x ships
    (saved with transformers 4) and ``vision_model.*`` when saved with transformers 5, beside
    ``visual_projection.weight``; loading them as a ``CLIPModel`` would silently leave the tower random, so they
    are mapped by name and every tower weight must be found. Only safetensors are read (pickles can run code).
    """
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPVisionModelWithProjection

    weights = next((folder / name for name in ("model.safetensors", "model.fp16.safetensors")
                    if (folder / name).is_file()), None)
    if weights is None:
        raise SemanticModelError(
            f"{folder} has no model.safetensors (pickle weights such as pytorch_model.bin are refused, because "
            "unpickling can run code): use a copy of the model with safetensors weights")
    config = CLIPConfig.from_pretrained(str(folder), local_files_only=True)
    vision = config.vision_config
    vision.projection_dim = int(config.projection_dim)
    model = CLIPVisionModelWithProjection(vision)
    prefix = "vision_model."
    state = {}
    for name, tensor in load_file(str(weights)).items():
        if name == "visual_projection.weight":
            state[name] = tensor.float()
        elif name.startswith(prefix):
            rest = name[len(prefix):]
            state[prefix + rest.removeprefix(prefix)] = tensor.float()
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise SemanticModelError(f"{weights} is not a complete safety checker: {len(missing)} weights of the "
                                 f"CLIP tower are missing (e.g. {missing[0]})")
    return model.eval()
