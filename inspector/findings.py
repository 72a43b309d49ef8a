"""What the product is about, as plain data: a generation's neighbours and a reviewer's finding.

Shared by the training index (which finds neighbours), the extraction code (which suggests verdicts), the
casebook (which stores findings) and the GUI (which shows them). No I/O here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The labels a person can give (keys 1, 2, 3 in the window, in this order); "unlabeled" is the state before
#: anyone has looked. These exact strings are stored in casebooks and typed on the command line.
MEMORIZED = "memorized"
LIKENESS_ONLY = "likeness-only"
NOVEL = "novel"
LABELS = (MEMORIZED, LIKENESS_ONLY, NOVEL)
UNLABELED = "unlabeled"
#: Suggested verdicts (never labels): "likeness?" is a question for the person.
LIKENESS_SUGGESTED = "likeness?"
SUGGESTIONS = (MEMORIZED, LIKENESS_SUGGESTED, NOVEL)

#: Each label as a title, for buttons, filters and report headings.
LABEL_WORDS = {MEMORIZED: "Memorized", LIKENESS_ONLY: "Likeness only", NOVEL: "Novel", UNLABELED: "Unlabeled"}


def label_meaning(label: str, image: str = "training image", images: str = "training images") -> str:
    """What a label says about a generation, in words that name what it was compared with: ``image`` /
    ``images`` are the index role's words (:func:`inspector.roles.role_words`), e.g. "reference image". Lower
    case, no final stop; "" for an unknown label."""
    return {
        MEMORIZED: f"a near copy of a {image}",
        LIKENESS_ONLY: f"the same subject as {images}, but no near copy",
        NOVEL: "neither a copy nor a likeness",
        UNLABELED: "not labeled yet",
    }.get(label, "")


@dataclass
class Neighbour:
    """One training image near a generation, with its distances to it.

    Distances are computed in the canonical form at ``comparison_size`` (the smaller of the generation's side
    and the index's comparison size: never upsampled): ``l2`` and ``tiled_l2`` in [0, 1] (0 = identical),
    ``ssim`` in [-1, 1] (1 = identical), ``calibrated_l2`` >= 0 (this image's l2 over half the mean l2 of the 50
    nearest by l2; < 1: far closer than that crowd).
    """

    rank: int  # 1 = nearest
    item_id: int  # the image's id inside its index
    source: str  # file path or shard/key it came from (the first of its duplicates)
    caption: str
    duplicate_count: int  # how many times these exact bytes occur in the training set
    l2: float
    tiled_l2: float
    ssim: float
    calibrated_l2: float | None = None
    index_id: str = ""  # identity of the index (its manifest's id)
    thumbnail: str | None = None  # path of a display thumbnail inside the index folder
    image_sha256: str = ""
    licence: str | None = None
    semantic_similarity: float | None = None  # cosine similarity of CLIP embeddings, when configured
    # The thumbnail's PNG bytes: filled in by the casebook, which keeps them so that one file is the whole
    # evidence; a caller may set it instead of ``thumbnail`` when it has the bytes at hand.
    thumbnail_png: bytes | None = field(default=None, repr=False)
    #: Side in pixels of the square the distances were computed at; None for findings recorded before it was kept.
    comparison_size: int | None = None
    #: The training image exactly as compared: comparison_size x comparison_size x 3 uint8 (set by the index).
    pixels: Any = field(default=None, repr=False, compare=False)
    #: The same pixels as lossless PNG (set by the casebook, which keeps them for the report's heatmaps).
    pixels_png: bytes | None = field(default=None, repr=False)
    #: Where the image came from: the URL img2dataset downloaded it from (a sidecar's or parquet row's "url",
    #: else its "source"/"origin"); None when nothing recorded it. ``source`` is the local file or shard member.
    url: str | None = None
    #: The role of the index it was found in: "training" (the model's training set) or "reference" (a
    #: collection to check against). Words shown with it follow this (inspector.roles).
    index_role: str = "training"
    #: Where ``caption`` came from, in words: "the .json sidecar's 'caption'", "the .txt sidecar",
    #: "the parquet column 'txt'", "the file name"; None when not recorded.
    caption_source: str | None = None
    #: The generation's likeness score from the index's image embedder, the same on every neighbour of one
    #: generation: the cosine similarity s in [-1, 1] such that ``likeness_k`` training images (duplicates
    #: counted, any of them, not only these four) are at least s similar to it
    #: (inspector.training_index.semantic.likeness_score). None without an embedder.
    likeness_score: float | None = None
    #: The embedder's own threshold for ``likeness_score`` (calibrated on held-out images and recorded in the
    #: index manifest, or 0.9 for an embedder without calibration), and its k.
    likeness_threshold: float | None = None
    likeness_k: int | None = None

    def comparison_pixels(self) -> Any:
        """The training image exactly as compared (uint8 array), from ``pixels`` or ``pixels_png``; None when
        neither was kept (older findings). Heatmaps are drawn from these, so their numbers are the distances."""
        if self.pixels is not None:
            return self.pixels
        if not self.pixels_png:
            return None
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(self.pixels_png)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def as_dict(self) -> dict[str, Any]:
        """All fields but ``pixels`` as plain data (``thumbnail_png`` and ``pixels_png`` stay bytes; drop them
        before writing JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pixels"}


@dataclass
class Finding:
    """One generation, its four nearest training images, the suggestion, and the person's label."""

    prompt: str
    seed: int
    image_png: bytes  # the generation exactly as made, PNG with its provenance chunks
    provenance: dict[str, Any]  # prompt, negative prompt, seed, steps, guidance, scheduler, size, model, versions
    neighbours: list[Neighbour] = field(default_factory=list)
    negative_prompt: str = ""
    suggested_verdict: str | None = None
    suggestion_reason: str = ""  # plain words: why the suggestion is what it is
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. clique_size, wen_score, in_clique
    label: str = UNLABELED
    reviewer: str = ""
    notes: str = ""
    id: int | None = None  # set by the casebook
    created_at: str | None = None
    updated_at: str | None = None
    image_sha256: str = ""  # sha256 (hex) of ``image_png``, set by the casebook
    #: The index the neighbours were found in (``TrainingIndex.identity()``: index_id, role, source, images,
    #: built, content_hash, path); None when not recorded.
    index: dict[str, Any] | None = None
    #: The run that first recorded it (set by the casebook; None for findings recorded before runs were kept).
    run_id: int | None = None
    #: Every run that made this generation, oldest first (a scan and a window run of the same seed share it).
    run_ids: list[int] = field(default_factory=list)
    #: What determines its pixels, hashed (:mod:`inspector.casebook.keys`); None without an engine record.
    generation_key: str | None = None


@dataclass(frozen=True)
class LabelEvent:
    """One entry of a finding's append-only label history.

    ``label`` is the finding's label after the event. ``action`` is "record" (the finding entered the
    casebook), "label" (a person chose a label), "undo" (a person took back the label change ``undoes``) or
    "note" (a person changed the notes), "link" (another run made the same generation: ``run_id``) or "run"
    (a run was started, finished or annotated: ``finding_id`` and ``label`` are None, ``note`` holds the run's
    record as canonical JSON). ``hash`` is the sha256 (hex) over ``prev_hash`` and this event's content, so that
    changing or removing an earlier event breaks the chain.
    """

    id: int
    finding_id: int
    action: str
    label: str
    previous_label: str | None
    reviewer: str
    note: str
    created_at: str  # UTC, ISO 8601
    image_sha256: str
    prev_hash: str
    hash: str
    undoes: int | None = None
    run_id: int | None = None  # the run this event belongs to ("record" in a run, "link", "run")
    #: The hash of the same finding's previous event (GENESIS for its first); None before casebook version 5.
    finding_prev_hash: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FindingSummary:
    """A finding as a list of findings shows it: no full image, no neighbours, no provenance.

    ``nearest_tiled_l2`` and ``nearest_l2`` are the distances to the neighbour the verdict is about (the
    smallest tiled l2; rank 1 when the neighbours are ordered by tiled l2, as the index orders them), in [0, 1],
    or None when the finding has no neighbours.
    """

    id: int
    prompt: str
    negative_prompt: str
    seed: int
    label: str
    reviewer: str
    notes: str
    suggested_verdict: str | None
    suggestion_reason: str
    nearest_tiled_l2: float | None
    nearest_l2: float | None
    model_id: str
    model_sha256: str
    image_sha256: str
    created_at: str
    updated_at: str
    thumbnail_png: bytes | None = field(default=None, repr=False)
    run_id: int | None = None  # the run that first recorded it
    generation_key: str | None = None  # see inspector.casebook.keys
    #: "generation" (the model made it) or "query" (an image a person asked about: inspector.image_query); read
    #: from the provenance record's schema (inspector.provenance.finding_kind), not a column of its own.
    kind: str = "generation"
    #: A query image's file name ("pasted image" for a pasted one); None for a generation.
    file_name: str | None = None

    @property
    def subject(self) -> str:
        """What the finding is about, for a list: its prompt, or "query image NAME" for a query image."""
        return f"query image {self.file_name or ''}".rstrip() if self.kind == "query" else self.prompt

    @property
    def seed_text(self) -> str:
        """Its seed as a list shows it; "query" for a query image, which has none."""
        return "query" if self.kind == "query" else str(self.seed)

    def as_dict(self) -> dict[str, Any]:
        """Plain data without the thumbnail bytes, ready for JSON."""
        data = asdict(self)
        data.pop("thumbnail_png")
        return data


#: How a run was started: the window's Generate, the ``inspect`` command, or one prompt of a ``scan``.
RUN_KINDS = ("window", "inspect", "scan")


@dataclass
class Run:
    """One inspection of one prompt, on the record whatever it found (DESIGN.md, "Casebook").

    Counts are of the generations the run made: ``near_copies`` suggested memorized, ``likeness`` suggested
    "likeness?", ``novel`` suggested novel; None until the run finishes. ``clique_size`` is the largest set of
    near-identical generations (``clique_seeds`` their seeds), ``clique_flagged`` whether it reached
    ``clique_min_size``; ``wen_score`` Wen et al.'s score (None when not computed). ``finished_at`` None: the run
    is still going, or was stopped before it could finish (a killed process). ``findings`` is how many findings
    it made or saw again.
    """

    id: int
    kind: str
    prompt: str
    started_at: str
    n_requested: int
    negative_prompt: str = ""
    finished_at: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # n, first seed, steps, guidance, scheduler, batch
    model_id: str = ""
    model_sha256: str = ""
    index: dict[str, Any] | None = None  # TrainingIndex.identity(): role, source, images, built, content hash
    n_finished: int = 0
    cancelled: bool = False
    error: str = ""
    near_copies: int | None = None
    likeness: int | None = None
    novel: int | None = None
    clique_size: int | None = None
    clique_flagged: bool | None = None
    clique_min_size: int | None = None
    clique_seeds: list[int] = field(default_factory=list)
    wen_score: float | None = None
    unknown_words: list[str] = field(default_factory=list)
    reviewer: str = ""
    notes: str = ""
    findings: int = 0

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def in_words(self) -> str:
        """The run in one line: ``colourful squares: 16 generated, 0 near copies, clique 2/16, Wen 0.42``."""
        n, asked = self.n_finished, self.n_requested
        prefilter = self.settings.get("prefilter") if isinstance(self.settings, dict) else None
        if prefilter and self.finished and not asked:  # a scan's one-step prefilter (inspector.prefilter)
            score = "no score" if self.wen_score is None else f"Wen score {self.wen_score:.3g}"
            return (f"{self.prompt}: prefilter {score} (first {prefilter.get('first_steps')} step, "
                    f"{prefilter.get('seeds')} seeds), no generations")
        if not self.finished:
            parts = [f"{asked} requested, not finished (still running, or stopped before it could finish)"]
        elif self.error:
            parts = [f"{n} of {asked} generated, then failed: {self.error}"]
        elif self.cancelled:
            parts = [f"{n} of {asked} generated (cancelled)"]
        else:
            parts = [f"{n} generated" if n == asked else f"{n} of {asked} generated"]
        if self.near_copies is not None:
            parts.append(f"{self.near_copies} near cop{'y' if self.near_copies == 1 else 'ies'}")
        if self.likeness:
            parts.append(f"{self.likeness} possible likeness{'es' if self.likeness != 1 else ''}")
        if self.clique_size is not None and self.finished:
            parts.append(f"clique {self.clique_size}/{n}" + (" FLAGGED" if self.clique_flagged else ""))
        if self.wen_score is not None:
            parts.append(f"Wen {self.wen_score:.2f}")
        if self.unknown_words:
            parts.append(f"words the model cannot read: {', '.join(self.unknown_words)}")
        return f"{self.prompt}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON, with the one-line ``summary`` in words."""
        return {**asdict(self), "finished": self.finished, "summary": self.in_words()}
