"""Where the shipped resources (demo world, icons, style) are, in a source checkout or an installed package."""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "resources"

#: The ``--model`` / ``--index`` value (and the window's picker entry) that means the embedded demo world.
DEMO = "demo"


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource, e.g. ``resource_path("demo", "model")``."""
    packaged = Path(__file__).resolve().parent / "_resources"
    base = packaged if packaged.is_dir() else _CHECKOUT
    return base.joinpath(*parts)


def demo_model_dir() -> Path:
    return resource_path("demo", "model")


def demo_training_dir() -> Path:
    return resource_path("demo", "training")


def demo_embedder_dir() -> Path:
    """The demo's image embedder: a tiny CLIP vision tower trained on the demo world (inspector/demo/embedder.py)."""
    return resource_path("demo", "embedder")


def demo_prompts_file() -> Path:
    return resource_path("demo", "prompts.json")
