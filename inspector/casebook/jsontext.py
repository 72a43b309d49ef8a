"""Provenance, metrics and label events as strict JSON text (RFC 8259: no NaN, no Infinity), so that
Datasette, jq and any other tool read the casebook the way the inspector does."""

from __future__ import annotations

import json
from typing import Any

from inspector.provenance import json_safe


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (:func:`inspector.provenance.json_safe`), a non-finite float as the string
    "nan", "inf" or "-inf": the casebook has always stored them so, and its hashed events must read back the
    same."""
    return json_safe(value, non_finite="text")


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
