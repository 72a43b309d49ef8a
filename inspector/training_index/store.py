"""The index folder on disk: SQLite metadata, append-only row files, thumbnails and the manifest.

Layout of an index folder::

    manifest.json       format version, index id, role (training | reference), settings, feature definition,
                        counts, content hash, library versions
    index.db            SQLite: items (one per unique sha256), sources (every file, duplicates included),
                        skipped (file + reason), meta (schema version), and from schema 2 the caption
                        tables written when a build finishes (captions.py: distinct captions with counts, FTS5)
    features.f16        N x D float16, row i = item id i + 1 (the compact feature, see features.py)
    pixels.u8           N x S x S x 3 uint8 canonical pixels at the comparison size (when stored)
    semantic.f16        N x E float16 L2-normalised CLIP image embeddings (when configured)
    features.faiss      FAISS index over features.f16, built when the build finishes
    semantic.faiss      FAISS inner-product index over semantic.f16 (when configured)
    thumbs/ab/<sha256>.jpg   display thumbnails, longest side 128 px
    build_report.json   what the last build did, every skipped file with its reason

Crash safety (SIGKILL at any moment): rows are appended to the row files and flushed *before* the SQLite
transaction that inserts their items commits. So after a kill the row files hold at least as many complete rows as
the database has items; :meth:`IndexStore.repair` truncates the excess (and, should a file be short, e.g. after a
power loss, drops the items it lacks so that they are ingested again). Thumbnails are named by content and written
atomically, so a half-finished chunk leaves nothing wrong behind. FAISS files and the manifest are written to a
temporary name and renamed into place; the manifest says "complete" only after everything else is in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import UserError
from inspector.fileio import sqlite_uri, write_atomic
from inspector.timestamps import utc_now

FORMAT = "inspector-training-index"
#: The newest index format this inspector reads. An index is written as version 1 unless it needs version 2:
#: a compressed feature index (faiss.compressed, compressed.py) or embeddings read from a clip-retrieval folder
#: (semantic.source "clip-retrieval", embeddings.py); an older inspector then refuses it instead of misreading it.
FORMAT_VERSION = 2
#: 2: caption tables (caption_counts, caption_search FTS5, caption_terms), written when a build finishes. A
#: schema 1 index still opens (caption queries scan its captions); ``index build --resume`` upgrades it.
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
DATABASE = "index.db"
FEATURES = "features.f16"
PIXELS = "pixels.u8"
SEMANTIC = "semantic.f16"
FEATURES_FAISS = "features.faiss"
#: The trained, empty compressed index (compressed.py), kept so that rows added later are encoded without training.
FEATURES_TRAINED_FAISS = "features.trained.faiss"
SEMANTIC_FAISS = "semantic.faiss"
THUMBS = "thumbs"
REPORT = "build_report.json"
STATUS_BUILDING = "building"
STATUS_COMPLETE = "complete"
#: What an index holds: the model's training set, or a reference collection (an artist's portfolio, a stock
#: library, a client's images). Manifests written before roles existed read as "training".
ROLES = ("training", "reference")
DEFAULT_ROLE = "training"
#: How ``content_hash`` is computed (also written into the manifest, so the number can be checked by anyone).
CONTENT_HASH_RULE = ("sha256 over the sha256 (lowercase hex) of every unique image's bytes, sorted, each followed "
                     "by a newline")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,            -- 1, 2, 3, ...: row id - 1 of the row files
    sha256 TEXT NOT NULL UNIQUE,       -- of the file's bytes
    source TEXT NOT NULL,              -- the first source these bytes were found at
    caption TEXT NOT NULL DEFAULT '',
    width INTEGER NOT NULL,            -- original size, after EXIF orientation
    height INTEGER NOT NULL,
    format TEXT NOT NULL DEFAULT '',
    licence TEXT,
    origin TEXT,                       -- e.g. the URL img2dataset downloaded it from
    duplicate_count INTEGER NOT NULL DEFAULT 1,
    thumbnail TEXT NOT NULL,           -- relative to the index folder
    caption_source TEXT                -- where the caption came from, e.g. "json sidecar", "file name"
);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    source TEXT NOT NULL UNIQUE,       -- file path, or shard.tar#member
    path TEXT NOT NULL,                -- the file (or shard) on disk
    raw_path BLOB,                     -- the path's bytes when 'path' cannot spell an odd file name exactly
    member TEXT,                       -- tar member name
    offset INTEGER,                    -- byte offset of the member's data in the shard
    size INTEGER NOT NULL,
    caption TEXT NOT NULL DEFAULT '',
    licence TEXT,
    origin TEXT,
    caption_source TEXT
);
CREATE INDEX IF NOT EXISTS sources_item ON sources(item_id);
CREATE TABLE IF NOT EXISTS skipped (
    source TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


class TrainingIndexError(UserError):
    """Something is wrong with an index folder or a request to it; the message says what to do."""


def library_versions() -> dict[str, str]:
    """Versions of what shaped the index's contents, for the manifest."""
    from inspector.provenance import library_versions as versions

    return versions(("numpy", "pillow", "sqlite", "faiss"))


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an index folder; raises TrainingIndexError when there is none or it is unreadable."""
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise TrainingIndexError(f"{folder}: no such index folder (build one with: inspector index build SRC "
                                 f"--out {folder})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingIndexError(f"{folder} is not a training index (no {MANIFEST}): build one with "
                                 f"inspector index build SRC --out {folder}") from None
    except (OSError, ValueError) as exc:
        raise TrainingIndexError(f"{path} is unreadable ({exc}): rebuild the index") from None
    if manifest.get("format") != FORMAT:
        raise TrainingIndexError(f"{folder} is not a training index ({MANIFEST} has no '{FORMAT}' format)")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise TrainingIndexError(f"{folder} was written by a newer inspector (index format "
                                 f"{manifest.get('format_version')}): update the inspector")
    return manifest


def write_json_atomic(path: Path, document: Any) -> None:
    """Write a JSON file so that readers see the old or the new version, never half of one."""
    write_atomic(path, json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


class RowFile:
    """An append-only file of fixed-size rows (row i belongs to item id i + 1)."""

    def __init__(self, path: Path, row_bytes: int):
        self.path = Path(path)
        self.row_bytes = int(row_bytes)

    def rows(self) -> int:
        """Number of complete rows on disk (a torn last row does not count)."""
        try:
            return self.path.stat().st_size // self.row_bytes
        except FileNotFoundError:
            return 0

    def truncate(self, rows: int) -> None:
        """Cut the file to ``rows`` rows (creating it empty when missing)."""
        with open(self.path, "ab") as f:
            f.truncate(rows * self.row_bytes)

    def append(self, data: bytes) -> None:
        """Append whole rows and flush them to the operating system (enough to survive a killed process)."""
        if len(data) % self.row_bytes:
            raise ValueError(f"{self.path.name}: {len(data)} bytes is not a whole number of rows")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()

    def fsync(self) -> None:
        with open(self.path, "ab") as f:
            os.fsync(f.fileno())

    def memmap(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """The first ``shape[0]`` rows as a read-only memory map (an empty array when there are none)."""
        if shape[0] == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(self.path, dtype=dtype, mode="r", shape=shape)


class RowReader:
    """Random reads of whole rows (thread-safe positioned reads: a query touches only the bytes it needs)."""

    def __init__(self, path: Path, dtype: Any, row_shape: tuple[int, ...], rows: int):
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.row_bytes = int(np.prod(row_shape)) * self.dtype.itemsize
        self.rows = rows
        self._pread = hasattr(os, "pread")
        if self._pread:
            self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        else:  # pragma: no cover - Windows has no pread: a memory map serves
            self._fd = None
            self._map = np.memmap(path, dtype=self.dtype, mode="r", shape=(rows, *self.row_shape))

    def read(self, rows: Sequence[int]) -> np.ndarray:
        """Rows by 0-based index, as an array of shape (len(rows), *row_shape)."""
        rows = [int(r) for r in rows]
        if any(not 0 <= r < self.rows for r in rows):
            raise IndexError(f"row out of range 0..{self.rows - 1}")
        if not self._pread:  # pragma: no cover
            return np.asarray(self._map[rows])
        data = b"".join(os.pread(self._fd, self.row_bytes, r * self.row_bytes) for r in rows)
        if len(data) != len(rows) * self.row_bytes:
            raise OSError("the row file is shorter than the index says: rebuild it with --resume")
        return np.frombuffer(bytearray(data), dtype=self.dtype).reshape(len(rows), *self.row_shape)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class ItemRow:
    """A new unique image for the items table."""

    id: int
    sha256: str
    source: str
    caption: str
    width: int
    height: int
    format: str
    licence: str | None
    origin: str | None
    thumbnail: str
    caption_source: str | None = None


@dataclass
class SourceRow:
    """One file (or shard member) holding an item's bytes."""

    item_id: int
    source: str
    path: str
    raw_path: bytes | None
    member: str | None
    offset: int | None
    size: int
    caption: str
    licence: str | None
    origin: str | None
    caption_source: str | None = None


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` (indexes built before a column was added lack it)."""
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def content_hash(conn: sqlite3.Connection) -> str:
    """The index's content hash (see :data:`CONTENT_HASH_RULE`): equal for two indexes of the same images,
    whatever their order, paths, duplicates or settings. Hex, 64 characters."""
    h = hashlib.sha256()
    for (sha,) in conn.execute("SELECT sha256 FROM items ORDER BY sha256"):
        h.update(sha.encode("ascii") + b"\n")
    return h.hexdigest()


def source_roots(manifest: dict[str, Any]) -> list[str]:
    """Every folder or shard an index was built from: SRC of the first build, then each ``--add-to`` SRC."""
    return list(manifest.get("sources") or [manifest.get("source", "")])


def format_version(manifest: dict[str, Any]) -> int:
    """The oldest index format that describes this manifest (see :data:`FORMAT_VERSION`)."""
    compressed = bool((manifest.get("faiss") or {}).get("compressed"))
    clip_retrieval = (manifest.get("semantic") or {}).get("source") == "clip-retrieval"
    return 2 if compressed or clip_retrieval else 1


def identity(manifest: dict[str, Any], folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """What names an index wherever it is shown: role, source folder or shards (several joined with " + " when
    folders were added with ``--add-to``), images, build date and content hash (plain JSON; ``content_hash`` is
    None for an index built before hashes were recorded)."""
    return {
        "index_id": manifest.get("index_id", ""),
        "role": manifest.get("role") or DEFAULT_ROLE,
        "source": " + ".join(source_roots(manifest)),
        "images": int((manifest.get("counts") or {}).get("unique_images", 0)),
        "built": manifest.get("updated") or manifest.get("created") or "",
        "content_hash": manifest.get("content_hash"),
        "path": str(folder) if folder is not None else None,
    }


def connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    """Open the index database (read-only for queries, so a shipped index can live in a read-only folder)."""
    if read_only:
        conn = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class IndexStore:
    """Write access to an index folder during a build."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = Path(folder)
        self.manifest = manifest
        self.conn = connect(self.folder / DATABASE)
        self.conn.executescript(_SCHEMA)
        for table in ("items", "sources"):  # a build resumed in a folder made before captions had a source
            if not has_column(self.conn, table, "caption_source"):
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN caption_source TEXT")
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                          (str(SCHEMA_VERSION),))
        size = int(manifest["comparison_size"])
        self.features = RowFile(self.folder / FEATURES, int(manifest["feature"]["dim"]) * 2)
        self.pixels = RowFile(self.folder / PIXELS, size * size * 3) if manifest["pixels"]["stored"] else None
        semantic = manifest.get("semantic")
        # Embeddings read from a clip-retrieval folder are written whole when the build finishes (embeddings.py),
        # not a chunk at a time.
        per_chunk = semantic and semantic.get("source") != "clip-retrieval"
        self.semantic = RowFile(self.folder / SEMANTIC, int(semantic["dim"]) * 2) if per_chunk else None

    @property
    def row_files(self) -> list[RowFile]:
        return [f for f in (self.features, self.pixels, self.semantic) if f is not None]

    def close(self) -> None:
        self.conn.close()

    # --- consistency -------------------------------------------------------------------------------------------

    def item_count(self) -> int:
        """Number of items (ids are contiguous from 1, so the largest id: a B-tree lookup, not a scan)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0])

    def repair(self) -> dict[str, int]:
        """Make the row files and the database agree after an interruption.

        Returns
        -------
        dict
            ``{"truncated_rows": n, "dropped_items": m}``: rows cut from the files, items dropped from the database
            because a file lacked their rows (they are ingested again).
        """
        count, top = self.conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM items").fetchone()
        if count != top:
            raise TrainingIndexError(
                f"{self.folder / DATABASE}: item ids are not contiguous ({count} items, largest id {top}); the "
                "index is damaged: delete the folder and build it again")
        rows = min([f.rows() for f in self.row_files] + [count])
        dropped = count - rows
        if dropped:
            with self.transaction():
                self.conn.execute("DELETE FROM sources WHERE item_id > ?", (rows,))
                self.conn.execute("DELETE FROM items WHERE id > ?", (rows,))
        truncated = 0
        for f in self.row_files:
            truncated += max(0, f.rows() - rows)
            f.truncate(rows)
        return {"truncated_rows": truncated, "dropped_items": dropped}

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    # --- what is known -----------------------------------------------------------------------------------------

    def done_sources(self, sources: Sequence[str]) -> set[str]:
        """Those of ``sources`` already stored (skipped ones are not: a resumed build tries them again)."""
        if not sources:
            return set()
        marks = ",".join("?" * len(sources))
        rows = self.conn.execute(f"SELECT source FROM sources WHERE source IN ({marks})", list(sources))
        return {r[0] for r in rows}

    def ids_for_sha(self, shas: Iterable[str]) -> dict[str, int]:
        shas = list(dict.fromkeys(shas))
        found: dict[str, int] = {}
        for start in range(0, len(shas), 500):
            part = shas[start:start + 500]
            marks = ",".join("?" * len(part))
            found.update(self.conn.execute(f"SELECT sha256, id FROM items WHERE sha256 IN ({marks})", part))
        return found

    # --- writing -----------------------------------------------------------------------------------------------

    def commit_chunk(
        self,
        items: Sequence[ItemRow],
        sources: Sequence[SourceRow],
        skipped: Sequence[tuple[str, str, str]],
        rows: dict[str, bytes],
    ) -> None:
        """Store one chunk: row-file bytes first (flushed), then one SQLite transaction.

        ``rows`` maps "features" / "pixels" / "semantic" to the new items' rows, in item id order.
        """
        first = self.item_count() + 1
        if items and items[0].id != first:
            raise RuntimeError(f"item ids must continue at {first}, got {items[0].id}")
        for name, f in (("features", self.features), ("pixels", self.pixels), ("semantic", self.semantic)):
            if f is None:
                continue
            if f.rows() != first - 1:  # a previous failure left the files out of step: never write past it
                raise RuntimeError(f"{f.path.name} holds {f.rows()} rows for {first - 1} items")
            data = rows.get(name, b"")
            if len(data) != len(items) * f.row_bytes:
                raise RuntimeError(f"{name}: {len(data)} bytes for {len(items)} items")
            f.append(data)
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO items(id, sha256, source, caption, width, height, format, licence, origin, "
                "duplicate_count, thumbnail, caption_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                [(i.id, i.sha256, i.source, i.caption, i.width, i.height, i.format, i.licence, i.origin,
                  i.thumbnail, i.caption_source) for i in items])
            self.conn.executemany(
                "INSERT OR IGNORE INTO sources(item_id, source, path, raw_path, member, offset, size, caption, "
                "licence, origin, caption_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.item_id, s.source, s.path, s.raw_path, s.member, s.offset, s.size, s.caption, s.licence,
                  s.origin, s.caption_source) for s in sources])
            self.conn.executemany("DELETE FROM skipped WHERE source = ?", [(s.source,) for s in sources])
            self.conn.executemany("INSERT OR REPLACE INTO skipped(source, kind, reason) VALUES (?, ?, ?)",
                                  skipped)

    def count_duplicates(self) -> None:
        """Set every item's duplicate_count to the number of its sources."""
        with self.transaction():
            self.conn.execute(
                "UPDATE items SET duplicate_count = (SELECT COUNT(*) FROM sources WHERE sources.item_id = items.id)")

    def skipped(self) -> list[dict[str, str]]:
        return [{"source": s, "kind": k, "reason": r}
                for s, k, r in self.conn.execute("SELECT source, kind, reason FROM skipped ORDER BY source")]

    def counts(self) -> dict[str, int]:
        q = self.conn.execute
        return {
            "unique_images": int(q("SELECT COUNT(*) FROM items").fetchone()[0]),
            "sources": int(q("SELECT COUNT(*) FROM sources").fetchone()[0]),
            "skipped": int(q("SELECT COUNT(*) FROM skipped").fetchone()[0]),
        }

    def finish(self) -> None:
        """Checkpoint the write-ahead log and leave a single-file database that read-only folders can serve."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("PRAGMA journal_mode=DELETE")
        for f in self.row_files:
            f.fsync()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def new_manifest(
    src: Path,
    comparison_size: int,
    feature: dict[str, Any],
    store_pixels: bool,
    semantic: dict[str, Any] | None,
    role: str = DEFAULT_ROLE,
    compression: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest a new build starts with (status "building" until it finishes). ``compression`` is when the
    feature index is compressed (``compressed.threshold_setting``); None: the default threshold."""
    if role not in ROLES:
        raise TrainingIndexError(f"unknown index role {role!r}: use training or reference")
    return {
        "format": FORMAT,
        "format_version": 1,
        "index_id": str(uuid.uuid4()),
        "role": role,
        "status": STATUS_BUILDING,
        "created": utc_now(),
        "updated": utc_now(),
        "source": str(src),
        "sources": [str(src)],
        "comparison_size": comparison_size,
        "canonical_form": "centre crop to a square, bicubic resize to comparison_size, 8-bit RGB (alpha "
                          "composited on white, EXIF orientation applied); JPEGs decoded in draft mode to at "
                          "least twice the size needed",
        "feature": feature,
        "pixels": {
            "stored": store_pixels,
            "file": PIXELS if store_pixels else None,
            "dtype": "uint8",
            "shape": [comparison_size, comparison_size, 3],
            "note": "canonical pixels at the comparison size, for the exact re-rank" if store_pixels else
                    "not stored: candidates are decoded again from their source files at query time",
        },
        "semantic": semantic,
        "thumbnails": {"folder": THUMBS, "max_side": 128, "format": "JPEG", "naming": "thumbs/<sha[:2]>/<sha>.jpg"},
        "database": {"file": DATABASE, "schema_version": SCHEMA_VERSION},
        "faiss": None,
        "compression": compression,
        "ranking": "FAISS candidates on the compact feature, then exact normalized l2 (Carlini et al.) on the "
                   "canonical pixels; neighbours are ordered by l2",
        "counts": {"unique_images": 0, "sources": 0, "skipped": 0},
        "content_hash": None,
        "content_hash_rule": CONTENT_HASH_RULE,
        "versions": library_versions(),
    }
