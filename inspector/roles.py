"""The words for what an index holds, in one place: the model's training set, or a reference collection.

An index records its role when it is built (``inspector index build --role training|reference``). Everything
that names a neighbour or the index (the window, the command line, suggestion reasons, the casebook, reports)
takes its words from :func:`role_words`, so that an artist's portfolio is never called training data. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRAINING = "training"
REFERENCE = "reference"
ROLES = (TRAINING, REFERENCE)


@dataclass(frozen=True)
class RoleWords:
    """Plain words for one role. Each attribute is ready to put in a sentence (lower case)."""

    role: str
    image: str  # "training image" / "reference image"
    images: str  # "training images" / "reference images"
    collection: str  # "the training set" / "your reference collection"
    within: str  # "in training" / "in your collection"
    index_name: str  # "training index" / "reference index"
    index_a: str  # "a training index (the model's training set)" / "a reference index (your collection)"
    role_name: str  # "training set" / "reference collection": what the picker shows

    @property
    def a_image(self) -> str:
        """"a training image" / "a reference image"."""
        return f"a {self.image}"

    def times(self, n: int) -> str:
        """How often an image's exact bytes occur: "once in training", "found 3 times in your collection"."""
        if self.role == REFERENCE:
            return f"found {'once' if n == 1 else f'{n} times'} {self.within}"
        return f"occurs {'once' if n == 1 else f'{n} times'} {self.within}"

    def occurs(self, n: int) -> str:
        """The same as a verb phrase after "that image": "occurs 3 times in training", "is found 3 times in your
        collection"."""
        return ("is " if self.role == REFERENCE else "") + self.times(n)

    def count(self, n: int) -> str:
        """Short count for a card: "in training: 3 times" / "in your collection: once"."""
        return f"{self.within}: {'once' if n == 1 else f'{n} times'}"


_WORDS = {
    TRAINING: RoleWords(
        role=TRAINING, image="training image", images="training images", collection="the training set",
        within="in training", index_name="training index",
        index_a="a training index (the model's training set)", role_name="training set"),
    REFERENCE: RoleWords(
        role=REFERENCE, image="reference image", images="reference images", collection="your reference collection",
        within="in your collection", index_name="reference index",
        index_a="a reference index (a collection to check against)",
        role_name="reference collection"),
}


def role_words(role: str | None) -> RoleWords:
    """The words for ``role`` ("training" or "reference"); None (an index or record made before roles) reads as
    training, which is what every index was then."""
    if role is None or role == "":
        return _WORDS[TRAINING]
    if role not in _WORDS:
        raise ValueError(f"unknown index role {role!r}: use training or reference")
    return _WORDS[role]


def role_of(neighbours: Iterable[Any], default: str | None = None) -> str:
    """The role of the index the neighbours came from (their ``index_role``), else ``default``, else training."""
    for nb in neighbours:
        role = getattr(nb, "index_role", None)
        if role:
            return role
    return default or TRAINING


def describe_index(identity: Mapping[str, Any] | None) -> str:
    """One line naming an index: role, source, images, build date, content hash.

    ``identity`` is what ``TrainingIndex.identity()`` returns (or a casebook's copy of it); None gives "".
    """
    if not identity:
        return ""
    words = role_words(identity.get("role"))
    parts = [f"{words.role_name} {identity.get('source') or '?'}"]
    images = identity.get("images")
    if images is not None:
        parts.append(f"{images} images")
    if identity.get("built"):
        parts.append(f"built {identity['built']}")
    digest = identity.get("content_hash")
    parts.append(f"content sha256 {digest[:16]}…" if digest else "content hash not recorded")
    return ", ".join(parts)


def origin_words(url: str | None) -> str:
    """A neighbour's origin as shown beside its local file: "url https://…" for a URL (img2dataset's), "origin
    skimage.data.astronaut" for anything else a sidecar recorded, "" when nothing did."""
    if not url:
        return ""
    return f"{'url' if '://' in url else 'origin'} {url}"
