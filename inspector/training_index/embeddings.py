"""Image embeddings a research team already computed with clip-retrieval, read as the index's semantic signal.

``clip-retrieval inference`` writes one pair of files per output partition N (``clip end2end`` puts the same
under ``embeddings/``)::

    img_emb/img_emb_N.npy          float16, one L2-normalised image embedding per row
    metadata/metadata_N.parquet    one row per embedding, same order: image_path (the image file's path, or the
                                   webdataset key), caption (when text was embedded too) and the sample's .json
                                   metadata flattened into columns (url, key, ...)

``index build --embeddings DIR`` matches each row to an indexed image, by url first (img2dataset keeps the url
in its .json sidecars and parquet rows), then by the file's path, then by key (the file or shard member name
without its extension), and stores the embeddings as ``semantic.f16`` rows: nothing is computed again. Images
without an embedding get a zero row (cosine 0 with everything, never retrieved by similarity). An image whose
caption came only from its file name, or that has no url, takes the metadata's caption and url.

Queries must be embedded with the same model: ``--embeddings-model NAME`` names it (a local transformers CLIP
folder, a Hub id in the local cache, or clip-retrieval's own name such as ``ViT-B/32``, looked up as the
equivalent OpenAI checkpoint in the local cache). When it is not available locally, the index still opens and
the pixel search is unchanged; CLIP similarity is off, and ``semantic_problem`` says why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from inspector.fileio import atomic_path
from inspector.training_index import store
from inspector.training_index.store import TrainingIndexError

SOURCE = "clip-retrieval"
EMB_FOLDER = "img_emb"
META_FOLDER = "metadata"
#: Where an image whose caption came from these files says it came from.
CAPTION_SOURCE = "the clip-retrieval metadata's 'caption'"
#: clip-retrieval's names for OpenAI's CLIP models, and the transformers checkpoints that hold the same weights.
MODEL_ALIASES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}
_PART = re.compile(r"^img_emb_(\d+)\.npy$")


def find_files(folder: Path) -> list[tuple[Path, Path]]:
    """The (embeddings, metadata) file pairs of a clip-retrieval output folder, in partition order.

    Raises TrainingIndexError naming what is missing when ``folder`` is not such a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingIndexError(f"--embeddings {folder}: no such folder (give clip-retrieval's output folder, the "
                                 "one holding img_emb/ and metadata/)")
    root = next((r for r in (folder, folder / "embeddings") if (r / EMB_FOLDER).is_dir()), None)
    if root is None:
        raise TrainingIndexError(f"--embeddings {folder} is not a clip-retrieval output folder: it has no "
                                 f"{EMB_FOLDER}/ (nor embeddings/{EMB_FOLDER}/) with img_emb_N.npy files")
    parts = sorted((int(m.group(1)), p) for p in (root / EMB_FOLDER).iterdir() if (m := _PART.match(p.name)))
    if not parts:
        raise TrainingIndexError(f"--embeddings {folder}: {root / EMB_FOLDER} holds no img_emb_N.npy files")
    pairs = []
    for _, npy in parts:
        meta = root / META_FOLDER / f"metadata_{npy.stem[len('img_emb_'):]}.parquet"
        if not meta.is_file():
            raise TrainingIndexError(f"--embeddings {folder}: {npy.name} has no {META_FOLDER}/{meta.name} beside it "
                                     "(clip-retrieval writes one per partition, with the image paths and urls)")
        pairs.append((npy, meta))
    return pairs


def _dim(pairs: list[tuple[Path, Path]]) -> int:
    dims = set()
    for npy, _ in pairs:
        try:
            arr = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrainingIndexError(f"{npy} is not a readable .npy array ({exc})") from None
        if arr.ndim != 2:
            raise TrainingIndexError(f"{npy} holds an array of shape {arr.shape}, not one embedding per row")
        dims.add(int(arr.shape[1]))
    if len(dims) != 1:
        raise TrainingIndexError(f"the embedding files disagree on their width ({sorted(dims)} values)")
    return dims.pop()


def resolve_model(name: str | None) -> Path | None:
    """The local folder of the model that made the embeddings, or None when it is not on this machine."""
    if not name:
        return None
    from inspector.training_index.semantic import SemanticModelError, resolve_model_folder

    for ref in dict.fromkeys((name, MODEL_ALIASES.get(name, name))):
        try:
            return resolve_model_folder(ref)
        except SemanticModelError:
            continue
    return None


def semantic_record(previous: dict[str, Any] | None, folder: Path, model: str | None) -> dict[str, Any]:
    """The manifest's ``semantic`` entry for embeddings read from ``folder`` (added to those read before)."""
    pairs = find_files(folder)
    dim = _dim(pairs)
    folders = list((previous or {}).get("embeddings") or [])
    if previous is not None:
        if int(previous["dim"]) != dim:
            raise TrainingIndexError(f"the embeddings in {folder} have {dim} values, the index's {previous['dim']}: "
                                     "they come from another model")
        if model is not None and previous.get("model") and model != previous["model"]:
            raise TrainingIndexError(f"the index's embeddings were made with {previous['model']}, not {model}: "
                                     "add embeddings of the same model")
        model = model or previous.get("model")
    if str(folder) not in folders:
        folders.append(str(folder))
    local = resolve_model(model)
    record: dict[str, Any] = {
        "source": SOURCE,
        "embeddings": folders,
        "model": model,
        "folder": str(local) if local else None,
        "identity": None,
        "dim": dim,
        "dtype": "float16",
        "file": store.SEMANTIC,
        "definition": "image embeddings read from clip-retrieval output (img_emb/*.npy), L2-normalised; matched "
                      "to the indexed images by url, file path or key; similarity is the cosine (inner product)",
    }
    if local is not None:
        from inspector.training_index.semantic import model_identity

        record["identity"] = model_identity(local)
    record["note"] = query_note(record)
    return record


def query_note(record: dict[str, Any]) -> str | None:
    """Why queries cannot be embedded like the index's images, in words; None when they can."""
    if not record.get("model"):
        return ("the embeddings' model was not named (--embeddings-model): queries cannot be embedded with it, so "
                "CLIP similarity is off for this index")
    if not record.get("folder") or not Path(record["folder"]).is_dir():
        alias = MODEL_ALIASES.get(record["model"])
        hint = f" (or {alias} in the local Hugging Face cache)" if alias else ""
        return (f"the embeddings' model {record['model']} is not on this machine{hint}: queries cannot be embedded "
                "with it, so CLIP similarity is off for this index (the pixel search is unchanged)")
    return None


def load_query_model(record: dict[str, Any]) -> Any:
    """The SemanticModel that embeds queries like the index's clip-retrieval embeddings; raises
    SemanticModelError with :func:`query_note`'s words when it is not available or does not fit."""
    from inspector.training_index.semantic import SemanticModel, SemanticModelError, model_identity

    local = Path(record["folder"]) if record.get("folder") and Path(record["folder"]).is_dir() else \
        resolve_model(record.get("model"))
    if local is None:
        raise SemanticModelError(query_note({**record, "folder": None}))
    model = SemanticModel.load(local)
    if record.get("identity") and model_identity(model.folder) != record["identity"]:
        raise SemanticModelError(f"the CLIP model at {model.folder} has changed since the index was built")
    if model.dim != int(record["dim"]):
        raise SemanticModelError(f"{record['model']} makes {model.dim}-value embeddings, the index holds "
                                 f"{record['dim']}: it is not the model that made them")
    return model


def _key(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def _lookups(conn: Any) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """url -> item, path -> item, key -> item (keys that name two images are left out)."""
    by_url: dict[str, int] = {}
    by_path: dict[str, int] = {}
    by_key: dict[str, int] = {}
    ambiguous: set[str] = set()
    for item_id, path, member, origin in conn.execute("SELECT item_id, path, member, origin FROM sources "
                                                      "ORDER BY id"):
        if origin:
            by_url.setdefault(origin, item_id)
        if member is None:
            by_path.setdefault(path, item_id)
            by_path.setdefault(os.path.realpath(path), item_id)
        key = _key(member if member is not None else path)
        if by_key.setdefault(key, item_id) != item_id:
            ambiguous.add(key)
    for key in ambiguous:
        del by_key[key]
    return by_url, by_path, by_key


def _column(table: dict[str, list], name: str, n: int) -> list:
    values = table.get(name)
    return [None if v is None else str(v) for v in values] if values is not None else [None] * n


def attach(conn: Any, folder: Path, record: dict[str, Any], count: int) -> None:
    """Write ``semantic.f16`` (``count`` rows) from the record's clip-retrieval folders, give matched images the
    metadata's url and caption where theirs are missing (or came from the file name), and record the matching's
    counts in ``record``."""
    import pyarrow.parquet as pq

    dim = int(record["dim"])
    by_url, by_path, by_key = _lookups(conn)
    path = Path(folder) / store.SEMANTIC
    # Written by name (a memory map), published whole: a failed match leaves no semantic.f16 behind.
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.truncate(count * dim * 2)
        rows = np.memmap(tmp, dtype="<f2", mode="r+", shape=(count, dim)) if count else None
        have = np.zeros(count, dtype=bool)
        urls: dict[int, str] = {}
        captions: dict[int, str] = {}
        total = matched = 0
        for emb_folder in record["embeddings"]:
            for npy, meta in find_files(Path(emb_folder)):
                emb = np.load(npy, mmap_mode="r", allow_pickle=False)
                try:
                    table = pq.read_table(meta).to_pydict()
                except (OSError, ValueError) as exc:
                    raise TrainingIndexError(f"{meta} cannot be read ({exc})") from None
                n = len(next(iter(table.values()), []))
                if n != emb.shape[0]:
                    raise TrainingIndexError(f"{meta.name} has {n} rows for {emb.shape[0]} embeddings in {npy.name}: "
                                             "they must be clip-retrieval's pair, row for row")
                total += n
                columns = {c: _column(table, c, n) for c in ("url", "image_path", "key", "caption")}
                for i in range(n):
                    url, image_path, key, caption = (columns[c][i] for c in ("url", "image_path", "key", "caption"))
                    item = (by_url.get(url) if url else None) or (by_path.get(image_path) if image_path else None) \
                        or (by_path.get(os.path.realpath(os.path.join(emb_folder, image_path))) if image_path else None) \
                        or (by_key.get(key) if key else None) or (by_key.get(_key(image_path)) if image_path else None)
                    if item is None or have[item - 1]:
                        continue
                    vector = np.asarray(emb[i], dtype=np.float32)
                    norm = float(np.linalg.norm(vector))
                    rows[item - 1] = vector / norm if norm > 0 else vector
                    have[item - 1] = True
                    matched += 1
                    if url:
                        urls[item] = url
                    if caption:
                        captions[item] = caption
        if rows is not None:
            rows.flush()
            del rows
    _fill_metadata(conn, urls, captions)
    record.update(rows=total, matched_rows=matched, images_with_embedding=int(have.sum()),
                  images_without_embedding=int(count - have.sum()))


def _fill_metadata(conn: Any, urls: dict[int, str], captions: dict[int, str]) -> None:
    """Urls where an image has none; captions where it has none or only its file name."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("UPDATE items SET origin = ? WHERE id = ? AND origin IS NULL",
                         [(u, i) for i, u in urls.items()])
        conn.executemany("UPDATE sources SET origin = ? WHERE item_id = ? AND origin IS NULL",
                         [(u, i) for i, u in urls.items()])
        weak = "(caption = '' OR caption_source = 'the file name')"
        conn.executemany(f"UPDATE items SET caption = ?, caption_source = ? WHERE id = ? AND {weak}",
                         [(c, CAPTION_SOURCE, i) for i, c in captions.items()])
        conn.executemany(f"UPDATE sources SET caption = ?, caption_source = ? WHERE item_id = ? AND {weak}",
                         [(c, CAPTION_SOURCE, i) for i, c in captions.items()])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
