"""Reproduction as evidence: regenerate a finding from its record, compare the pixels, and put the outcome on the
casebook's record (a "reproduce" event in the hash chain), so that a report can list when, where and with what
the image was made again, and how closely it matched.

Used by ``inspector casebook reproduce`` and the window's Reproduce. The model is loaded and sampled here (slow);
the casebook is held only to read the finding and then to append the event, never while sampling. No Qt here.
"""

from __future__ import annotations

import io
import os
import platform
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.casebook import Casebook
from inspector.findings import LabelEvent

#: Environment variable naming the reviewer when none is given (``casebook label``, ``casebook reproduce``).
REVIEWER_ENV = "INSPECTOR_REVIEWER"


def default_reviewer() -> str:
    """The reviewer configured for this session: ``$INSPECTOR_REVIEWER`` (stripped), or ""."""
    return (os.environ.get(REVIEWER_ENV) or "").strip()


def machine() -> dict[str, str]:
    """The machine a reproduction ran on, in plain data: host name, operating system, CPU architecture, Python."""
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version()}


def reproduction_evidence(result: Any, stored_png: bytes) -> dict[str, Any]:
    """What a reproduction event records (plain JSON data): the outcome (match, maximum and mean pixel
    difference in 8-bit levels, the fraction of pixels that differ), the pixel hash of the regenerated image and
    of the stored one (sha256 of the raw RGB bytes, :data:`inspector.provenance.PIXELS_RULE`), the machine, the
    library versions, device and dtype, and the model's weights then and now.

    ``result`` is an :class:`inspector.generation.ReproduceResult`.
    """
    from PIL import Image

    from inspector.provenance import PIXELS_RULE, library_versions, rgb_sha256

    with Image.open(io.BytesIO(stored_png)) as stored:
        stored_hash = rgb_sha256(stored.convert("RGB"))
    return {
        "match": bool(result.match),
        "max_abs_diff": int(result.max_abs_diff),
        "mean_abs_diff": float(result.mean_abs_diff),
        "differing_fraction": float(result.differing_fraction),
        "tolerance": int(result.tolerance),
        "pixels_sha256": rgb_sha256(result.image.convert("RGB")),
        "stored_pixels_sha256": stored_hash,
        "pixels_sha256_rule": PIXELS_RULE,
        "machine": machine(),
        "versions": library_versions(),
        "device": str(result.device), "dtype": str(result.dtype),
        "recorded_device": str(result.recorded_device), "recorded_dtype": str(result.recorded_dtype),
        "model_sha256": str(result.model_sha256), "recorded_model_sha256": str(result.recorded_model_sha256),
        "same_model": bool(result.same_model),
        "weight_changes": list(result.weight_changes),
        "config_changed": bool(result.config_changed),
        "batch_seeds": [int(s) for s in result.batch_seeds],
        "summary": result.summary(),
    }


@dataclass
class Reproduced:
    """A finding reproduced: the comparison, the evidence recorded and the event that holds it."""

    finding_id: int
    result: Any  # inspector.generation.ReproduceResult
    evidence: dict[str, Any]
    event: LabelEvent | None

    def summary(self) -> str:
        recorded = f" (recorded as event {self.event.id})" if self.event is not None else ""
        return f"finding {self.finding_id}: {self.result.summary()}{recorded}"


def reproduce_finding(
    casebook_path: str | os.PathLike,
    finding_id: int,
    *,
    model: Any = None,
    device: str = "auto",
    reviewer: str = "",
    record: bool = True,
    reproduce: Callable[..., Any] | None = None,
) -> Reproduced:
    """Regenerate finding ``finding_id`` of the casebook at ``casebook_path`` from the record in its stored PNG,
    compare the pixels and (with ``record``) append a "reproduce" event with the evidence.

    ``model``: a loaded model or a model source (default: the one the record names). ``reproduce`` replaces
    :func:`inspector.generation.reproduce` (tests).

    Raises
    ------
    UserError
        The casebook or finding does not exist, or the record cannot be replayed (no provenance, a missing model
        component, an unusable scheduler: the message names it).
    """
    if reproduce is None:
        from inspector.generation import reproduce
    with Casebook.open(casebook_path, create=False, readonly=True) as book:
        stored = bytes(book.get(finding_id).image_png)
    with tempfile.TemporaryDirectory(prefix="inspector-reproduce-") as tmp:
        png = Path(tmp) / f"finding-{int(finding_id)}.png"
        png.write_bytes(stored)
        result = reproduce(png, model, device=device)
    evidence = reproduction_evidence(result, stored)
    event = None
    if record:
        with Casebook.open(casebook_path, create=False) as book:
            event = book.record_reproduction(finding_id, evidence, reviewer=reviewer)
    return Reproduced(int(finding_id), result, evidence, event)
