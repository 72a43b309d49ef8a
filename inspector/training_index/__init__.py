"""The training index: a local, searchable index of training images that finds each generation's nearest.

Build one with :func:`build_index` (or ``inspector index build SRC --out DIR``), open it with
:meth:`TrainingIndex.open`, and ask :meth:`TrainingIndex.query` for the four nearest training images of any
image, with the distances of Carlini et al. computed at the index's comparison size. No Qt here; torch is only
imported when a CLIP model is configured.

Modules: ``sources`` (walking folders and shards), ``decode`` (bytes to canonical pixels, features, thumbnails),
``features`` (the compact retrieval feature), ``store`` (the folder on disk), ``ingest`` (the build), ``vectors``
(FAISS), ``search`` (queries), ``semantic`` (optional CLIP embeddings).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.training_index.store import TrainingIndexError

if TYPE_CHECKING:
    from inspector.training_index.ingest import (
        DEFAULT_COMPARISON_SIZE,
        BuildProgress,
        BuildReport,
        IndexBuilder,
        SkippedFile,
        build_index,
    )
    from inspector.training_index.search import TrainingIndex

#: Loaded on first use, so that decoding processes (which import this package) skip scikit-image and FAISS.
_LAZY = {
    "DEFAULT_COMPARISON_SIZE": "ingest", "BuildProgress": "ingest", "BuildReport": "ingest",
    "IndexBuilder": "ingest", "SkippedFile": "ingest", "build_index": "ingest", "TrainingIndex": "search",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"inspector.training_index.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'inspector.training_index' has no attribute {name!r}")


#: The demo model's native size (inspector.demo.train.NATIVE_SIZE, not imported here because it needs torch).
DEMO_COMPARISON_SIZE = 32

__all__ = [
    "DEFAULT_COMPARISON_SIZE",
    "DEMO_COMPARISON_SIZE",
    "BuildProgress",
    "BuildReport",
    "IndexBuilder",
    "SkippedFile",
    "TrainingIndex",
    "TrainingIndexError",
    "build_index",
    "demo_index",
]


def _fingerprint(folder: Path) -> str:
    """A short hash of a folder's file names and sizes: a rebuilt demo training set gets a new index."""
    h = hashlib.sha256()
    with os.scandir(folder) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_file():
                h.update(f"{entry.name}\0{entry.stat().st_size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:12]


def demo_index(cache_dir: str | os.PathLike | None = None, progress: Any = None) -> TrainingIndex:
    """The index of the embedded demo training set at the demo model's native 32 px, built on first use.

    Parameters
    ----------
    cache_dir
        Where demo indexes are kept (default: the user cache folder of the application).
    progress
        Called with each :class:`BuildProgress` when the index has to be built.
    """
    from inspector.resources import demo_training_dir
    from inspector.training_index.ingest import build_index
    from inspector.training_index.search import TrainingIndex

    training = demo_training_dir()
    if not training.is_dir():
        raise TrainingIndexError(f"the demo training set is missing ({training}): run inspector demo build")
    if cache_dir is None:
        import platformdirs

        cache_dir = platformdirs.user_cache_dir("memorization-inspector")
    folder = Path(cache_dir) / f"demo-index-{_fingerprint(training)}"
    try:
        index = TrainingIndex.open(folder)
        if index.has_caption_search:
            return index
        index.close()  # built before caption search: resuming adds the caption tables (seconds)
    except TrainingIndexError:
        pass  # not built yet, or interrupted: build or resume it below
    build_index(training, folder, resume=True, comparison_size=None if (folder / "manifest.json").exists()
                else DEMO_COMPARISON_SIZE, progress=progress)
    return TrainingIndex.open(folder)
