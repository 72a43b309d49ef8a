"""Searching an index: FAISS candidates on the compact feature, then the exact distances of the literature.

For each query image:

1. the working size is s = min(the query's square side after the centre crop, the index's comparison size S):
   distances are never computed on an upsampled image (DESIGN.md, "Distances"; the blur of upsampling a 32 px
   generation to 256 px alone costs about 0.11 tiled l2). The query's canonical form is taken at s; every
   training candidate's canonical pixels (stored at S, or decoded again at S) are reduced to s with the same
   filter (bicubic, antialiased when reducing, as :func:`inspector.images.canonical`);
2. FAISS returns the C = max(50, 10 k) images nearest on the compact feature (all of them when the index holds
   fewer), plus, when the index has CLIP embeddings, the C most similar by cosine. Block-mean features barely
   depend on resolution: the query's feature comes from its canonical form at s (at the feature grid's 16 px
   when s is smaller: an upsampled copy used for retrieval only, never for a number);
3. every candidate's exact normalized l2 and tiled l2 (Carlini et al.) are computed at s;
4. the k nearest by tiled l2 are returned, nearest first (ties by l2, then item id): tiled l2 is what the
   suggested verdict is about, so "nearest 1" is the image a "memorized" suggestion names. Calibrated l2 keeps
   Carlini et al.'s definition: l2 to the image over half the mean l2 of the 50 candidates nearest by l2; the
   candidate nearest by l2 (whose calibrated l2 is the likeness signal) is always among the k returned: when it
   is not among the k nearest by tiled l2 it takes the k-th place. ``rank_by="l2"`` orders by l2 instead (the
   paper's ranking) and ``rank_by="semantic"`` by CLIP similarity. Each neighbour carries l2, tiled l2, SSIM and
   calibrated l2, the working size, and the training pixels at that size (for heatmaps of exactly these arrays).
   With embeddings, each also carries the generation's likeness score over all candidates (the similarity k
   training images reach, duplicates counted: :func:`inspector.training_index.semantic.likeness_score`) and the
   embedder's k and threshold from the manifest.

The feature distance is a lower bound of l2 at a common size (see features.py), so retrieval only misses an
image whose l2 is beaten by at least C others' feature distances.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inspector import metrics
from inspector.findings import Neighbour
from inspector.images import canonical
from inspector.training_index import store, vectors
from inspector.training_index.decode import DecodeError, canonical_uint8, open_image, pixels_from_sources
from inspector.training_index.features import compact_features
from inspector.training_index.sources import read_bytes
from inspector.training_index.store import RowFile, RowReader, TrainingIndexError

#: Candidates per query: max(CALIBRATION_N, CANDIDATE_FACTOR * k).
CANDIDATE_FACTOR = 10
#: Canonical images decoded again from their sources (indexes that do not store pixels) kept in memory.
_DECODED_CACHE = 512
#: Bytes of candidates' pixels reduced to a working size below S, kept in memory (keyed by item and size).
_REDUCED_CACHE_BYTES = 64 * 2**20
#: The smallest working size: below it a 4 x 4 tile grid and SSIM's 7 px window stop meaning anything.
MIN_WORKING_SIZE = 8
#: How the query may be ordered: by tiled l2 (the verdict's metric, default), l2 (Carlini et al.), CLIP similarity.
RANKINGS = ("tiled_l2", "l2", "semantic")
#: Captions taken from the caption search per prompt, and the share of words a caption and the prompt must have in
#: common to count as a close match (both ways); the images of close captions are compared exactly, at most
#: CAPTION_CANDIDATES of them per prompt.
CAPTION_MATCHES = 10
CAPTION_CLOSE = 0.8
CAPTION_CANDIDATES = 256


def candidate_count(k: int, count: int) -> int:
    """C, the candidates compared exactly per query for k neighbours: max(50, 10 k), at most the index size."""
    return int(min(count, max(metrics.CALIBRATION_N, CANDIDATE_FACTOR * int(k))))


@dataclass
class Candidates:
    """The indexed images one query is compared with exactly, and why each was taken (item ids, ascending).

    ``by_feature``: the C nearest by compact feature (after a compressed index's exact re-rank of its pool);
    ``by_semantic``: the C most similar by CLIP embedding (when the index has them and the model is available);
    ``by_caption``: images whose caption equals or closely matches the prompt, ``captions`` those captions.
    """

    ids: np.ndarray
    by_feature: np.ndarray
    by_semantic: np.ndarray
    by_caption: np.ndarray
    captions: list[str]

ImageLike = np.ndarray | Image.Image | str | os.PathLike


class TrainingIndex:
    """A built training index, opened for queries. Safe to share between threads.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], semantic: bool | None = None):
        self.folder = Path(folder).resolve()
        self.manifest = manifest
        self.index_id: str = manifest["index_id"]
        self.comparison_size: int = int(manifest["comparison_size"])
        self._grid = int(manifest["feature"]["grid"])
        self._dim = int(manifest["feature"]["dim"])
        self._need_side = int(manifest.get("decode", {}).get("need_side", self.comparison_size))
        self._lock = threading.RLock()
        self._conn = store.connect(self.folder / store.DATABASE, read_only=True)
        self._count = int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        self._has_caption_source = store.has_column(self._conn, "items", "caption_source")
        self._check_files()
        self._faiss = vectors.read(self.folder / store.FEATURES_FAISS, manifest["faiss"])
        s = self.comparison_size
        pix = RowFile(self.folder / store.PIXELS, s * s * 3)
        self._pixels = (RowReader(pix.path, np.uint8, (s, s, 3), self._count)
                        if manifest["pixels"]["stored"] else None)
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()
        self._reduced: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._reduced_bytes = 0
        self._reader_pool: ThreadPoolExecutor | None = None
        self._features_reader: RowReader | None = None  # feature rows on disk: a compressed index's exact re-rank
        self._caption_cache: dict[str, tuple[np.ndarray, list[str]]] = {}  # prompt -> caption-matched images
        self._semantic_wanted = semantic
        self._captions: Any = None  # captions.CaptionSearch, made on first use
        self._semantic_model: Any = None
        self._semantic_index: Any = None
        self._semantic_rows: RowReader | None = None
        self.semantic_problem: str | None = None  # why the semantic signal is off although the index has it
        if semantic and not manifest.get("semantic"):
            raise TrainingIndexError(f"{self.folder} has no CLIP embeddings: rebuild it with --clip MODEL")

    # --- opening -----------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | os.PathLike, *, semantic: bool | None = None) -> TrainingIndex:
        """Open a complete index folder.

        Parameters
        ----------
        folder
            An index folder written by :func:`build_index`.
        semantic
            Use the CLIP signal: ``None`` when the index has it and its model can be loaded (a warning says so
            otherwise), ``True`` to require it, ``False`` never.
        """
        folder = Path(folder)
        manifest = store.read_manifest(folder)
        if manifest.get("status") != store.STATUS_COMPLETE:
            raise TrainingIndexError(
                f"{folder} is an unfinished build (interrupted?): finish it with inspector index build "
                f"{manifest.get('source', 'SRC')} --out {folder} --resume")
        try:
            return cls(folder, manifest, semantic=semantic)
        except TrainingIndexError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file: say which folder, and what to do
            raise TrainingIndexError(f"{folder}: the index cannot be read ({type(exc).__name__}: {exc}); build "
                                     "it again") from None

    def _check_files(self) -> None:
        expected = int(self.manifest["counts"]["unique_images"])
        features = RowFile(self.folder / store.FEATURES, self._dim * 2).rows()
        problems = []
        if self._count != expected:
            problems.append(f"the database has {self._count} images, the manifest {expected}")
        if features < self._count:
            problems.append(f"{store.FEATURES} has {features} rows for {self._count} images")
        if self.manifest["pixels"]["stored"]:
            s = self.comparison_size
            rows = RowFile(self.folder / store.PIXELS, s * s * 3).rows()
            if rows < self._count:
                problems.append(f"{store.PIXELS} has {rows} rows for {self._count} images")
        if not (self.folder / store.FEATURES_FAISS).is_file():
            problems.append(f"{store.FEATURES_FAISS} is missing")
        if problems:
            raise TrainingIndexError(f"{self.folder}: the index files disagree ({'; '.join(problems)}): finish "
                                     "or repair it with inspector index build SRC --out DIR --resume")

    def close(self) -> None:
        """Release the database connection and memory maps."""
        with self._lock:
            pool, self._reader_pool = self._reader_pool, None
        if pool is not None:
            # Outside the lock: a reader still decoding needs the lock to store its result.
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._conn.close()
            for reader in (self._pixels, self._semantic_rows):
                if reader is not None:
                    reader.close()
            self._pixels = None
            self._semantic_rows = None
            if self._features_reader is not None:
                self._features_reader.close()
                self._features_reader = None
            self._faiss = None

    def __enter__(self) -> TrainingIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Number of unique images."""
        return self._count

    @property
    def role(self) -> str:
        """"training" (the model's training set) or "reference" (a collection to check against); indexes built
        before roles existed are training indexes."""
        return self.manifest.get("role") or store.DEFAULT_ROLE

    def identity(self) -> dict[str, Any]:
        """What names this index wherever a result is shown: index_id, role, source (folder or shards), images,
        built (UTC, ISO 8601), content_hash (see ``store.CONTENT_HASH_RULE``) and path. Plain JSON types."""
        with self._lock:
            if not self.manifest.get("content_hash"):
                # Built before content hashes were recorded: computed once from the database (not written
                # back, the folder may be read-only).
                self.manifest["content_hash"] = store.content_hash(self._conn)
        return store.identity(self.manifest, self.folder)

    def __repr__(self) -> str:
        return f"TrainingIndex({str(self.folder)!r}, {self._count} images, {self.comparison_size} px)"

    def decode_query(self, data: bytes) -> tuple[Image.Image, tuple[int, int], str]:
        """An image file's bytes decoded exactly as this index decoded its own files (8-bit RGB, EXIF orientation
        applied, a large JPEG reduced in draft mode to what the comparison needs), so that a file of the index,
        asked about as a query, compares at distance 0 with itself: (image, (width, height) of the image itself,
        Pillow's format name).

        Raises
        ------
        inspector.training_index.decode.DecodeError
            With ``kind`` (not-an-image, damaged, too-large, ...) and a plain-words ``reason``.
        """
        return open_image(data, self._need_side)

    # --- items -------------------------------------------------------------------------------------------------

    def item(self, item_id: int) -> dict[str, Any]:
        """Everything stored about one unique image, including all the sources its bytes were found at."""
        item_id = self._valid_id(item_id)
        with self._lock:
            row = self._conn.execute(
                "SELECT id, sha256, source, caption, width, height, format, licence, origin, duplicate_count, "
                "thumbnail FROM items WHERE id = ?", (item_id,)).fetchone()
            sources = self._conn.execute(
                "SELECT source, caption, licence, origin FROM sources WHERE item_id = ? ORDER BY id",
                (item_id,)).fetchall()
        keys = ("id", "sha256", "source", "caption", "width", "height", "format", "licence", "origin",
                "duplicate_count", "thumbnail")
        out = dict(zip(keys, row, strict=True))
        out["thumbnail"] = str(self.folder / out["thumbnail"])
        out["sources"] = [dict(zip(("source", "caption", "licence", "origin"), s, strict=True)) for s in sources]
        return out

    def thumbnail_path(self, item_id: int) -> Path:
        """Absolute path of the item's display thumbnail (JPEG, longest side 128 px)."""
        item_id = self._valid_id(item_id)
        with self._lock:
            rel = self._conn.execute("SELECT thumbnail FROM items WHERE id = ?", (item_id,)).fetchone()[0]
        return self.folder / rel

    def canonical_image(self, item_id: int, size: int | None = None) -> np.ndarray:
        """The item's canonical form at ``size`` (default: the comparison size S; at most S) as size x size x 3
        float32 in [0, 1]."""
        item_id = self._valid_id(item_id)
        pixels = self.canonical_pixels([item_id]) if size is None else self.pixels_at([item_id], size)
        return pixels[0].astype(np.float32) / 255.0

    def pixels_at(self, item_ids: Sequence[int], size: int) -> np.ndarray:
        """Canonical pixels of several items at a working size ``size`` <= S: N x size x size x 3 uint8.

        The canonical pixels at S, reduced with the canonical filter (bicubic, antialiased); reductions are
        cached per (item, size), so a page of 32 px generations against a 256 px index reduces each candidate
        once.
        """
        size = int(size)
        if not 1 <= size <= self.comparison_size:
            raise TrainingIndexError(f"a working size must be between 1 and the index's comparison size "
                                     f"{self.comparison_size} px (never upsampled), got {size}")
        ids = [int(i) for i in item_ids]
        if size == self.comparison_size:
            return self.canonical_pixels(ids)
        out = np.empty((len(ids), size, size, 3), dtype=np.uint8)
        missing: list[int] = []
        with self._lock:
            for j, item_id in enumerate(ids):
                cached = self._reduced.get((item_id, size))
                if cached is None:
                    missing.append(j)
                else:
                    self._reduced.move_to_end((item_id, size))
                    out[j] = cached
        if missing:
            full = self.canonical_pixels([ids[j] for j in missing])
            for j, pixels in zip(missing, full, strict=True):
                out[j] = reduce_canonical(pixels, size)
            with self._lock:
                for j in missing:
                    key = (ids[j], size)
                    if key not in self._reduced:
                        self._reduced[key] = out[j].copy()
                        self._reduced_bytes += out[j].nbytes
                while self._reduced_bytes > _REDUCED_CACHE_BYTES and self._reduced:
                    _, dropped = self._reduced.popitem(last=False)
                    self._reduced_bytes -= dropped.nbytes
        return out

    def canonical_pixels(self, item_ids: Sequence[int]) -> np.ndarray:
        """Canonical pixels of several items: N x S x S x 3 uint8 (stored, or decoded again from the source)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        self._check_open()
        if self._pixels is not None:
            return self._pixels.read(ids - 1)
        if not len(ids):
            return np.zeros((0, self.comparison_size, self.comparison_size, 3), np.uint8)
        if len(ids) == 1:
            return self._decode_item(int(ids[0]))[None]
        # Pillow releases the GIL while it decodes and resizes: a few threads read candidates side by side.
        return np.stack(list(self._readers().map(self._decode_item, (int(i) for i in ids))))

    def _readers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._reader_pool is None:
                self._reader_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                                       thread_name_prefix="index-reader")
            return self._reader_pool

    def _check_open(self) -> None:
        if self._faiss is None:
            raise TrainingIndexError(f"the index {self.folder} is closed: open it again")

    def _valid_id(self, item_id: int) -> int:
        item_id = int(item_id)
        if not 1 <= item_id <= self._count:
            raise TrainingIndexError(f"no image {item_id} in {self.folder} (ids run from 1 to {self._count})")
        return item_id

    def _decode_item(self, item_id: int) -> np.ndarray:
        with self._lock:
            if item_id in self._decoded:
                self._decoded.move_to_end(item_id)
                return self._decoded[item_id]
            sha = self._conn.execute("SELECT sha256 FROM items WHERE id = ?", (item_id,)).fetchone()[0]
            rows = self._conn.execute(
                "SELECT source, path, raw_path, offset, size, member FROM sources WHERE item_id = ? ORDER BY id",
                (item_id,)).fetchall()
        pixels, problems = pixels_from_sources(rows, sha, self._need_side, self.comparison_size)
        if pixels is not None:
            with self._lock:
                self._decoded[item_id] = pixels
                while len(self._decoded) > _DECODED_CACHE:
                    self._decoded.popitem(last=False)
            return pixels
        raise TrainingIndexError(
            f"training image {item_id} can no longer be read from its sources ({'; '.join(problems)}): this index "
            "reads training images from their files at query time; restore them or rebuild the index")

    # --- queries -----------------------------------------------------------------------------------------------

    def query(self, images: ImageLike | Sequence[ImageLike], k: int = 4, *,
              rank_by: str = "tiled_l2", prompts: str | Sequence[str | None] | None = None) -> list[list[Neighbour]]:
        """The k nearest training images of each query image.

        Parameters
        ----------
        images
            H x W x 3 arrays (uint8, or float in [0, 1]), PIL images or image file paths; one image or a sequence
            (an N x H x W x 3 array is N images). The short side must be at least 8 px.
        k
            Neighbours per query (at least 1; fewer come back when the index is smaller).
        rank_by
            "tiled_l2" (default: the k nearest by tiled l2, the suggested verdict's metric; ties by l2, then id;
            the candidate nearest by l2 is always among them), "l2" (exact normalized l2, as Carlini et al. rank)
            or "semantic" (CLIP cosine similarity, most similar first; needs an index built with --clip).
        prompts
            The prompt that made the images (one for all, or one per image; None: not known). Images whose
            caption equals or closely matches it join the candidates and are compared exactly, whatever their
            features say (Carlini et al. compared each generation with the training image of its caption).

        Returns
        -------
        list of list of Neighbour
            One list per query image, in order, each ordered by rank (1 = nearest). Distances are computed at
            the working size min(query's square side, comparison size), given as each neighbour's
            ``comparison_size``: l2 and tiled_l2 in [0, 1], ssim in [-1, 1], calibrated_l2 >= 0.
        """
        rank_by = rank_by.replace("-", "_")
        if rank_by not in RANKINGS:
            raise TrainingIndexError(f"rank_by must be one of {', '.join(RANKINGS)}, got {rank_by!r}")
        batch, prepared, model, pools, embeddings = self._gather(images, k, prompts, rank_by == "semantic")
        return [self._rank(prepared[qi][0], pools[qi].ids, int(k), rank_by,
                           None if embeddings is None else embeddings[qi]) for qi in range(len(batch))]

    def candidates(self, images: ImageLike | Sequence[ImageLike], k: int = 4, *,
                   prompts: str | Sequence[str | None] | None = None) -> list[Candidates]:
        """The images each query image is compared with exactly when :meth:`query` asks for its k nearest, and
        why each was taken (compact feature, CLIP similarity, caption matching the prompt)."""
        return self._gather(images, k, prompts, False)[3]

    def compare(self, image: ImageLike, item_ids: Sequence[int]) -> list[Neighbour]:
        """The exact distances of one image to chosen indexed images (e.g. those whose caption is the prompt
        that made it), nearest by tiled l2 first; ``calibrated_l2`` is None (there is no crowd to compare with)."""
        self._check_open()
        ids = np.unique(np.asarray([self._valid_id(i) for i in item_ids], dtype=np.int64))
        if not len(ids):
            return []
        pixels, _ = self._prepare_query(image)
        out = self._rank(pixels, ids, len(ids), "tiled_l2", None)
        for n in out:
            n.calibrated_l2 = None
        return out

    def _gather(self, images: ImageLike | Sequence[ImageLike], k: int, prompts: Any, semantic_required: bool
                ) -> tuple[list, list, Any, list[Candidates], np.ndarray | None]:
        """Prepared queries and their candidates: FAISS on the compact feature (a compressed index's pool
        re-ranked by the exact feature), CLIP similarity when available, and caption matches of the prompt."""
        if int(k) < 1:
            raise TrainingIndexError(f"k must be at least 1, got {k}")
        self._check_open()
        batch = _as_batch(images)
        if self._count == 0:
            raise TrainingIndexError(f"{self.folder} holds no images: build it from a folder with usable images")
        per_image = _prompts_for(prompts, len(batch))
        if not batch:
            return [], [], None, [], None
        prepared = [self._prepare_query(x) for x in batch]
        model = self._semantic() if (semantic_required or self._semantic_wanted is not False) else None
        if semantic_required and model is None:
            raise TrainingIndexError(f"{self.folder} cannot rank by CLIP similarity: "
                                     f"{self.semantic_problem or 'it was built without --clip'}")
        n_candidates = candidate_count(int(k), self._count)
        by_feature = self._feature_candidates(np.stack([feature for _, feature in prepared]), n_candidates)
        embeddings = sem_ids = None
        if model is not None:
            inputs = np.stack([_query_pixels(x, model.input_size, self._need_side) for x in batch])
            embeddings = model.embed(inputs)
            _, sem_ids = vectors.search(self._semantic_index, embeddings, n_candidates)
        by_prompt: dict[str, tuple[np.ndarray, list[str]]] = {}
        pools = []
        for qi in range(len(batch)):
            by_semantic = np.zeros(0, np.int64) if sem_ids is None else sem_ids[qi][sem_ids[qi] >= 0] + 1
            prompt = per_image[qi]
            if prompt and prompt not in by_prompt:
                by_prompt[prompt] = self.caption_candidates(prompt)
            by_caption, captions = by_prompt.get(prompt, (np.zeros(0, np.int64), [])) if prompt else (
                np.zeros(0, np.int64), [])
            ids = np.unique(np.concatenate([by_feature[qi], by_semantic, by_caption]).astype(np.int64))
            pools.append(Candidates(ids=ids, by_feature=by_feature[qi], by_semantic=np.unique(by_semantic),
                                    by_caption=by_caption, captions=captions))
        return batch, prepared, model, pools, embeddings

    def _feature_candidates(self, features: np.ndarray, n_candidates: int) -> list[np.ndarray]:
        """Item ids of the n nearest by compact feature, per query. A compressed index returns a pool (its
        calibrated size, at least n) that is re-ranked by the exact feature read from disk, so the n that reach
        the pixel comparison are the flat index's n whenever they are in the pool."""
        record = self.manifest["faiss"]
        if not record.get("compressed"):
            _, ids = vectors.search(self._faiss, features, n_candidates)
            return [row[row >= 0].astype(np.int64) + 1 for row in ids]
        from inspector.training_index.compressed import refine

        pool = max(int(record.get("pool") or 0), n_candidates)
        _, ids = vectors.search(self._faiss, features, pool)
        rows = self._feature_rows()
        return [refine(ids[qi], features[qi], rows.read, n_candidates) + 1 for qi in range(len(features))]

    def _feature_rows(self) -> RowReader:
        with self._lock:
            if self._features_reader is None:
                self._features_reader = RowReader(self.folder / store.FEATURES, "<f2", (self._dim,), self._count)
            return self._features_reader

    def caption_candidates(self, prompt: str) -> tuple[np.ndarray, list[str]]:
        """Item ids (ascending, at most :data:`CAPTION_CANDIDATES`) of the images whose caption equals or closely
        matches ``prompt``, and those captions. "Closely": the caption holds at least
        :data:`CAPTION_CLOSE` of the prompt's words (weighted by rarity) and the prompt at least that share of the
        caption's words. Empty when the index has no captions."""
        from inspector.training_index.captions import caption_words

        if not prompt or not prompt.strip():
            return np.zeros(0, np.int64), []
        with self._lock:
            cached = self._caption_cache.get(prompt)
        if cached is not None:  # every generation of a prompt asks the same question
            return cached
        words = set(caption_words(prompt))
        close = []
        for m in self.match_captions(prompt, k=CAPTION_MATCHES):
            own = set(caption_words(m.caption))
            if m.exact or (m.coverage >= CAPTION_CLOSE and own and len(own & words) / len(own) >= CAPTION_CLOSE):
                close.append(m.caption)
        found: tuple[np.ndarray, list[str]] = (np.zeros(0, np.int64), [])
        if close:
            marks = ",".join("?" * len(close))
            with self._lock:
                rows = self._conn.execute(f"SELECT DISTINCT item_id FROM sources WHERE caption IN ({marks}) "
                                          f"ORDER BY item_id LIMIT {CAPTION_CANDIDATES}", close).fetchall()
            found = (np.asarray([r[0] for r in rows], dtype=np.int64), close)
        with self._lock:
            if len(self._caption_cache) >= 64:
                self._caption_cache.pop(next(iter(self._caption_cache)))
            self._caption_cache[prompt] = found
        return found

    def _prepare_query(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """The query's canonical pixels at its working size (uint8) and its retrieval feature."""
        loaded = _query_image(image, self._need_side)
        side = _square_side(loaded)
        if side < MIN_WORKING_SIZE:
            raise TrainingIndexError(f"a query image of {side} px on its short side is too small to compare "
                                     f"(at least {MIN_WORKING_SIZE} px)")
        size = min(side, self.comparison_size)
        pixels = _canonical_query(loaded, size)
        # Features only find candidates: below the feature grid an upsampled copy serves, never for a number.
        source = pixels if size >= self._grid else _canonical_query(loaded, self._grid)
        return pixels, compact_features(source, self._grid)

    def _rank(self, query: np.ndarray, candidates: np.ndarray, k: int, rank_by: str,
              embedding: np.ndarray | None) -> list[Neighbour]:
        size = int(query.shape[0])
        pixels = self.pixels_at(candidates, size)
        d, tiled = _distances_many(query, pixels)
        by_l2 = np.lexsort((candidates, d))
        crowd = float(d[by_l2[: metrics.CALIBRATION_N]].mean())
        sims = None
        likeness: dict[str, Any] = {}
        if embedding is not None:
            sims = self._semantic_rows.read(candidates - 1).astype(np.float32) @ embedding
            likeness = self._likeness(candidates, sims)
        if rank_by == "semantic":
            order = np.lexsort((candidates, -sims))
        elif rank_by == "l2":
            order = by_l2
        else:
            order = np.lexsort((candidates, d, tiled))
        chosen = [int(j) for j in order[:k]]
        if rank_by == "tiled_l2" and len(chosen) >= 2 and int(by_l2[0]) not in chosen:
            # Its tiled l2 is no smaller than any chosen one's, so the order by tiled l2 still holds.
            chosen[-1] = int(by_l2[0])
        meta = self._neighbour_meta([int(candidates[j]) for j in chosen])
        out = []
        for j in chosen:
            item_id = int(candidates[j])
            train = pixels[j].copy()  # not a view: the candidates' array is freed after the query
            near = metrics.l2(query, train)
            if crowd > 0:
                calibrated: float | None = near / (metrics.CALIBRATION_ALPHA * crowd)
            else:
                calibrated = 0.0 if near == 0 else None  # every near neighbour is identical: no crowd to compare
            m = meta[item_id]
            out.append(Neighbour(
                rank=0, item_id=item_id, source=m["source"], caption=m["caption"],
                duplicate_count=m["duplicate_count"], l2=near, tiled_l2=metrics.tiled_l2(query, train),
                ssim=metrics.ssim(query, train), calibrated_l2=calibrated, index_id=self.index_id,
                thumbnail=str(self.folder / m["thumbnail"]), image_sha256=m["sha256"], licence=m["licence"],
                semantic_similarity=None if sims is None else float(sims[j]), **likeness, comparison_size=size,
                pixels=train, url=m["origin"], index_role=self.role, caption_source=m["caption_source"]))
        if rank_by == "tiled_l2":
            # The numbers shown are metrics.py's own: order by exactly those (they may differ from the batch
            # computation in the last bits, which only matters for ties).
            out.sort(key=lambda n: (n.tiled_l2, n.l2, n.item_id))
        elif rank_by == "l2":
            out.sort(key=lambda n: (n.l2, n.item_id))
        for rank, n in enumerate(out, start=1):
            n.rank = rank
        return out

    def _likeness(self, candidates: np.ndarray, sims: np.ndarray) -> dict[str, Any]:
        """One generation's likeness score (semantic.likeness_score) with the embedder's threshold and k, from its
        similarities to the candidates, which hold the most similar images by embedding."""
        from inspector.training_index.semantic import (
            DEFAULT_LIKENESS_K,
            DEFAULT_LIKENESS_THRESHOLD,
            likeness_score,
        )

        sem = self.manifest["semantic"]
        k = int(sem.get("likeness_k", DEFAULT_LIKENESS_K))
        # Every image counts at least once, so the k most similar decide the score.
        top = np.argsort(-sims, kind="stable")[:k]
        ids = [int(candidates[j]) for j in top]
        with self._lock:
            counts = dict(self._conn.execute(
                f"SELECT id, duplicate_count FROM items WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
        return {"likeness_score": likeness_score(sims[top], np.asarray([counts[i] for i in ids]), k),
                "likeness_threshold": float(sem.get("likeness_threshold", DEFAULT_LIKENESS_THRESHOLD)),
                "likeness_k": k}

    def _neighbour_meta(self, item_ids: list[int]) -> dict[int, dict[str, Any]]:
        marks = ",".join("?" * len(item_ids))
        caption_source = "caption_source" if self._has_caption_source else "NULL"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, source, caption, duplicate_count, thumbnail, sha256, licence, origin, {caption_source} "
                f"FROM items WHERE id IN ({marks})", item_ids).fetchall()
        keys = ("source", "caption", "duplicate_count", "thumbnail", "sha256", "licence", "origin", "caption_source")
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}

    def _semantic(self) -> Any:
        """The CLIP model and its FAISS index, loaded on first use; None when unavailable (reason kept)."""
        if not self.manifest.get("semantic"):
            return None
        with self._lock:
            if self._semantic_model is not None or self.semantic_problem is not None:
                return self._semantic_model
            from inspector.training_index.semantic import SemanticModel, SemanticModelError, model_identity

            sem = self.manifest["semantic"]
            if sem.get("source") == "clip-retrieval":
                return self._clip_retrieval_model(sem)
            try:
                # Pickle weights only where the person allowed them when building this index.
                model = SemanticModel.load(sem["folder"] if Path(sem["folder"]).is_dir() else sem["model"],
                                           allow_pickle=bool(sem.get("allow_pickle")))
                if model_identity(model.folder) != sem["identity"]:
                    raise SemanticModelError(f"the CLIP model at {model.folder} has changed since the index was "
                                             "built")
            except SemanticModelError as exc:
                self.semantic_problem = str(exc)
                if self._semantic_wanted:
                    raise
                warnings.warn(f"CLIP similarity is off for {self.folder}: {exc}", stacklevel=3)
                return None
            self._semantic_index = vectors.read(self.folder / store.SEMANTIC_FAISS, sem["faiss"])
            self._semantic_rows = RowReader(self.folder / store.SEMANTIC, "<f2", (int(sem["dim"]),), self._count)
            self._semantic_model = model
            return model

    def _clip_retrieval_model(self, sem: dict[str, Any]) -> Any:
        """The model that embeds queries like the index's clip-retrieval embeddings (embeddings.py), with the
        index's own lock held; None, with the reason kept (and warned), when it is not available."""
        from inspector.training_index.embeddings import load_query_model
        from inspector.training_index.semantic import SemanticModelError

        try:
            model = load_query_model(sem)
        except SemanticModelError as exc:
            self.semantic_problem = str(exc)
            if self._semantic_wanted:
                raise
            warnings.warn(f"CLIP similarity is off for {self.folder}: {exc}", stacklevel=4)
            return None
        self._semantic_index = vectors.read(self.folder / store.SEMANTIC_FAISS, sem["faiss"])
        self._semantic_rows = RowReader(self.folder / store.SEMANTIC, "<f2", (int(sem["dim"]),), self._count)
        self._semantic_model = model
        return model

    # --- captions ----------------------------------------------------------------------------------------------

    def _caption_search(self) -> Any:
        from inspector.training_index.captions import CaptionSearch

        with self._lock:
            self._check_open()
            if self._captions is None:
                self._captions = CaptionSearch(self._conn, self._lock)
            return self._captions

    @property
    def has_caption_search(self) -> bool:
        """The index has the caption tables (schema 2); an older one is scanned instead (see
        :meth:`caption_search_note`)."""
        return self._caption_search().has_tables

    def caption_count(self) -> int:
        """Distinct non-empty captions in the index (0 when it has none)."""
        return self._caption_search().caption_count()

    def match_captions(self, prompt: str, k: int = 3) -> list[Any]:
        """The k captions in the index that best match ``prompt`` (:class:`captions.CaptionMatch`: caption, file
        count, exact, coverage in [0, 1]): an exact match first, then by rarity-weighted share of the prompt's
        words. Empty when the index has no captions or none shares a word with the prompt."""
        return self._caption_search().match(prompt, k)

    def caption_vocabulary_missing(self, words: Sequence[str]) -> list[str]:
        """Those of ``words`` that occur in no caption of the index (empty when the index has no captions)."""
        if self.caption_count() == 0:
            return []
        return self._caption_search().missing_words(words)

    def caption_search_note(self) -> str | None:
        """Why caption answers are slower or missing for this index (built before caption search), or None."""
        return self._caption_search().note()

    # --- summary -----------------------------------------------------------------------------------------------

    def info(self, disk_usage: bool = True) -> dict[str, Any]:
        """What the index holds: counts, sizes, settings and versions (plain JSON types).

        ``bytes`` (with ``disk_usage``) lists the size of each part on disk; walking the thumbnails of a very large
        index takes a moment, so the GUI may pass ``disk_usage=False``.
        """
        m = self.manifest
        with self._lock:
            q = self._conn.execute
            sources = int(q("SELECT COUNT(*) FROM sources").fetchone()[0])
            skipped = dict(q("SELECT kind, COUNT(*) FROM skipped GROUP BY kind ORDER BY kind").fetchall())
            dims = q("SELECT MIN(width), MAX(width), MIN(height), MAX(height) FROM items").fetchone()
            top = q("SELECT id, duplicate_count, caption, source FROM items WHERE duplicate_count > 1 "
                    "ORDER BY duplicate_count DESC, id LIMIT 5").fetchall()
            duplicated = int(q("SELECT COUNT(*) FROM items WHERE duplicate_count > 1").fetchone()[0])
        info: dict[str, Any] = {
            "path": str(self.folder),
            "index_id": self.index_id,
            "role": self.role,
            "content_hash": self.identity()["content_hash"],
            "index": self.identity(),  # the same identity every other --json names the index by
            "status": m["status"],
            "source": m["source"],
            "created": m["created"],
            "updated": m["updated"],
            "unique_images": self._count,
            "sources": sources,
            "duplicate_sources": sources - self._count,
            "duplicated_images": duplicated,
            "most_duplicated": [{"item_id": i, "duplicate_count": c, "caption": cap, "source": s}
                                for i, c, cap, s in top],
            "skipped": sum(skipped.values()),
            "skipped_by_kind": skipped,
            "image_sizes": {"min_width": dims[0], "max_width": dims[1], "min_height": dims[2],
                            "max_height": dims[3]},
            "comparison_size": self.comparison_size,
            "pixels_stored": bool(m["pixels"]["stored"]),
            "feature": m["feature"],
            "faiss": m["faiss"],
            "compression": m.get("compression"),
            "source_roots": store.source_roots(m),
            "semantic": None if not m.get("semantic") else {
                "model": m["semantic"]["model"], "dim": m["semantic"]["dim"], "available": self.semantic_problem
                is None, "problem": self.semantic_problem, "source": m["semantic"].get("source", "clip"),
                "note": m["semantic"].get("note")},
            "captions": {"distinct": self.caption_count(), "full_text_search": self.has_caption_search},
            "versions": m["versions"],
        }
        if disk_usage:
            info["bytes"] = self._disk_usage()
        return info

    def _disk_usage(self) -> dict[str, int]:
        def size(name: str) -> int:
            try:
                return (self.folder / name).stat().st_size
            except FileNotFoundError:
                return 0

        usage = {
            "database": size(store.DATABASE),
            "features": size(store.FEATURES),
            "pixels": size(store.PIXELS),
            "semantic": size(store.SEMANTIC) + size(store.SEMANTIC_FAISS),
            "faiss": size(store.FEATURES_FAISS) + size(store.FEATURES_TRAINED_FAISS),
            "thumbnails": 0,
        }
        for root, _, files in os.walk(self.folder / store.THUMBS):
            for name in files:
                try:
                    usage["thumbnails"] += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue
        usage["total"] = sum(usage.values()) + size(store.MANIFEST) + size(store.REPORT)
        return usage


def _prompts_for(prompts: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """One prompt (or None) per query image."""
    if prompts is None or isinstance(prompts, str):
        return [prompts] * n
    prompts = list(prompts)
    if len(prompts) != n:
        raise TrainingIndexError(f"{len(prompts)} prompts for {n} query images: give one prompt, or one per image")
    return prompts


def _as_batch(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _query_image(image: ImageLike, need_side: int) -> Image.Image | np.ndarray:
    """A query as a decoded PIL image or a checked H x W (x 3) array; files are decoded exactly as the build
    decoded training files."""
    if isinstance(image, (str, os.PathLike)):
        try:
            data = read_bytes(os.fspath(image))
        except OSError as exc:
            raise TrainingIndexError(f"query image {image}: {exc.strerror or exc}") from None
        try:
            image, _, _ = open_image(data, need_side)
        except DecodeError as exc:
            raise TrainingIndexError(f"query image {image}: {exc.reason}") from None
    elif isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise TrainingIndexError(f"query images must be H x W x 3 arrays, got shape {image.shape}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
    elif not isinstance(image, Image.Image):
        raise TrainingIndexError(f"a query image must be an array, a PIL image or a path, got {type(image).__name__}")
    return image


def _square_side(image: Image.Image | np.ndarray) -> int:
    """Side of the centre-cropped square: the short side, in pixels."""
    return int(min(image.size) if isinstance(image, Image.Image) else min(image.shape[:2]))


def _canonical_query(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """The canonical form of a loaded query as size x size x 3 uint8."""
    try:
        if isinstance(image, Image.Image):
            return canonical_uint8(image, size)
        return (canonical(image, size) * 255.0).round().astype(np.uint8)
    except ValueError as exc:
        raise TrainingIndexError(f"query image: {exc}") from None


def _query_pixels(image: ImageLike, size: int, need_side: int) -> np.ndarray:
    """The canonical form as S x S x 3 uint8; files are decoded exactly as the build decoded training files."""
    return _canonical_query(_query_image(image, need_side), size)


def reduce_canonical(pixels: np.ndarray, size: int) -> np.ndarray:
    """Canonical uint8 pixels reduced to ``size`` x ``size`` with the canonical filter (bicubic; Pillow
    antialiases when reducing), as :func:`inspector.images.canonical` would resize them."""
    if pixels.shape[0] == size:
        return pixels
    im = Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


def _distances_many(query: np.ndarray, pixels: np.ndarray, grid: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Normalized l2 and tiled l2 (``grid`` x ``grid`` tiles, as metrics.tiled_l2) of one uint8 canonical image
    to each of N others of the same size.

    Squared differences are summed exactly in integers, per tile, one image at a time (small enough to stay in
    cache: about 4x faster than one float64 pass over the batch at 256 px); the numbers agree with metrics.py's
    float64 ones to about 1e-15, and the neighbours returned carry metrics.py's own values.
    """
    h, w = query.shape[:2]
    rows = np.linspace(0, h, grid + 1).round().astype(int)
    cols = np.linspace(0, w, grid + 1).round().astype(int)
    scale = 3 * 255.0**2
    counts = np.diff(rows)[:, None] * np.diff(cols)[None, :] * scale
    q = query.astype(np.int16)
    tiles = np.empty((len(pixels), grid, grid), dtype=np.int64)
    for k in range(len(pixels)):
        sq = np.square(pixels[k].astype(np.int16) - q, dtype=np.int32).reshape(h, w * 3)
        tiles[k] = np.add.reduceat(np.add.reduceat(sq, rows[:-1], axis=0, dtype=np.int64), cols[:-1] * 3, axis=1)
    l2 = np.sqrt(tiles.sum(axis=(1, 2)) / (h * w * scale))
    tiled = np.sqrt((tiles / counts).max(axis=(1, 2)))
    return l2, tiled
