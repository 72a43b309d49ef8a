"""Building an index: walk SRC, decode on every core, store each unique image once, then build FAISS.

The build is a generator (:meth:`IndexBuilder.run`) that yields one :class:`BuildProgress` per committed chunk, so
a GUI worker can show progress and stop between chunks; :func:`build_index` runs it to the end. Memory stays
bounded whatever the size of SRC: the walk is lazy, at most ``2 x workers + 1`` chunks are in flight, and the
"already stored?" and "seen these bytes?" questions go to SQLite one chunk at a time.

Interrupted at any moment (even SIGKILL), the index folder is left resumable: ``resume=True`` repairs the row
files against the database, passes over every source already stored, tries the skipped ones again, and finishes
with every good image exactly once (see store.py for why).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from inspector.images import MAX_PIXELS
from inspector.progress import Progress, format_duration
from inspector.timestamps import utc_now
from inspector.training_index import compressed, decode, store, vectors
from inspector.training_index.decode import Decoded, DecodeSettings, decode_one, thumbnail_relpath
from inspector.training_index.features import FEATURE_GRID, feature_definition
from inspector.training_index.sources import Skip, SourceRef, display_name, source_root, total_bytes, walk
from inspector.training_index.store import IndexStore, ItemRow, SourceRow, TrainingIndexError

#: Default side of the comparison square (DESIGN.md); the demo uses its model's native 32.
DEFAULT_COMPARISON_SIZE = 256
MIN_COMPARISON_SIZE = FEATURE_GRID
MAX_COMPARISON_SIZE = 1024
#: Canonical pixels are stored when a row is at most this many pixels on a side (128: 48 KiB per image);
#: larger comparison sizes decode the candidates again from their sources at query time.
STORE_PIXELS_UP_TO = 128
DEFAULT_CHUNK_SIZE = 64
#: With the default worker count, folders smaller than this are decoded in this process: starting the decoding
#: processes (about a second) would cost more than it saves.
POOL_MIN_BYTES = 32 * 1024 * 1024
#: Notes (unreadable caption sidecars and the like) kept in the build report.
MAX_NOTES = 1000


@dataclass
class SkippedFile:
    """A file that is not in the index and why, in plain words."""

    source: str
    kind: str
    reason: str


#: A build's stage words (its progress events' ``stage``) for each ``phase``.
BUILD_STAGES = {"ingesting": "indexing", "finishing": "building the search index", "done": "index built"}


@dataclass(frozen=True)
class BuildProgress(Progress):
    """Where a build stands after a chunk: the one progress event (:class:`inspector.progress.Progress`: ``stage``
    from :data:`BUILD_STAGES`, ``done`` = ``files_done``, ``fraction`` the share of the bytes handled or None
    when SRC holds no bytes to read, ``eta_s`` estimated from bytes) with the build's own counts.

    ``phase``: "ingesting", "finishing" or "done". ``files_done`` counts the sources handled in this run,
    including those already stored by an earlier run and those skipped; ``rate`` is files decoded per second in
    this run; ``newly_skipped`` the files this chunk could not index.
    """

    phase: str = "ingesting"
    files_done: int = 0
    new_images: int = 0
    unique_images: int = 0
    skipped: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    elapsed_s: float = 0.0
    rate: float = 0.0
    newly_skipped: list[SkippedFile] = field(default_factory=list)

    def describe(self) -> str:
        """"indexing: 1200 files, 1150 unique, 3 skipped, 85 files/s, about 2 min left"."""
        left = f", {format_duration(self.eta_s)} left" if self.eta_s else ""
        return (f"{self.stage}: {self.files_done} files, {self.unique_images} unique, {self.skipped} skipped, "
                f"{self.rate:.0f} files/s{left}")


@dataclass
class BuildReport:
    """What a build did (also written to DIR/build_report.json)."""

    index_dir: str
    index_id: str
    source: str
    comparison_size: int
    unique_images: int
    sources: int
    duplicate_sources: int  # sources whose bytes were already stored: sources - unique_images
    skipped: list[SkippedFile]
    files_seen: int  # sources met by this run's walk
    files_already_indexed: int  # of those, stored by an earlier run (resume)
    new_images: int  # unique images added by this run
    seconds: float
    rate: float  # files decoded per second in this run
    resumed: bool
    repaired: dict[str, int]
    notes: list[str]  # the first MAX_NOTES problems that did not stop an image (unreadable caption sidecars)
    notes_total: int = 0  # how many such problems there were in all
    role: str = store.DEFAULT_ROLE
    content_hash: str = ""  # see store.CONTENT_HASH_RULE
    added: bool = False  # SRC was appended to an existing index (--add-to)
    #: The feature index: "kind" flat or compressed, with the compressed index's factory, nprobe, pool and the
    #: recall measured for near copies.
    feature_index: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


class _Done:
    """A finished result with the Future interface, for in-process decoding."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


class IndexBuilder:
    """One build (or resumed build) of an index folder.

    Parameters
    ----------
    src
        A folder of images (captions from sidecar .txt / .json), img2dataset output (files layout or .tar
        shards), a single .tar shard, or a single image.
    out
        The index folder. Must be missing or empty unless ``resume`` is true.
    resume
        Continue the build in ``out`` (after an interruption, or to add files that appeared in SRC since).
    comparison_size
        Side of the canonical square in pixels, in [16, 1024]; default 256 (resumed builds keep theirs).
    clip
        A CLIP model folder or a Hub id in the local Hugging Face cache, for the optional semantic feature.
    allow_pickle
        Accept a CLIP model whose weights are only a pickle (``pytorch_model.bin``), read with torch's weights-only
        loader; refused by default, as for models. A resumed build that allowed it once keeps allowing it.
    workers
        Decoding processes (default: one per CPU core, or none for a SRC under 32 MiB); 1 decodes in this
        process.
    chunk_size
        Images per chunk: the unit of decoding work, of commit and of progress.
    store_pixels
        Keep canonical pixels for the exact re-rank (default: when comparison_size <= 128).
    role
        "training" (the model's training set) or "reference" (a portfolio, a stock library, a client's images);
        default "training" for a new index; a resumed build keeps its recorded role.
    add_to
        ``out`` is an existing index and SRC is appended to it (``index build SRC --add-to DIR``): new images get
        the next ids, files whose bytes are already indexed only raise duplicate counts, and the settings are
        the index's own. Running it again after an interruption continues where it stopped.
    compressed_above
        Build a compressed FAISS index (compressed.py) when the index holds more images than this; default:
        when the flat index would exceed a quarter of RAM. Recorded in the manifest; ``add_to`` may change it.
    retrain
        Train the compressed index again on a sample of all rows (otherwise rows added later are encoded with
        the quantizers trained when it was first compressed).
    embeddings
        A clip-retrieval output folder (``img_emb/img_emb_*.npy`` beside ``metadata/metadata_*.parquet``, or the
        same under ``embeddings/``) whose image embeddings become the semantic signal, matched to the indexed
        images by url, file path or key (embeddings.py). Not with ``clip``.
    embeddings_model
        The CLIP model that made ``embeddings`` (a local folder, a Hub id in the local cache, or clip-retrieval's
        name such as ``ViT-B/32``); queries are embedded with it when it is available locally.
    """

    def __init__(
        self,
        src: str | os.PathLike,
        out: str | os.PathLike,
        *,
        resume: bool = False,
        comparison_size: int | None = None,
        clip: str | os.PathLike | None = None,
        workers: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        store_pixels: bool | None = None,
        role: str | None = None,
        allow_pickle: bool = False,
        add_to: bool = False,
        compressed_above: int | None = None,
        retrain: bool = False,
        embeddings: str | os.PathLike | None = None,
        embeddings_model: str | None = None,
    ):
        self.allow_pickle = bool(allow_pickle)
        self.add_to = bool(add_to)
        if compressed_above is not None and int(compressed_above) < 0:
            raise TrainingIndexError(f"--compressed-above must be 0 or more images, got {compressed_above}")
        self.compressed_above = None if compressed_above is None else int(compressed_above)
        self.retrain = bool(retrain)
        if embeddings is not None and clip is not None:
            raise TrainingIndexError("--embeddings and --clip both give the semantic signal: use one of them")
        if embeddings_model is not None and embeddings is None:
            raise TrainingIndexError("--embeddings-model names the model of --embeddings DIR: give that folder too")
        self.embeddings = None
        if embeddings is not None:
            from inspector.training_index.embeddings import find_files

            self.embeddings = Path(os.path.abspath(os.fspath(embeddings)))
            find_files(self.embeddings)  # a wrong folder is refused before any image is read
        self.embeddings_model = embeddings_model
        if role is not None and role not in store.ROLES:
            raise TrainingIndexError(f"unknown index role {role!r}: use training (the model's training set) or "
                                     "reference (a portfolio, a stock library, a client's images)")
        self.role = role or store.DEFAULT_ROLE
        self.src = source_root(src)
        self.out = Path(os.path.abspath(os.fspath(out)))
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        self._auto_workers = workers is None
        if chunk_size < 1:
            raise TrainingIndexError(f"chunk size must be at least 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.clip = clip
        if not self.src.exists():
            raise TrainingIndexError(f"{src}: no such folder or file: give a folder of training images, "
                                     "img2dataset output, or a .tar shard")
        if self.out.exists() and not self.out.is_dir():
            raise TrainingIndexError(f"{out} is a file: --out needs a folder for the index")
        if self.src == self.out or self.out in self.src.parents:
            raise TrainingIndexError(f"--out {out} holds SRC {src}: choose an index folder outside the images")
        if self.add_to and not (self.out / store.MANIFEST).is_file():
            raise TrainingIndexError(f"--add-to {out}: there is no index there to add to (build one with inspector "
                                     f"index build SRC --out {out})")
        self.resume = (bool(resume) or self.add_to) and self.out.is_dir() and not _is_empty_folder(self.out)
        if self.resume:
            self.manifest = self._check_resumable(comparison_size, clip, store_pixels, role)
        else:
            if self.out.is_dir() and not _is_empty_folder(self.out):
                raise TrainingIndexError(f"{out} already exists and is not empty: add --resume to continue the "
                                         f"build in it, use --add-to {out} to add SRC to the index there, or "
                                         "choose a new folder")
            size = DEFAULT_COMPARISON_SIZE if comparison_size is None else int(comparison_size)
            if not MIN_COMPARISON_SIZE <= size <= MAX_COMPARISON_SIZE:
                raise TrainingIndexError(f"--size must be between {MIN_COMPARISON_SIZE} and "
                                         f"{MAX_COMPARISON_SIZE} pixels, got {size}")
            self.comparison_size = size
            self.store_pixels = size <= STORE_PIXELS_UP_TO if store_pixels is None else bool(store_pixels)
            self.manifest = None
        self.report: BuildReport | None = None
        self._semantic = None
        # An index folder this build makes (or finds empty) is removed again when nothing can be indexed.
        self._fresh_out = not self.resume
        self._out_existed = self.out.exists()

    def _check_resumable(self, comparison_size: int | None, clip: Any, store_pixels: bool | None,
                         role: str | None) -> dict:
        manifest = store.read_manifest(self.out)
        roots = store.source_roots(manifest)
        if self.add_to:
            adding = manifest.get("adding")
            if manifest.get("status") != store.STATUS_COMPLETE and adding != str(self.src):
                what = f"adding {adding}" if adding else f"a build of {manifest.get('source')}"
                again = f"--add-to {self.out}" if adding else f"--out {self.out} --resume"
                raise TrainingIndexError(f"{self.out} is unfinished ({what} was interrupted): finish that first with "
                                         f"inspector index build {adding or manifest.get('source')} {again}")
        elif str(self.src) not in roots:
            raise TrainingIndexError(f"{self.out} was built from {' + '.join(roots)}, not {self.src}: resume with the "
                                     f"same SRC, add {self.src} with --add-to {self.out}, or build a new index")
        size = int(manifest["comparison_size"])
        if comparison_size is not None and int(comparison_size) != size:
            raise TrainingIndexError(f"{self.out} compares at {size} px, not {comparison_size}: resume without "
                                     "--size, or build a new index")
        if store_pixels is not None and bool(store_pixels) != manifest["pixels"]["stored"]:
            raise TrainingIndexError(f"{self.out} was built with pixels "
                                     f"{'stored' if manifest['pixels']['stored'] else 'not stored'}: resume "
                                     "without changing that, or build a new index")
        semantic = manifest.get("semantic")
        if self.embeddings is not None and semantic is not None and semantic.get("source") != "clip-retrieval":
            raise TrainingIndexError(f"{self.out} takes its semantic signal from CLIP model {semantic['model']}: "
                                     "add images without --embeddings, or build a new index")
        if clip is not None and (semantic is None or str(clip) not in (semantic.get("model"), semantic.get("folder"))):
            raise TrainingIndexError(f"{self.out} was built {'without CLIP' if semantic is None else 'with CLIP ' + semantic['model']}: "
                                     "resume without changing --clip, or build a new index")
        if semantic is not None and semantic.get("source") != "clip-retrieval":
            self.clip = semantic["folder"] if Path(semantic["folder"]).is_dir() else semantic["model"]
        recorded = manifest.get("role") or store.DEFAULT_ROLE
        if role is not None and role != recorded:
            raise TrainingIndexError(f"{self.out} is a {recorded} index, not {role}: resume without --role, or "
                                     "build a new index")
        self.role = recorded
        self.comparison_size = size
        self.store_pixels = bool(manifest["pixels"]["stored"])
        return manifest

    # --- the build ---------------------------------------------------------------------------------------------

    def run(self) -> Iterator[BuildProgress]:
        """Build, yielding progress after every chunk; closing the generator stops between chunks (resumable)."""
        started = time.monotonic()
        semantic = self._load_semantic()
        st, repaired = self._open_store(semantic)
        settings = DecodeSettings(self.comparison_size, int(st.manifest["feature"]["grid"]), self.store_pixels,
                                  str(self.out), semantic.input_size if semantic else None)
        state = _State(count=st.item_count())
        executor = None
        notes: list[str] = []
        nothing = False
        try:
            state.bytes_total = total_bytes(self.src, exclude=[self.out])
            if self._auto_workers and state.bytes_total < POOL_MIN_BYTES:
                self.workers = 1  # starting decoding processes costs more than a small folder takes to decode
            executor = self._executor()
            decode.reset_cache()
            for results, skips, already, already_bytes in self._decoded(executor, st, settings):
                newly_skipped = self._commit(st, settings, semantic, results, skips, state, notes)
                state.files_done += len(results) + len(skips) + already
                state.already += already
                state.decoded += len(results)
                state.bytes_done += sum(r.ref.size for r in results) + already_bytes
                state.bytes_decoded += sum(r.ref.size for r in results)
                yield self._progress("ingesting", state, started, newly_skipped)
            if state.count == 0:
                nothing = True
                raise TrainingIndexError(self._nothing_indexed(st, state))
            yield self._progress("finishing", state, started, [])
            self.report = self._finish(st, state, started, repaired, notes)
            yield self._progress("done", state, started, [])
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            st.close()
            if nothing and self._fresh_out:
                self._discard_output()

    def _nothing_indexed(self, st: IndexStore, state: _State) -> str:
        """The one-line reason a build that found no usable image fails, naming the first few skipped files."""
        skipped = st.skipped()
        if not skipped:
            return (f"no usable images in {self.src}: nothing was indexed, no image files were found there (the "
                    "index reads image files with caption sidecars, img2dataset .tar shards and img2dataset "
                    ".parquet files with image bytes)")
        first = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        return f"no usable images in {self.src}: nothing was indexed, {len(skipped)} files skipped ({first}{more})"

    def _discard_output(self) -> None:
        """Remove what this build wrote, so no folder is left that looks like an index (it was new or empty)."""
        import shutil

        for entry in list(self.out.iterdir()) if self.out.is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if not self._out_existed:
            try:
                self.out.rmdir()
            except OSError:
                pass  # something else appeared in it meanwhile: leave that alone

    def _load_semantic(self) -> Any:
        if self.clip is None:
            return None
        from inspector.training_index.semantic import SemanticModel, model_identity

        recorded = (self.manifest or {}).get("semantic")
        allowed = self.allow_pickle or bool(recorded and recorded.get("allow_pickle"))
        self._semantic = SemanticModel.load(self.clip, allow_pickle=allowed)
        if recorded and model_identity(self._semantic.folder) != recorded["identity"]:
            raise TrainingIndexError(f"the CLIP model at {self._semantic.folder} has changed since this build "
                                     "started: its embeddings would not match; build a new index")
        return self._semantic

    def _open_store(self, semantic: Any) -> tuple[IndexStore, dict[str, int]]:
        if self.manifest is None:
            self.out.mkdir(parents=True, exist_ok=True)
            feature = feature_definition(FEATURE_GRID)
            self.manifest = store.new_manifest(
                self.src, self.comparison_size, feature, self.store_pixels,
                semantic.describe(self.clip) if semantic else None, role=self.role,
                compression=compressed.threshold_setting(self.compressed_above, int(feature["dim"])))
            need = decode.needed_side(DecodeSettings(self.comparison_size, FEATURE_GRID, self.store_pixels, None,
                                                     semantic.input_size if semantic else None))
            self.manifest["decode"] = {
                "need_side": need, "draft_margin": decode.DRAFT_MARGIN, "max_pixels": MAX_PIXELS,
                "note": "JPEGs are decoded in draft mode to a short side of at least draft_margin x need_side; "
                        "query files are decoded the same way"}
            store.write_json_atomic(self.out / store.MANIFEST, self.manifest)
        else:
            self.manifest["status"] = store.STATUS_BUILDING
            if self.add_to:
                roots = store.source_roots(self.manifest)
                if str(self.src) not in roots:
                    roots.append(str(self.src))
                self.manifest["sources"] = roots
                self.manifest["adding"] = str(self.src)
            if self.compressed_above is not None:
                self.manifest["compression"] = compressed.threshold_setting(
                    self.compressed_above, int(self.manifest["feature"]["dim"]))
            store.write_json_atomic(self.out / store.MANIFEST, self.manifest)
        if self.embeddings is not None:
            from inspector.training_index.embeddings import semantic_record

            self.manifest["semantic"] = semantic_record(self.manifest.get("semantic"), self.embeddings,
                                                        self.embeddings_model)
            store.write_json_atomic(self.out / store.MANIFEST, self.manifest)
        st = IndexStore(self.out, self.manifest)
        repaired = st.repair()
        if repaired["dropped_items"]:
            # Rows the compressed index had encoded were cut (a power loss): encode every row again.
            (self.out / store.FEATURES_FAISS).unlink(missing_ok=True)
        return st, repaired

    def _executor(self) -> ProcessPoolExecutor | None:
        if self.workers <= 1:
            return None
        # "spawn": safe when the caller has threads (the GUI builds on a worker thread), and each decoding
        # process is a direct child that notices when the main process is gone (see decode.worker_init).
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=decode.worker_init, initargs=(os.getpid(),))

    def _decoded(
        self, executor: ProcessPoolExecutor | None, st: IndexStore, settings: DecodeSettings
    ) -> Iterator[tuple[list[Decoded], list[Skip], int, int]]:
        """Decoded chunks in walk order, with at most 2 x workers + 1 chunks in flight."""
        pending: deque[tuple[Future | _Done, list[SourceRef], list[Skip], int, int]] = deque()
        window = 2 * self.workers + 1
        broken = False

        def result(entry: tuple[Future | _Done, list[SourceRef], list[Skip], int, int]) -> tuple:
            nonlocal broken
            job, todo, skips, n_done, n_bytes = entry
            try:
                decoded = job.result()
            except BrokenProcessPool:
                # A decoding process died (a crashing decoder, or a script that starts processes without the
                # ``if __name__ == "__main__":`` guard): carry on in this process rather than give up.
                if not broken:
                    warnings.warn("a decoding process failed; decoding continues in this process", stacklevel=4)
                broken = True
                decoded = decode.decode_chunk(todo, settings)
            return decoded, skips, n_done, n_bytes

        for chunk in _chunks(walk(self.src, exclude=[self.out]), self.chunk_size):
            refs = [x for x in chunk if isinstance(x, SourceRef)]
            skips = [x for x in chunk if isinstance(x, Skip)]
            done = st.done_sources([r.source for r in refs])
            todo = [r for r in refs if r.source not in done]
            done_bytes = sum(r.size for r in refs if r.source in done)
            if executor is None or broken or not todo:
                job: Future | _Done = _Done(decode.decode_chunk(todo, settings))
            else:
                try:
                    job = executor.submit(decode.decode_chunk, todo, settings)
                except BrokenProcessPool:
                    broken = True
                    job = _Done(decode.decode_chunk(todo, settings))
            pending.append((job, todo, skips, len(done), done_bytes))
            while len(pending) >= window or (pending and isinstance(pending[0][0], _Done)):
                yield result(pending.popleft())
        while pending:
            yield result(pending.popleft())

    def _commit(
        self,
        st: IndexStore,
        settings: DecodeSettings,
        semantic: Any,
        results: list[Decoded],
        skips: list[Skip],
        state: _State,
        notes: list[str],
    ) -> list[SkippedFile]:
        skipped = [SkippedFile(s.source, s.kind, s.reason) for s in skips]
        known = st.ids_for_sha(r.sha256 for r in results if r.ok)
        items: list[ItemRow] = []
        sources: list[SourceRow] = []
        new: list[Decoded] = []
        for r in results:
            state.notes_total += len(r.notes)
            if len(notes) < MAX_NOTES:
                notes.extend(r.notes[: MAX_NOTES - len(notes)])
            if r.ok and r.sha256 not in known and r.feature is None:
                r = decode_one(r.ref, settings)  # the worker skipped bytes it had seen; this index has not
            if not r.ok:
                skipped.append(SkippedFile(r.ref.source, r.kind or "damaged", r.reason or "unusable"))
                continue
            item_id = known.get(r.sha256)
            if item_id is None:
                item_id = state.count + len(items) + 1
                known[r.sha256] = item_id
                items.append(ItemRow(item_id, r.sha256, r.ref.source, r.caption, r.width, r.height, r.format,
                                     r.licence, r.origin, thumbnail_relpath(r.sha256), r.caption_source))
                new.append(r)
            sources.append(SourceRow(item_id, r.ref.source, display_name(r.ref.path), r.ref.raw_path,
                                     r.ref.member, r.ref.offset, r.ref.size, r.caption, r.licence, r.origin,
                                     r.caption_source))
        rows = {"features": b"".join(r.feature.astype("<f2").tobytes() for r in new)}
        if settings.keep_pixels:
            rows["pixels"] = b"".join(np.ascontiguousarray(r.pixels).tobytes() for r in new)
        if semantic is not None:
            emb = semantic.embed(np.stack([r.semantic_input for r in new])) if new else np.zeros((0, semantic.dim))
            rows["semantic"] = emb.astype("<f2").tobytes()
        st.commit_chunk(items, sources, [(s.source, s.kind, s.reason) for s in skipped], rows)
        state.count += len(items)
        state.new_images += len(items)
        state.skipped_run += len(skipped)
        return skipped

    def _finish(self, st: IndexStore, state: _State, started: float, repaired: dict[str, int],
                notes: list[str]) -> BuildReport:
        manifest = self.manifest
        finish_index(st, manifest, before_complete=lambda counts: self._write_report(
            st, state, started, repaired, notes, counts), retrain=self.retrain)
        return self.report

    def _write_report(self, st: IndexStore, state: _State, started: float, repaired: dict[str, int],
                      notes: list[str], counts: dict[str, int]) -> None:
        seconds = time.monotonic() - started
        n = counts["unique_images"]
        self.report = BuildReport(
            index_dir=str(self.out), index_id=self.manifest["index_id"], source=str(self.src),
            comparison_size=self.comparison_size, unique_images=n, sources=counts["sources"],
            duplicate_sources=counts["sources"] - n,
            skipped=[SkippedFile(**s) for s in st.skipped()],
            files_seen=state.files_done, files_already_indexed=state.already, new_images=state.new_images,
            seconds=round(seconds, 3), rate=round(state.decoded / seconds, 1) if seconds > 0 else 0.0,
            resumed=self.resume and not self.add_to, repaired=repaired, notes=notes, notes_total=state.notes_total,
            role=self.role, content_hash=self.manifest.get("content_hash") or "", added=self.add_to,
            feature_index=_feature_index_summary(self.manifest.get("faiss") or {}))
        document = self.report.as_dict()
        document["finished"] = utc_now()
        store.write_json_atomic(self.out / store.REPORT, document)

    def _progress(self, phase: str, state: _State, started: float, newly: list[SkippedFile]) -> BuildProgress:
        elapsed = time.monotonic() - started
        rate = state.decoded / elapsed if elapsed > 0 else 0.0
        eta = None
        if state.bytes_decoded > 0 and state.bytes_total > 0:
            remaining = max(0, state.bytes_total - state.bytes_done)
            eta = remaining * elapsed / state.bytes_decoded
        if phase == "done":
            eta = 0.0
        total = max(state.bytes_total, state.bytes_done)
        return BuildProgress(stage=BUILD_STAGES[phase], done=state.files_done,
                             fraction=min(1.0, state.bytes_done / total) if total > 0 else None, eta_s=eta,
                             phase=phase, files_done=state.files_done, new_images=state.new_images,
                             unique_images=state.count, skipped=state.skipped_run, bytes_done=state.bytes_done,
                             bytes_total=total, elapsed_s=elapsed, rate=rate, newly_skipped=newly)


@dataclass
class _State:
    count: int = 0
    files_done: int = 0
    already: int = 0
    decoded: int = 0
    new_images: int = 0
    skipped_run: int = 0
    bytes_done: int = 0
    bytes_decoded: int = 0
    bytes_total: int = 0
    notes_total: int = 0


def finish_index(
    st: IndexStore,
    manifest: dict[str, Any],
    before_complete: Callable[[dict[str, int]], None] | None = None,
    retrain: bool = False,
) -> dict[str, int]:
    """Count duplicates (across everything ever added), read clip-retrieval embeddings, build the FAISS indexes
    from the row files (flat, or compressed past the manifest's threshold: ``retrain`` trains it again) and the
    caption search tables, and mark the manifest complete.

    Everything is written under temporary names and renamed; the manifest turns "complete" last, so an
    interruption here leaves a build that ``resume`` finishes. Returns the counts stored in the manifest.
    """
    folder = st.folder
    st.count_duplicates()
    counts = st.counts()
    n = counts["unique_images"]
    semantic = manifest.get("semantic")
    if semantic and semantic.get("source") == "clip-retrieval":
        from inspector.training_index.embeddings import attach

        attach(st.conn, folder, semantic, n)  # also gives matched images the folder's urls and captions
    manifest["faiss"] = _feature_index(st, manifest, n, retrain)
    if semantic:
        rows = store.RowFile(folder / store.SEMANTIC, int(semantic["dim"]) * 2).memmap("<f2", (n, int(semantic["dim"])))
        index, description = vectors.build(rows, "ip")
        vectors.write(index, folder / store.SEMANTIC_FAISS)
        del index
        semantic["faiss"] = {**description, "file": store.SEMANTIC_FAISS}
    from inspector.training_index.captions import write_caption_tables

    # Caption-matched candidates (search.py) look up the images of a caption by this index.
    st.conn.execute("CREATE INDEX IF NOT EXISTS sources_caption ON sources(caption)")
    manifest["captions"] = {"distinct": write_caption_tables(st.conn), "search": "SQLite FTS5 (caption_search)"}
    manifest.setdefault("database", {})["schema_version"] = store.SCHEMA_VERSION
    manifest["content_hash"] = store.content_hash(st.conn)
    manifest.setdefault("content_hash_rule", store.CONTENT_HASH_RULE)
    manifest.setdefault("role", store.DEFAULT_ROLE)
    manifest.pop("adding", None)
    manifest["format_version"] = store.format_version(manifest)
    if before_complete is not None:
        before_complete(counts)
    st.finish()
    manifest.update(status=store.STATUS_COMPLETE, updated=utc_now(), counts=counts,
                    versions=store.library_versions())
    store.write_json_atomic(folder / store.MANIFEST, manifest)
    return counts


def _feature_index(st: IndexStore, manifest: dict[str, Any], n: int, retrain: bool) -> dict[str, Any]:
    """Write features.faiss over the feature rows, flat or compressed (and then calibrated); its manifest record."""
    folder = st.folder
    dim = int(manifest["feature"]["dim"])
    rows = st.features.memmap("<f2", (n, dim))
    setting = manifest.get("compression") or compressed.threshold_setting(None, dim)
    manifest["compression"] = setting
    if not compressed.wanted(n, int(setting["compressed_above"])):
        index, description = vectors.build(rows, "l2", exact=True)
        vectors.write(index, folder / store.FEATURES_FAISS)
        (folder / store.FEATURES_TRAINED_FAISS).unlink(missing_ok=True)
        return {**description, "file": store.FEATURES_FAISS}
    from inspector.training_index.search import candidate_count

    index, description = compressed.build(folder, rows, manifest.get("faiss"), retrain)
    stored = st.pixels is not None
    calibration = compressed.calibrate(
        index, rows, _pixel_reader(st, manifest, n), int(manifest["feature"]["grid"]), candidate_count(4, n),
        compressed.CALIBRATION_QUERIES if stored else compressed.CALIBRATION_QUERIES_DECODED)
    vectors.write(index, folder / store.FEATURES_FAISS)
    description.update(metric="l2", dim=dim, count=n, nprobe=calibration["nprobe"], pool=calibration["pool"],
                       calibration=calibration, file=store.FEATURES_FAISS)
    return description


def _feature_index_summary(faiss_record: dict[str, Any]) -> dict[str, Any]:
    """What a build report says about the feature index."""
    if not faiss_record.get("compressed"):
        return {"kind": "flat", "type": faiss_record.get("type")}
    calibration = faiss_record.get("calibration") or {}
    return {"kind": "compressed", "factory": faiss_record.get("factory"), "nprobe": faiss_record.get("nprobe"),
            "pool": faiss_record.get("pool"), "recall": calibration.get("recall"),
            "queries": calibration.get("queries"), "trained_now": faiss_record.get("trained_now"),
            "rows_encoded_now": faiss_record.get("rows_encoded_now")}


def _pixel_reader(st: IndexStore, manifest: dict[str, Any], n: int) -> Callable[[np.ndarray], list]:
    """Canonical pixels of 0-based rows for calibration: the stored rows, or decoded again from the sources."""
    size = int(manifest["comparison_size"])
    if st.pixels is not None:
        stored = st.pixels.memmap(np.uint8, (n, size, size, 3))
        return lambda rows: [np.array(stored[int(r)]) for r in rows]
    need = int((manifest.get("decode") or {}).get("need_side", size))

    def read(rows: np.ndarray) -> list:
        out = []
        for r in rows:
            item_id = int(r) + 1
            sha = st.conn.execute("SELECT sha256 FROM items WHERE id = ?", (item_id,)).fetchone()[0]
            sources = st.conn.execute("SELECT source, path, raw_path, offset, size, member FROM sources WHERE "
                                      "item_id = ? ORDER BY id", (item_id,)).fetchall()
            out.append(decode.pixels_from_sources(sources, sha, need, size)[0])
        return out

    return read


def build_index(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    comparison_size: int | None = None,
    clip: str | os.PathLike | None = None,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    store_pixels: bool | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    role: str | None = None,
    allow_pickle: bool = False,
    add_to: bool = False,
    compressed_above: int | None = None,
    retrain: bool = False,
    embeddings: str | os.PathLike | None = None,
    embeddings_model: str | None = None,
) -> BuildReport:
    """Build (or resume) a training index from ``src`` into ``out``, or with ``add_to`` append ``src`` to the
    index ``out``, and return what was done.

    See :class:`IndexBuilder` for the parameters; ``progress`` is called after every chunk. Raises
    :class:`TrainingIndexError` (a UserError) for bad input, before anything is written, and when nothing
    under ``src`` can be indexed (a new ``out`` is then removed again, so no empty index claims to be complete).

    With more than one worker, decoding processes are started with "spawn": a script that calls this must do so
    under ``if __name__ == "__main__":`` (otherwise decoding falls back to this process, with a warning).
    """
    builder = IndexBuilder(src, out, resume=resume, comparison_size=comparison_size, clip=clip, workers=workers,
                           chunk_size=chunk_size, store_pixels=store_pixels, role=role, allow_pickle=allow_pickle,
                           add_to=add_to, compressed_above=compressed_above, retrain=retrain, embeddings=embeddings,
                           embeddings_model=embeddings_model)
    for event in builder.run():
        if progress is not None:
            progress(event)
    assert builder.report is not None
    return builder.report

