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
#: Part of the demo index's cache key: raised when a cached demo index must be built again (2: built with the
#: demo's image embedder, so a demo index cached without embeddings is not reused).
DEMO_INDEX_VERSION = 2

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
    from inspector.resources import demo_embedder_dir, demo_training_dir
    from inspector.training_index.ingest import build_index
    from inspector.training_index.search import TrainingIndex

    training = demo_training_dir()
    if not training.is_dir():
        raise TrainingIndexError(f"the demo training set is missing ({training}): run inspector demo build")
    # The demo's own image embedder gives the index its likeness signal, with nothing to download.
    embedder = demo_embedder_dir()
    clip = embedder if (embedder / "config.json").is_file() else None
    if cache_dir is None:
        import platformdirs

        cache_dir = platformdirs.user_cache_dir("memorization-inspector")
    # A new training set, embedder or embedder location (the manifest names its folder) gets a new index. The
    # embedder's few small files are hashed whole: retrained weights keep their size.
    key = hashlib.sha256(f"{DEMO_INDEX_VERSION}\n{_fingerprint(training)}\n{clip}\n".encode(
        "utf-8", "surrogateescape"))
    for path in sorted(clip.iterdir()) if clip else ():
        if path.is_file():
            key.update(path.name.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    folder = Path(cache_dir) / f"demo-index-{key.hexdigest()[:12]}"
    try:
        index = TrainingIndex.open(folder)
        if index.has_caption_search:
            return index
        index.close()  # built before caption search: resuming adds the caption tables (seconds)
    except TrainingIndexError:
        pass  # not built yet, or interrupted: build or resume it below
    build_index(training, folder, resume=True, comparison_size=None if (folder / "manifest.json").exists()
                else DEMO_COMPARISON_SIZE, progress=progress, clip=clip)
    return TrainingIndex.open(folder)
