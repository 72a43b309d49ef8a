"""The label-event hash chain: each event's hash covers the previous event's hash and its own content, so
that changing, reordering or removing an event (outside the casebook's API) is detectable."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from inspector.casebook import jsontext

#: ``prev_hash`` of the first event in a casebook.
GENESIS = "0" * 64

#: The event fields the hash covers, in the table's column names.
HASHED_FIELDS = (
    "id",
    "finding_id",
    "action",
    "label",
    "previous_label",
    "reviewer",
    "note",
    "undoes",
    "image_sha256",
    "created_at",
)


#: Hashed too when not NULL, so that events written before a field existed hash exactly as they did:
#: ``run_id`` since casebook version 4; ``finding_prev_hash`` since version 5 (the hash of the same finding's
#: previous event, GENESIS for its first: each finding's events form their own chain inside the casebook's, so
#: that removing any one of them names the finding).
OPTIONAL_HASHED_FIELDS = ("run_id", "finding_prev_hash")


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """sha256 (hex) over ``prev_hash`` (64 hex characters) and the canonical JSON of the event's hashed fields
    (:data:`HASHED_FIELDS`, and each of :data:`OPTIONAL_HASHED_FIELDS` that is not None)."""
    content = {name: event.get(name) for name in HASHED_FIELDS}
    content.update({name: event[name] for name in OPTIONAL_HASHED_FIELDS if event.get(name) is not None})
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + jsontext.canonical(content)).hexdigest()
