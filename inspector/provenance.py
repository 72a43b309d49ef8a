"""How a generation was made, written into its PNG, and the identity (sha256) of the model that made it.

Every image the inspector generates carries its provenance (DESIGN.md, "Casebook"): prompt, negative prompt,
seed, steps, guidance, scheduler class and config, size, model source and weight sha256, library versions,
device and dtype. It travels in two PNG text chunks, so an image found later still says how it was made:

- ``parameters``: the A1111 convention, one human-readable block that other tools already show::

      a photo of a red fox
      Negative prompt: blurry
      Steps: 25, Sampler: DDIMScheduler, CFG scale: 2.0, Seed: 3, Size: 32x32, Model hash: 3f2a9c01bd, Model: demo

- ``inspector``: the full record as JSON (:data:`PROVENANCE_KEY`), which :func:`read_provenance` returns.

Records are strict JSON (RFC 8259), so jq, Datasette and any other tool read them: :func:`json_safe` is the one
sanitiser every writer of provenance uses (PNG chunk, ``manifest.json``, casebook). Strict JSON has no NaN or
Infinity, yet scheduler configs hold them (DPM-Solver's ``lambda_min_clipped`` defaults to -inf), so a
non-finite float is written as the tagged object ``{"__float__": "inf"}`` (or ``"-inf"``, ``"nan"``), and
:func:`json_restore` turns it back into the float exactly. Records stay in that JSON-safe form when read; the
tagged values are restored where they are used (a scheduler rebuilt from its recorded config). Records written
before the tag held the bare strings ``"inf"``, ``"-inf"`` and ``"nan"``; rebuilding a scheduler restores those
too where the scheduler's own default for that field is a float.

Model identity: the sha256 of each weight file, computed once and cached by (real path, size, mtime) in a small
JSON file in the user cache folder (``$INSPECTOR_CACHE_DIR`` overrides it). A model folder's identity is the
sha256 of its ``sha256sum``-style listing (``<sha256>  <relative path>`` lines, sorted by path); a single-file
checkpoint's identity is the sha256 of the file itself, as A1111 shows it.

No torch import at module level: the GUI imports this at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inspector.errors import UserError
from inspector.fileio import sha256_file, write_atomic

log = logging.getLogger(__name__)

#: PNG text chunk holding the full provenance as JSON.
PROVENANCE_KEY = "inspector"
#: PNG text chunk in the A1111 ``parameters`` format.
PARAMETERS_KEY = "parameters"
#: Version of the JSON layout written under :data:`PROVENANCE_KEY`.
SCHEMA = "inspector.provenance/1"
#: The provenance of a finding of kind "query": an image a person brought (dropped, pasted, or named to
#: ``index query``), not one the model made; no seed, no model, so never a generation key
#: (``inspector.image_query.query_record`` writes it).
QUERY_SCHEMA = "inspector.query/1"
#: A finding's kinds: a generation the model made, or an image a person asked about.
GENERATION_KIND, QUERY_KIND = "generation", "query"
#: Application name for the user cache folder.
APP_NAME = "memorization-inspector"
#: File name of the weight-hash cache inside the cache folder.
HASH_CACHE_FILE = "weight-hashes.json"

_CHUNK = 4 * 1024 * 1024
_cache_lock = threading.Lock()


def finding_kind(provenance: Mapping[str, Any] | None) -> str:
    """:data:`QUERY_KIND` for a query image's record (:data:`QUERY_SCHEMA`), else :data:`GENERATION_KIND`."""
    return QUERY_KIND if isinstance(provenance, Mapping) and provenance.get("schema") == QUERY_SCHEMA \
        else GENERATION_KIND


class ProvenanceError(UserError):
    """A PNG has no readable inspector provenance; the message says why."""


# --------------------------------------------------------------------------------------------- model identity


def cache_dir() -> Path:
    """The inspector's cache folder: ``$INSPECTOR_CACHE_DIR`` if set, else the platform's user cache folder."""
    override = os.environ.get("INSPECTOR_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def _load_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable weight-hash cache %s (%s); it will be rebuilt", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _store_hash_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, indent=0, sort_keys=True))
    except OSError as exc:  # a cache we cannot write only costs time next start
        log.warning("cannot write the weight-hash cache %s (%s); hashes will be recomputed", path, exc)


def file_sha256(path: str | os.PathLike, use_cache: bool = True) -> str:
    """The sha256 (hex) of a file's bytes, cached by its real path, size and modification time.

    A cache hit needs the same size and mtime (nanoseconds), so an edited or replaced file is hashed again.
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    key, stamp = real, [st.st_size, st.st_mtime_ns]
    store = cache_dir() / HASH_CACHE_FILE
    if use_cache:
        with _cache_lock:
            hit = _load_hash_cache(store).get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
            return hit["sha256"]
    digest = sha256_file(real)
    if use_cache:
        with _cache_lock:
            data = _load_hash_cache(store)
            data[key] = {"stamp": stamp, "sha256": digest}
            _store_hash_cache(store, data)
    return digest


def listing_sha256(file_hashes: Mapping[str, str]) -> str:
    """The sha256 of a ``sha256sum``-style listing of ``{relative path: sha256}``, sorted by path."""
    lines = "".join(f"{file_hashes[name]}  {name}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def files_sha256(root: Path, files: list[Path]) -> dict[str, str]:
    """``{path relative to root (posix): sha256}`` for ``files`` (each hashed through the cache)."""
    return {f.relative_to(root).as_posix(): file_sha256(f) for f in sorted(files)}


# ------------------------------------------------------------------------------------------- image records


#: The pixel hash's definition, named in every record that carries one (``pixels_sha256_rule``): the sha256 of
#: the raw 8-bit RGB bytes, row-major, height x width x 3, nothing before or after them. Anyone can recompute it,
#: e.g. ``hashlib.sha256(numpy.asarray(Image.open(png).convert("RGB")).tobytes())``.
PIXELS_RULE = "sha256 of raw RGB bytes (row-major, H x W x 3, 8 bit)"
#: The older definition, implied by a record without ``pixels_sha256_rule``: the same bytes after the prefix
#: ``"{width}x{height}:"`` (ASCII).
PIXELS_RULE_SIZED = "sha256 of 'WIDTHxHEIGHT:' then raw RGB bytes (row-major, H x W x 3, 8 bit)"


def rgb_sha256(image: Any) -> str:
    """The pixel hash (:data:`PIXELS_RULE`): sha256 of the image's raw 8-bit RGB bytes, row-major (H x W x 3),
    independent of how the PNG was compressed. Any tool that decodes the image to RGB can recompute it."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return hashlib.sha256(rgb.tobytes()).hexdigest()


def pixels_sha256(image: Any) -> str:
    """The older, size-prefixed pixel hash (:data:`PIXELS_RULE_SIZED`): sha256 of ``"{width}x{height}:"`` and
    the raw RGB bytes. Provenance records written before ``pixels_sha256_rule`` carry this one, and the
    casebook's generation key is built on it (so keys stay stable); new records carry :func:`rgb_sha256`."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def recorded_pixels_rule(record: Mapping[str, Any]) -> str:
    """The definition a provenance record's ``pixels_sha256`` follows: :data:`PIXELS_RULE` when the record says
    so, else (older records) :data:`PIXELS_RULE_SIZED`."""
    return PIXELS_RULE if record.get("pixels_sha256_rule") == PIXELS_RULE else PIXELS_RULE_SIZED


def pixels_sha256_by_rule(image: Any, rule: str) -> str:
    """The pixel hash of ``image`` under ``rule`` (:data:`PIXELS_RULE` or :data:`PIXELS_RULE_SIZED`)."""
    if rule == PIXELS_RULE:
        return rgb_sha256(image)
    if rule == PIXELS_RULE_SIZED:
        return pixels_sha256(image)
    raise ValueError(f"unknown pixel hash rule {rule!r}")


#: The libraries that decide a generation's pixels: every provenance record names their versions.
PIXEL_LIBRARIES = ("diffusers", "transformers", "torch")
#: Where a library's version is found: its module (when already imported: the version actually running) and its
#: installed distributions (read without importing it, so asking costs no torch import).
_LIBRARIES = {
    "diffusers": ("diffusers", ("diffusers",)),
    "transformers": ("transformers", ("transformers",)),
    "torch": ("torch", ("torch",)),
    "numpy": ("numpy", ("numpy",)),
    "pillow": ("PIL", ("pillow", "Pillow")),
    "faiss": ("faiss", ("faiss-cpu", "faiss-gpu", "faiss")),
}


def library_versions(libraries: Sequence[str] = PIXEL_LIBRARIES) -> dict[str, str]:
    """The versions that shaped a record: ``{"inspector": ..., "python": ..., then each of ``libraries``}``.

    A library is named as its distribution (``"numpy"``, ``"jinja2"``, ``"scikit-image"``) or as one of:
    ``"torch"``, ``"diffusers"``, ``"transformers"``, ``"pillow"``, ``"faiss"`` (whichever faiss wheel is
    installed), ``"sqlite"`` (the SQLite library Python runs), ``"platform"`` (the operating system, tersely).
    A library that is not installed is ``"missing"``. Nothing is imported to ask.
    """
    import platform
    import sqlite3
    import sys
    from importlib import metadata

    from inspector import __version__

    out = {"inspector": __version__, "python": platform.python_version()}
    for name in libraries:
        if name == "sqlite":
            out[name] = sqlite3.sqlite_version
            continue
        if name == "platform":
            out[name] = platform.platform(terse=True)
            continue
        module, distributions = _LIBRARIES.get(name, (None, (name,)))
        loaded = sys.modules.get(module) if module else None
        version = getattr(loaded, "__version__", None)
        for distribution in distributions if version is None else ():
            try:
                version = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
        out[name] = str(version) if version is not None else "missing"
    return out


#: Key of the tagged object that stands for a non-finite float in strict JSON: ``{"__float__": "-inf"}``.
FLOAT_TAG = "__float__"
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def json_safe(value: Any, *, non_finite: str = "tagged") -> Any:
    """``value`` as strict JSON types (dicts, lists, str, int, finite float, bool, None): the one sanitiser of
    every JSON the inspector writes. The result always passes ``json.dumps(..., allow_nan=False)``.

    Keys become strings; tuples lists; sets sorted lists; bytes ``{"base64": ...}``; paths their text; numpy and
    torch values their Python equivalents; anything else unknown its ``str``. A non-finite float becomes, with
    ``non_finite="tagged"`` (provenance, manifests), ``{"__float__": "inf" | "-inf" | "nan"}``
    (:data:`FLOAT_TAG`), which :func:`json_restore` turns back into the same float; with ``non_finite="text"``
    the bare string ``"inf"``, ``"-inf"`` or ``"nan"`` (the casebook's metrics, whose hashed events were written
    so and must stay so: :mod:`inspector.casebook.jsontext`); with ``non_finite="null"`` None (the JSON export,
    for tools that want numbers or nothing).
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if non_finite == "tagged":
            return {FLOAT_TAG: text}
        if non_finite == "text":
            return text
        if non_finite == "null":
            return None
        raise ValueError(f"non_finite must be 'tagged', 'text' or 'null', not {non_finite!r}")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, non_finite=non_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, non_finite=non_finite) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v, non_finite=non_finite) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist(), non_finite=non_finite)
    if hasattr(value, "item"):
        return json_safe(value.item(), non_finite=non_finite)
    return str(value)


def tagged_float(value: Any) -> float | None:
    """The float a ``{"__float__": ...}`` object stands for, or ``None`` when ``value`` is not one."""
    if isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get(FLOAT_TAG), str):
        return _NON_FINITE.get(value[FLOAT_TAG].strip().lower())
    return None


def legacy_float(value: Any) -> float | None:
    """The float a bare ``"inf"``, ``"-inf"`` or ``"nan"`` string (older records) stands for, else ``None``.

    Also reads ``"Infinity"``/``"-Infinity"``/``"NaN"`` (JavaScript's and Python's json spellings).
    """
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("infinity", "inf")
    return _NON_FINITE.get(text.removeprefix("+"))


def json_restore(value: Any) -> Any:
    """Undo :func:`json_safe`'s tagging: every ``{"__float__": ...}`` inside ``value`` becomes its float again."""
    restored = tagged_float(value)
    if restored is not None:
        return restored
    if isinstance(value, Mapping):
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


def a1111_parameters(provenance: Mapping[str, Any]) -> str:
    """The A1111-style ``parameters`` text for a provenance record (prompt, negative prompt, settings line)."""
    lines = [str(provenance.get("prompt", ""))]
    if provenance.get("negative_prompt"):
        lines.append(f"Negative prompt: {provenance['negative_prompt']}")
    model = provenance.get("model") or {}
    scheduler = provenance.get("scheduler") or {}
    fields = [
        ("Steps", provenance.get("steps")),
        ("Sampler", scheduler.get("class")),
        ("CFG scale", provenance.get("guidance")),
        ("Seed", provenance.get("seed")),
        ("Size", f"{provenance.get('width')}x{provenance.get('height')}"),
        ("Model hash", (model.get("sha256") or "")[:10] or None),
        ("Model", model.get("name")),
        ("Version", f"inspector {(provenance.get('versions') or {}).get('inspector', '')}".strip()),
    ]
    lines.append(", ".join(f"{k}: {_a1111_value(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def _a1111_value(value: Any) -> str:
    text = str(value)
    # A1111 quotes values that would break its comma-separated parser.
    return json.dumps(text) if any(c in text for c in ',:\n"') else text


def png_bytes(image: Any, provenance: Mapping[str, Any]) -> bytes:
    """Encode ``image`` as PNG with the ``parameters`` and ``inspector`` (JSON) text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(provenance))
    info.add_text(PROVENANCE_KEY, json.dumps(json_safe(provenance), sort_keys=True, ensure_ascii=True,
                                                allow_nan=False))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


def read_provenance(png: str | os.PathLike | bytes) -> dict[str, Any]:
    """The provenance record stored in a PNG the inspector wrote (a path or the PNG's bytes).

    Raises
    ------
    ProvenanceError
        When the file is missing, not a PNG, or has no readable ``inspector`` chunk.
    """
    from PIL import Image, UnidentifiedImageError

    where = "the PNG data" if isinstance(png, bytes) else str(png)
    try:
        source = io.BytesIO(png) if isinstance(png, bytes) else open(png, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise ProvenanceError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ProvenanceError(f"{where}: is a folder; pass a PNG file the inspector wrote") from None
    except OSError as exc:
        raise ProvenanceError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        with source, Image.open(source) as im:
            if im.format != "PNG":
                raise ProvenanceError(f"{where}: is a {im.format} image, not a PNG the inspector wrote")
            im.load()  # text chunks after the image data are only read once the pixels are
            text = dict(getattr(im, "text", {}) or {})
    except ProvenanceError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise ProvenanceError(f"{where}: not a readable PNG ({exc})") from None
    raw = text.get(PROVENANCE_KEY)
    if raw is None:
        hint = " (it has A1111 'parameters' only)" if PARAMETERS_KEY in text else ""
        raise ProvenanceError(
            f"{where}: has no '{PROVENANCE_KEY}' provenance chunk{hint}; only PNGs written by "
            "`inspector generate` or the app can be read back or reproduced"
        )
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise ProvenanceError(f"{where}: the '{PROVENANCE_KEY}' chunk is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ProvenanceError(
            f"{where}: unknown provenance layout {record.get('schema') if isinstance(record, dict) else None!r}"
            f" (this inspector reads {SCHEMA!r}); update the inspector"
        )
    return record
