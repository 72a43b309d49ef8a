"""Provenance, metrics and label events as strict JSON text (RFC 8259: no NaN, no Infinity), so that
Datasette, jq and any other tool read the casebook the way the inspector does."""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data.

    numpy scalars and arrays become numbers and lists, paths become strings, tuples and sets lists, bytes a
    ``{"base64": ...}`` object; a non-finite float becomes the string "nan", "inf" or "-inf" (strict JSON has
    no such numbers). Anything else unknown becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)


def dumps(value: Any) -> str:
    """Readable JSON text of ``value`` (keys in the given order), after :func:`jsonable`."""
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def canonical(value: Any) -> bytes:
    """The one byte string that stands for ``value`` when hashing: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def loads(text: str | None, default: Any = None) -> Any:
    """Parse JSON text stored by :func:`dumps`; ``default`` for NULL or empty text."""
    if not text:
        return default
    return json.loads(text)
