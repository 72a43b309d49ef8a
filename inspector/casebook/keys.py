"""The generation key: one finding per generation, whoever made it.

A generation is identified by what determines its pixels, and by the pixels themselves:

- the model's weights (their sha256),
- prompt and negative prompt, seed, steps, guidance,
- the scheduler's class and configuration (diffusers' bookkeeping keys, which start with "_" and carry the
  library's version, left out),
- the image size, and
- the sha256 of the decoded 8-bit RGB pixels (:func:`inspector.provenance.pixels_sha256`, which also covers the
  size), so two records that agree on every setting but not on the pixels stay two findings.

Not in the key: thread count, batch size (sampling is batch-invariant by default; with ``--fast-batches`` the
pixels may change, and the pixel hash then tells the two apart), device, dtype, timestamps, library versions.

Only a provenance record written by the inspector's generation engine (``schema`` = ``inspector.provenance/1``)
says all of this, so findings without one (imported images, hand-made records) have no key and are never
merged with another.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

from inspector.casebook import jsontext

#: Version of the key's layout, hashed into the key: a change of what the key covers changes every key.
KEY_VERSION = 1


def pixels_sha256_of_png(png: bytes) -> str:
    """The sha256 (hex) of a PNG's decoded 8-bit RGB pixels, as the provenance record computes it."""
    from PIL import Image

    from inspector.provenance import pixels_sha256

    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return pixels_sha256(im)


def _scheduler(value: Any) -> Any:
    """The scheduler as the key sees it: class and config, non-finite floats in one spelling whichever way the
    record wrote them (tagged ``{"__float__": "-inf"}`` or the older bare string), bookkeeping keys dropped."""
    from inspector.provenance import json_restore

    if not isinstance(value, Mapping):
        return value  # a bare class name (older or hand-made records)
    config = value.get("config")
    if isinstance(config, Mapping):
        config = {k: v for k, v in json_restore(dict(config)).items() if not str(k).startswith("_")}
    return {"class": value.get("class"), "config": config}


def _number(value: Any) -> Any:
    """2 and 2.0 are the same guidance; None stays None."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def generation_key(provenance: Mapping[str, Any] | None, image_png: bytes, *, prompt: str,
                   negative_prompt: str, seed: int) -> str | None:
    """The generation key (64 hex digits) of an image and its provenance record, or None when the record is
    not one the inspector's generation engine wrote (then nothing says what determined the pixels).

    ``prompt``, ``negative_prompt`` and ``seed`` are the finding's own (taken from the same record when the
    finding was made). Raises :class:`ValueError` when ``image_png`` cannot be decoded.
    """
    from inspector.provenance import SCHEMA

    if not isinstance(provenance, Mapping) or provenance.get("schema") != SCHEMA:
        return None
    model = provenance.get("model")
    weights = model.get("sha256") if isinstance(model, Mapping) else None
    if not weights:
        return None
    try:
        pixels = pixels_sha256_of_png(bytes(image_png))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad PNG
        raise ValueError(f"the generation image cannot be decoded ({exc})") from None
    content = {
        "key_version": KEY_VERSION,
        "model_sha256": str(weights),
        "prompt": prompt,
        "negative_prompt": negative_prompt or "",
        "seed": int(seed),
        "steps": provenance.get("steps"),
        "guidance": _number(provenance.get("guidance")),
        "scheduler": _scheduler(provenance.get("scheduler")),
        "width": provenance.get("width"),
        "height": provenance.get("height"),
        "pixels_sha256": pixels,
    }
    return hashlib.sha256(jsontext.canonical(content)).hexdigest()
