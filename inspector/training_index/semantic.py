"""Optional semantic feature: CLIP image embeddings from a model the user already has on disk.

Pixel distances find copies; they miss a likeness (the same person or artwork in another pose or crop). CLIP image
embeddings are a second retrieval signal for that: with ``--clip MODEL`` at build time, every unique image gets an
L2-normalised embedding, and queries also retrieve the images whose embeddings are most similar (cosine).

MODEL is a folder holding a transformers CLIP checkpoint (config.json + weights; a full ``CLIPModel`` or a vision
tower ``CLIPVisionModelWithProjection``) or a Hub id already in the local Hugging Face cache. The network is never
used. torch and transformers are imported only when a model is loaded.
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
                "pytorch_model.bin.index.json")


class SemanticModelError(UserError):
    """A CLIP model could not be found or loaded; the message says what to give instead."""


def resolve_model_folder(ref: str | os.PathLike) -> Path:
    """The local folder of a CLIP model given as a folder or as a Hub id in the local cache (never downloads)."""
    path = Path(ref).expanduser()
    if path.is_dir():
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
    if not (folder / "config.json").is_file():
        raise SemanticModelError(f"the cached '{ref}' has no config.json: give a CLIP model folder instead")
    return folder


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

    @classmethod
    def load(cls, ref: str | os.PathLike) -> SemanticModel:
        """Load a CLIP image encoder from a folder or the local Hugging Face cache (CPU, float32, eval mode)."""
        folder = resolve_model_folder(ref)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SemanticModelError(f"{folder / 'config.json'} is unreadable ({exc})") from None
        kind = config.get("model_type")
        if kind not in ("clip", "clip_vision_model"):
            raise SemanticModelError(f"{folder} holds a '{kind}' model, not CLIP: give a CLIP model folder")
        try:
            import torch  # noqa: F401 - imported here so that the rest of the index never needs it
            from transformers import CLIPModel, CLIPVisionModelWithProjection
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            model_class = CLIPModel if kind == "clip" else CLIPVisionModelWithProjection
            model = model_class.from_pretrained(str(folder), local_files_only=True).eval()
        except ImportError as exc:
            raise SemanticModelError(f"CLIP embeddings need torch and transformers ({exc})") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise SemanticModelError(f"cannot load the CLIP model in {folder}: {exc}") from None
        vision = model.config.vision_config if kind == "clip" else model.config
        dim = int(model.config.projection_dim)
        mean, std = CLIP_MEAN, CLIP_STD
        processor = folder / "preprocessor_config.json"
        if processor.is_file():
            try:
                pre = json.loads(processor.read_text(encoding="utf-8"))
                mean, std = tuple(pre.get("image_mean", mean)), tuple(pre.get("image_std", std))
            except (OSError, ValueError):
                pass  # the defaults are CLIP's own; a broken processor file does not change the model
        return cls(folder=folder, input_size=int(vision.image_size), dim=dim,
                   mean=np.asarray(mean, dtype=np.float32), std=np.asarray(std, dtype=np.float32),
                   _model=model, _kind=kind)

    def describe(self, ref: str | os.PathLike) -> dict[str, Any]:
        """The manifest entry for this model."""
        return {
            "model": str(ref),
            "folder": str(self.folder),
            "identity": model_identity(self.folder),
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
