"""What a report says, gathered once from a casebook: the HTML template, the PDF and the manifest all read it.

:func:`gather` returns a :class:`ReportData`: the cover (matter, claimant, author, export time with its zone,
versions, the casebook file's sha256 and label-chain head, the indexes searched, whether ``verify`` passed),
one :class:`PromptView` per prompt (what was generated and found, the copied image) and, lazily, one
:class:`FindingView` per finding (pictures, distances in words, heatmaps drawn from the compared arrays, the
label history with full hashes, reproductions, the provenance in full). No Qt here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inspector import findings, heatmap, metrics
from inspector.casebook import Casebook, VerifyReport, model_identity, verdict_neighbour
from inspector.errors import UserError
from inspector.extraction import BORDERLINE_MARGIN
from inspector.fileio import sha256_file as file_sha256
from inspector.findings import (
    LABELS,
    UNLABELED,
    Finding,
    FindingSummary,
    LabelEvent,
    Neighbour,
    label_meaning,
)
from inspector.images import as_uint8, canonical
from inspector.provenance import (
    PIXELS_RULE,
    PIXELS_RULE_SIZED,
    QUERY_KIND,
    finding_kind,
    library_versions,
    recorded_pixels_rule,
    rgb_sha256,
)
from inspector.roles import RoleWords, describe_index, origin_words, role_of, role_words
from inspector.timestamps import format_time, parse_time

#: Side of the heatmaps of findings recorded before the compared pixels were kept (drawn from thumbnails).
HEATMAP_SIDE = 128
#: Largest difference on the heatmap colour scale (mean absolute channel difference in [0, 1]).
HEATMAP_VMAX = 0.5
#: Largest value on the tile-grid colour scale (tile l2 in [0, 1]).
TILE_VMAX = 0.5

ACTION_WORDS = {
    "record": "recorded", "label": "labeled", "undo": "undid a label change", "note": "changed the notes",
    "link": "made again by another run", "reproduce": "reproduced", "run": "run record",
}

#: How the pixel hash is defined, in words for the report (README "The pixel hash" says the same).
PIXEL_HASH_WORDS = (
    "The pixel hash is the sha256 of the image's raw RGB bytes: 8 bits per channel, row by row from the top,"
    " each pixel's red, green and blue (height x width x 3 bytes, nothing before or after them), so that anyone"
    " can recompute it from the image with any tool, e.g. in Python"
    " hashlib.sha256(numpy.asarray(PIL.Image.open(f).convert('RGB')).tobytes()). Provenance records written"
    " before this rule was named hashed the text 'WIDTHxHEIGHT:' before the same bytes; the report says which"
    " rule each recorded hash follows.")


def label_words(label: str, role: str | None = None) -> str:
    """A label in words, naming what the generation was compared with (the index's role): "Memorized: a near
    copy of a training image"; "Not labeled yet"."""
    words = role_words(role)
    meaning = label_meaning(label, words.image, words.images)
    if label == UNLABELED:
        return meaning[:1].upper() + meaning[1:]
    return f"{findings.LABEL_WORDS[label]}: {meaning}" if meaning else label


#: Each label in words for a training index (:func:`label_words`).
LABEL_WORDS = {label: label_words(label) for label in (*LABELS, UNLABELED)}


# --- choosing what to export ----------------------------------------------------------------------------------


@dataclass
class Selection:
    """Which findings an export holds; every filter given must hold (none: the whole casebook).

    ``ids`` exactly these findings; ``label`` one label (memorized, likeness-only, novel, unlabeled);
    ``prompt`` exactly this prompt; ``run_id`` the findings this run made (or made again); ``since`` findings
    recorded at or after this moment (ISO 8601 date or date and time; without a zone, the local zone).
    """

    ids: list[int] | None = None
    label: str | None = None
    prompt: str | None = None
    run_id: int | None = None
    since: str | None = None

    @property
    def is_everything(self) -> bool:
        return not (self.ids or self.label or self.prompt is not None or self.run_id is not None or self.since)

    def since_utc(self) -> str | None:
        """``since`` as the casebook writes times (UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), or None.

        Raises
        ------
        UserError
            When ``since`` is not an ISO 8601 date or date and time.
        """
        if not self.since:
            return None
        try:
            moment = parse_time(self.since)  # without a zone: the person's own
        except ValueError:
            raise UserError(f"--since {self.since!r} is not a date: write it as 2026-11-01 or"
                            " 2026-11-01T09:30 (local time) or 2026-11-01T08:30Z (UTC)") from None
        return format_time(moment)

    def words(self) -> list[str]:
        """Each filter in words, for the cover and the manifest ("every finding" when none)."""
        out = []
        if self.ids:
            out.append("findings " + ", ".join(str(i) for i in self.ids))
        if self.label:
            out.append(f"label {self.label}")
        if self.prompt is not None:
            out.append(f"prompt exactly {self.prompt!r}")
        if self.run_id is not None:
            out.append(f"made by run {self.run_id}")
        if self.since:
            out.append(f"recorded since {self.since} ({self.since_utc()} UTC)")
        return out or ["every finding in the casebook"]

    def as_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "label": self.label, "prompt": self.prompt, "run": self.run_id,
                "since": self.since}

    def summaries(self, casebook: Casebook) -> list[FindingSummary]:
        """The findings chosen, oldest first.

        Raises
        ------
        UserError
            An id the casebook does not have, a label it does not know, a run it does not hold, a bad date, or
            filters that together choose no finding of a casebook that has some.
        """
        if self.run_id is not None and not hasattr(casebook, "runs"):
            raise UserError("this inspector keeps no runs: --run cannot choose findings")
        since = self.since_utc()
        try:
            found = casebook.findings(label=self.label, prompt=self.prompt,
                                      **({"run_id": self.run_id} if self.run_id is not None else {}))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if self.run_id is not None:
            casebook.get_run(self.run_id)  # raises for a run the casebook does not hold
        if self.ids:
            known = {s.id for s in casebook.findings()}
            missing = [i for i in self.ids if i not in known]
            if missing:
                raise UserError(f"the casebook has no finding {missing[0]}: `inspector casebook list FILE` shows"
                                " the ids")
            wanted = set(self.ids)
            found = [s for s in found if s.id in wanted]
        if since is not None:
            found = [s for s in found if (s.created_at or "") >= since]
        if not found and not self.is_everything and len(casebook):
            raise UserError(f"no finding matches {'; '.join(self.words())}: check the filters"
                            " (`inspector casebook list FILE` shows every finding)")
        return found


# --- pictures -------------------------------------------------------------------------------------------------


@dataclass
class Picture:
    """One image a report embeds: its PNG bytes and what it shows (``what`` names it in the manifest)."""

    png: bytes = field(repr=False)
    what: str
    alt: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def size(self) -> tuple[int, int]:
        with Image.open(io.BytesIO(self.png)) as im:
            return im.size


def png_bytes(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def open_png(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return im.copy()


def comparison_arrays(generation_png: bytes, n: Neighbour) -> tuple[np.ndarray, np.ndarray] | None:
    """The generation and the neighbour exactly as their distances were computed: two uint8 arrays of
    ``n.comparison_size`` px (the generation's canonical form, made again from its stored PNG the way the index
    made it; the neighbour's compared pixels as the casebook keeps them). None for a neighbour recorded without
    its compared pixels (casebooks before version 2)."""
    train = n.comparison_pixels()
    if train is None:
        return None
    return as_uint8(canonical(open_png(generation_png), int(train.shape[0]))), train


def _thumbnail_arrays(generation_png: bytes, n: Neighbour) -> tuple[np.ndarray, np.ndarray]:
    if not n.thumbnail_png:
        raise ValueError(f"neither the compared pixels nor a thumbnail of this {role_words(n.index_role).image} "
                         "were stored")
    thumb = open_png(n.thumbnail_png)
    side = max(8, min(HEATMAP_SIDE, *thumb.size))
    return as_uint8(canonical(open_png(generation_png), side)), as_uint8(canonical(thumb, side))


def heatmap_pictures(generation_png: bytes, n: Neighbour, tile_grid: bool = False) -> tuple[bytes, bytes | None, bool]:
    """The pixel-difference heatmap of a generation against a neighbour (as PNG), with ``tile_grid`` also the
    4 x 4 tile-l2 picture, and whether they are exact.

    Exact (the usual case): computed from :func:`comparison_arrays`, the two arrays the stored distances came
    from, so the tile numbers are the stored tiled l2's tiles. Findings recorded before the compared pixels
    were kept fall back to the stored thumbnail (at most :data:`HEATMAP_SIDE` px): close to, not equal to, the
    stored distances, and the report says so."""
    arrays = comparison_arrays(generation_png, n)
    exact = arrays is not None
    a, b = arrays if arrays is not None else _thumbnail_arrays(generation_png, n)
    diff = heatmap.overlay(b, metrics.pixel_difference_map(a, b), vmax=HEATMAP_VMAX)
    tiles = png_bytes(heatmap.tile_grid_picture(a, b, max(int(a.shape[0]), 128), vmax=TILE_VMAX)) if tile_grid \
        else None
    return png_bytes(diff), tiles, exact


def legend_picture(title: str, vmax: float, what: str) -> Picture:
    return Picture(png_bytes(heatmap.legend(120, vmax, title, width=120)), what,
                   f"colour scale for {title}: dark blue means 0 (the same), yellow means {vmax:.2f} or more"
                   " (different)")


# --- one finding ----------------------------------------------------------------------------------------------


@dataclass
class EventView:
    """One event of a finding's history, in words, with its full hashes."""

    event: LabelEvent
    action: str  # in words
    change: str  # "novel -> likeness-only" or the label
    detail: str = ""  # a reproduction's outcome in words, a run link

    @property
    def id(self) -> int:
        return self.event.id


@dataclass
class Reproduction:
    """A recorded reproduction of a finding (a "reproduce" event): when, where, with what, and the outcome."""

    event_id: int
    created_at: str
    reviewer: str
    record: dict[str, Any]

    @property
    def outcome(self) -> str:
        """"identical pixels (match)" or "max pixel difference 3 of 255 (MISMATCH)"."""
        r = self.record
        outcome = "identical pixels" if r.get("max_abs_diff") == 0 else \
            f"max pixel difference {r.get('max_abs_diff')} of 255"
        return outcome + (" (match)" if r.get("match") else " (MISMATCH)")

    @property
    def words(self) -> str:
        """The outcome, where it ran and on what device."""
        r = self.record
        machine = r.get("machine") or {}
        where = ", ".join(str(x) for x in (machine.get("hostname"), machine.get("platform")) if x)
        device = "/".join(str(x) for x in (r.get("device"), r.get("dtype")) if x)
        return f"{self.outcome} on {where or 'an unnamed machine'}" + (f", {device}" if device else "")


@dataclass
class NeighbourView:
    """One of the four nearest, ready to show: thumbnail, heatmaps, distances and origin in words."""

    neighbour: Neighbour
    words: RoleWords
    is_verdict: bool
    distance_lines: list[str]
    thumbnail: Picture | None
    difference: Picture | None = None
    tiles: Picture | None = None
    heatmap_exact: bool = True
    heatmap_problem: str = ""

    @property
    def caption_from_file_name(self) -> bool:
        return self.neighbour.caption_source == "the file name"

    @property
    def web_url(self) -> str | None:
        url = self.neighbour.url
        return url if url and url.lower().startswith(("http://", "https://")) else None

    @property
    def origin(self) -> str:
        return origin_words(self.neighbour.url)


@dataclass
class FindingView:
    """One finding as the report shows it."""

    finding: Finding
    role: str
    words: RoleWords
    label_text: str
    suggestion: str
    margin_text: str | None
    borderline: bool
    index_text: str
    model_id: str
    model_sha256: str
    generation: Picture
    pair: tuple[Picture, Picture] | None  # the generation and the verdict's neighbour at one scale
    pair_side: int | None
    pair_exact: bool
    neighbours: list[NeighbourView]
    history: list[EventView]
    reproductions: list[Reproduction]
    provenance: list[tuple[str, str]]
    problems: list[str]
    pixel_hash: str  # of the stored image, by PIXELS_RULE
    recorded_pixel_hash: str | None
    recorded_pixel_rule: str | None

    @property
    def id(self) -> int:
        return int(self.finding.id)

    @property
    def verdict(self) -> NeighbourView | None:
        return next((n for n in self.neighbours if n.is_verdict), None)

    @property
    def is_query(self) -> bool:
        """An image a person asked about (``inspector.image_query``), not a generation: no prompt, no seed."""
        return finding_kind(self.finding.provenance) == QUERY_KIND

    @property
    def image_title(self) -> str:
        """The finding's own image named: 'Generation (seed 3)', or 'Query image coffee.jpg'."""
        if self.is_query:
            return f"Query image {self.finding.provenance.get('file_name', '')}".rstrip()
        return f"Generation (seed {self.finding.seed})"

    def subject_facts(self) -> list[tuple[str, Any]]:
        """The facts that say what was checked: prompt, negative prompt and seed of a generation; file name, the
        sha256 of its bytes and its size for a query image."""
        f = self.finding
        if self.is_query:
            p = f.provenance
            return [("Query image", f"{p.get('file_name', '')} (asked about; not a generation)"),
                    ("File sha256", p.get("file_sha256", "(not recorded)")),
                    ("Image size", f"{p.get('width', '?')} x {p.get('height', '?')} px {p.get('format', '')}".strip())]
        return [("Prompt", f.prompt), ("Negative prompt", f.negative_prompt or "(none)"), ("Seed", f.seed)]

    def pictures(self) -> Iterator[Picture]:
        yield self.generation
        if self.pair:
            yield from self.pair
        for n in self.neighbours:
            yield from (p for p in (n.thumbnail, n.difference, n.tiles) if p is not None)


def distance_lines(n: Neighbour) -> list[str]:
    """A neighbour's distances in plain words, the verdict's first."""
    words = role_words(n.index_role)
    lines = [metrics.describe_tiled_l2(n.tiled_l2) if n.tiled_l2 is not None else "tiled l2 not recorded"]
    if n.comparison_size is not None:
        lines.append(f"compared at {n.comparison_size} x {n.comparison_size} px")
    if n.l2 is not None:
        lines.append(f"l2 {n.l2:.3f} (0 = identical)")
    if n.ssim is not None:
        lines.append(f"SSIM {n.ssim:.3f} (1 = identical structure)")
    if n.calibrated_l2 is not None:
        crowd = "far closer than" if n.calibrated_l2 < 1 else "no closer than"
        lines.append(f"calibrated l2 {n.calibrated_l2:.2f}: {crowd} the crowd of near {words.images}"
                     " (below 1 is a sign of copying)")
    if n.semantic_similarity is not None:
        lines.append(f"semantic similarity {n.semantic_similarity:.2f} (1 = same content)")
    return lines


def margin_words(values: Mapping[str, Any]) -> tuple[str, bool] | None:
    """The suggestion's margin (threshold minus the nearest tiled l2, signed) in words, and whether borderline."""
    if not isinstance(values.get("margin"), int | float):
        return None
    margin = float(values["margin"])
    side = "at or under the line: a near copy" if margin >= 0 else "above the line: not a near copy"
    text = f"{margin:+.3f} (the threshold minus the nearest tiled l2; {side})"
    if values.get("borderline"):
        return (f"{text}, within {BORDERLINE_MARGIN:.2f} of the line, where a little blur or a crop can move a"
                " distance across it. Compare the images before relying on the suggestion."), True
    return text, False


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested provenance as ``(dotted.key, value)`` rows, every leaf, nothing cut."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            yield from flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def format_value(value: Any) -> str:
    if isinstance(value, (list, Mapping)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def event_view(e: LabelEvent) -> EventView:
    action = ACTION_WORDS.get(e.action, e.action)
    if e.action == "undo" and e.undoes is not None:
        action += f" (event {e.undoes})"
    change = e.label if e.previous_label in (None, e.label) else f"{e.previous_label} \u2192 {e.label}"
    detail = ""
    run_id = getattr(e, "run_id", None)
    if e.action == "reproduce":  # the outcome; where and with what is under Reproductions
        detail = Reproduction(e.id, e.created_at, e.reviewer, _json_note(e.note)).outcome
    elif run_id is not None and e.action in ("record", "link"):
        detail = f"run {run_id}"
    return EventView(e, action, change or "", detail)


def _json_note(note: str) -> dict[str, Any]:
    try:
        value = json.loads(note)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def finding_view(casebook: Casebook, finding_id: int, problems: Sequence[str] = ()) -> FindingView:
    """Everything the report shows of one finding (pictures drawn here, once)."""
    f = casebook.get(finding_id)
    history = casebook.label_history(finding_id)
    role = (f.index or {}).get("role") or role_of(f.neighbours)
    words = role_words(role)
    suggestion = f.suggested_verdict or "none"
    if f.suggestion_reason:
        suggestion += f": {f.suggestion_reason}"
    margin = margin_words(f.metrics or {})
    verdict = verdict_neighbour(f.neighbours)
    model_id, model_sha = model_identity(f.provenance or {})
    generation = Picture(bytes(f.image_png), f"finding {f.id}: the generation as stored",
                         f"generation of finding {f.id}")
    neighbours = [_neighbour_view(f, n, n is verdict) for n in f.neighbours]
    pair, side, exact = _pair(f, verdict)
    try:
        stored = open_png(f.image_png)
        pixel_hash = rgb_sha256(stored)
    except (OSError, ValueError):
        pixel_hash = "(the stored image cannot be decoded)"
    recorded = (f.provenance or {}).get("pixels_sha256")
    return FindingView(
        finding=f, role=role, words=words, label_text=label_words(f.label, role), suggestion=suggestion,
        margin_text=margin[0] if margin else None, borderline=bool(margin and margin[1]),
        index_text=describe_index(f.index) if f.index else
        f"{words.role_name} (not named: recorded before indexes were named)",
        model_id=model_id, model_sha256=model_sha, generation=generation, pair=pair, pair_side=side,
        pair_exact=exact, neighbours=neighbours, history=[event_view(e) for e in history],
        reproductions=[Reproduction(e.id, e.created_at, e.reviewer, _json_note(e.note))
                       for e in history if e.action == "reproduce"],
        provenance=[(k, format_value(v)) for k, v in flatten(f.provenance or {})],
        problems=list(problems), pixel_hash=pixel_hash,
        recorded_pixel_hash=recorded if isinstance(recorded, str) else None,
        recorded_pixel_rule=recorded_pixels_rule(f.provenance) if isinstance(recorded, str) else None,
    )


def _neighbour_view(f: Finding, n: Neighbour, is_verdict: bool, heatmaps: bool = True) -> NeighbourView:
    words = role_words(n.index_role)
    thumb = Picture(bytes(n.thumbnail_png), f"finding {f.id}: nearest {n.rank} ({words.image} {n.item_id})",
                    f"{words.image} {n.item_id}: {n.caption}") if n.thumbnail_png else None
    view = NeighbourView(n, words, is_verdict, distance_lines(n), thumb)
    if thumb is None or not heatmaps:
        return view
    try:
        diff, tiles, exact = heatmap_pictures(f.image_png, n, tile_grid=is_verdict)
    except (OSError, ValueError) as exc:  # a damaged image must not stop the report
        view.heatmap_problem = f"heatmap not available: {exc}"
        return view
    view.difference = Picture(diff, f"finding {f.id}: pixel difference heatmap against nearest {n.rank}",
                              f"pixel difference heatmap against nearest {n.rank}")
    if tiles:
        view.tiles = Picture(tiles, f"finding {f.id}: tile l2 grid against nearest {n.rank}",
                             f"tile l2 grid against nearest {n.rank}")
    view.heatmap_exact = exact
    return view


def _pair(f: Finding, verdict: Neighbour | None) -> tuple[tuple[Picture, Picture] | None, int | None, bool]:
    """The generation and the neighbour the verdict is about, as two pictures of one size: the arrays the
    distances came from (or, for old findings, both reduced to the thumbnail's size)."""
    if verdict is None:
        return None, None, False
    try:
        arrays = comparison_arrays(f.image_png, verdict)
        exact = arrays is not None
        a, b = arrays if arrays is not None else _thumbnail_arrays(f.image_png, verdict)
    except (OSError, ValueError):
        return None, None, False
    side = int(a.shape[0])
    words = role_words(verdict.index_role)
    how = "as compared" if exact else "reduced to the stored thumbnail's size"
    return (Picture(png_bytes(Image.fromarray(a)), f"finding {f.id}: the generation at {side} x {side} px ({how})",
                    f"the generation of finding {f.id} at {side} x {side} px"),
            Picture(png_bytes(Image.fromarray(b)),
                    f"finding {f.id}: nearest {verdict.rank} at {side} x {side} px ({how})",
                    f"nearest {verdict.rank} ({words.image} {verdict.item_id}) at {side} x {side} px")), side, exact


# --- one prompt -----------------------------------------------------------------------------------------------


@dataclass
class PromptView:
    """What happened with one prompt: generated, found, labeled, the prompt-level signals, the copied image."""

    prompt: str
    finding_ids: list[int]
    generated: int
    generated_from_runs: bool  # True: counted by the runs on record; False: the prompt's findings
    runs: list[Any]  # inspector.findings.Run, when the casebook keeps runs
    suggested: dict[str, int]  # near copies / likeness / novel as the inspector suggested them
    labels: dict[str, int]  # memorized / likeness-only / novel / unlabeled as people labeled them
    clique: str | None  # "11 of 16 (flagged)"
    wen: str | None
    copied: NeighbourView | None  # the nearest image of the prompt's nearest finding
    copied_finding: int | None
    copied_picture: Picture | None
    words: RoleWords

    @property
    def near_copy(self) -> bool:
        n = self.copied.neighbour if self.copied else None
        return bool(n and n.tiled_l2 is not None and n.tiled_l2 <= metrics.EXTRACTION_THRESHOLD)


def _suggested_counts(summaries: Sequence[FindingSummary]) -> dict[str, int]:
    out = {"near copies": 0, "likeness": 0, "novel": 0}
    key = {findings.MEMORIZED: "near copies", findings.LIKENESS_SUGGESTED: "likeness",
           findings.LIKENESS_ONLY: "likeness", findings.NOVEL: "novel"}
    for s in summaries:
        if s.suggested_verdict in key:
            out[key[s.suggested_verdict]] += 1
    return out


def prompt_view(casebook: Casebook, prompt: str, chosen: Sequence[FindingSummary], run_id: int | None,
                views: Mapping[int, FindingView] | None = None) -> PromptView:
    """One prompt's summary: counted from the runs on record when there are any (else from its findings)."""
    every = casebook.findings(prompt=prompt)
    runs = []
    if hasattr(casebook, "runs"):
        runs = [r for r in casebook.runs(prompt=prompt) if run_id is None or r.id == run_id]
    finished = [r for r in runs if r.finished]
    if finished:
        generated = sum(r.n_finished for r in finished)
        suggested = {"near copies": sum(r.near_copies or 0 for r in finished),
                     "likeness": sum(r.likeness or 0 for r in finished),
                     "novel": sum(r.novel or 0 for r in finished)}
        best = max(finished, key=lambda r: (r.clique_size or 0, r.id))
        clique = None if best.clique_size is None else \
            f"{best.clique_size} of {best.n_finished}" + (" (flagged)" if best.clique_flagged else "") + \
            f" (run {best.id})"
        scores = [r for r in finished if r.wen_score is not None]
        wen = f"{max(r.wen_score for r in scores):.2f}" if scores else None
    else:
        generated = len(every)
        suggested = _suggested_counts(every)
        cliques = [(_num(s_metrics.get("clique_size")), s_metrics) for s_metrics in _metrics(casebook, every)]
        cliques = [c for c in cliques if c[0] is not None]
        clique = f"{max(c[0] for c in cliques):.0f} (as recorded with the findings)" if cliques else None
        wens = [_num(m.get("wen_score")) for m in _metrics(casebook, every)]
        wens = [w for w in wens if w is not None]
        wen = f"{max(wens):.2f}" if wens else None
    labels = dict.fromkeys((*LABELS, UNLABELED), 0)
    for s in chosen:
        labels[s.label] = labels.get(s.label, 0) + 1
    # The copied image: the nearest neighbour of the prompt's nearest finding, a labeled memorized one first.
    ranked = sorted(chosen, key=lambda s: (s.label != findings.MEMORIZED,
                                           s.nearest_tiled_l2 if s.nearest_tiled_l2 is not None else 9.0, s.id))
    copied = copied_picture = None
    copied_id = None
    role_name = None
    if ranked:
        copied_id = ranked[0].id
        view = views.get(copied_id) if views else None
        if view is None:
            f = casebook.get(copied_id)
            verdict = verdict_neighbour(f.neighbours)
            if verdict is not None:
                copied = _neighbour_view(f, verdict, True, heatmaps=False)
                role_name = verdict.index_role
                big, _, _ = _pair(f, verdict)
                copied_picture = big[1] if big else copied.thumbnail
        else:
            copied = view.verdict
            role_name = copied.neighbour.index_role if copied else None
            copied_picture = view.pair[1] if view.pair else (copied.thumbnail if copied else None)
    return PromptView(prompt=prompt, finding_ids=[s.id for s in chosen], generated=generated,
                      generated_from_runs=bool(finished), runs=runs, suggested=suggested, labels=labels,
                      clique=clique, wen=wen, copied=copied, copied_finding=copied_id,
                      copied_picture=copied_picture, words=role_words(role_name))


def _metrics(casebook: Casebook, summaries: Sequence[FindingSummary]) -> Iterator[Mapping[str, Any]]:
    for s in summaries:
        yield casebook.get(s.id).metrics or {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- the whole report -----------------------------------------------------------------------------------------


@dataclass
class ReportOptions:
    """What the person adds to a report: its title, the matter and claimant it is for, its author."""

    title: str | None = None
    matter: str = ""
    claimant: str = ""
    author: str = ""


@dataclass
class ReportData:
    """Everything a report shows, gathered once (findings lazily: :meth:`findings`)."""

    casebook: Casebook = field(repr=False)
    options: ReportOptions
    selection: Selection
    title: str
    exported_at: str  # local time with its zone, e.g. 2026-11-29 16:00:00 CET (UTC+01:00)
    exported_at_utc: str
    versions: dict[str, str]
    recorded_versions: list[tuple[dict[str, Any], list[int]]]  # library versions that made the images
    casebook_name: str
    casebook_sha256: str | None
    casebook_note: str
    schema_version: int
    chain_head: str
    chain_events: int
    check: VerifyReport
    summaries: list[FindingSummary]
    prompts: list[PromptView]
    indexes: list[dict[str, Any]]
    role: str | None  # the one role of every index searched, None when they differ
    counts: dict[str, int]

    @property
    def verified(self) -> bool:
        """True only when ``casebook verify`` passes for the whole file."""
        return self.check.ok

    @property
    def words(self) -> RoleWords:
        return role_words(self.role)

    def problems_by_finding(self) -> dict[int | None, list[str]]:
        return self.check.by_finding()

    def not_verified_text(self) -> str:
        """"NOT verified: ..." naming every failing finding (those in this export and the others)."""
        failing = self.check.failing_findings
        ids = {s.id for s in self.summaries}
        here = [i for i in failing if i in ids]
        there = [i for i in failing if i not in ids]
        parts = []
        if here:
            parts.append("findings " + ", ".join(str(i) for i in here) + " in this report fail")
        if there:
            parts.append("findings " + ", ".join(str(i) for i in there) + " not in this report fail")
        if None in self.check.by_finding():
            parts.append("the file as a whole fails")
        return "NOT verified: " + ("; ".join(parts) or self.check.summary())

    def findings(self) -> Iterator[FindingView]:
        """Each chosen finding's view, oldest first, drawn when asked for (kept for the prompt summaries)."""
        problems = self.check.by_finding()
        for s in self.summaries:
            yield finding_view(self.casebook, s.id, problems.get(s.id, ()))

    def cover_rows(self) -> list[tuple[str, str]]:
        """The cover's facts, in order (the HTML and the PDF show the same)."""
        o = self.options
        rows = [("Matter", o.matter or "(not given)"), ("Claimant", o.claimant or "(not given)"),
                ("Author", o.author or "(not given)"), ("Exported", f"{self.exported_at} ({self.exported_at_utc})"),
                ("Findings in this report", f"{len(self.summaries)} ({'; '.join(self.selection.words())})"),
                ("Casebook file", self.casebook_name),
                ("Casebook file sha256", self.casebook_sha256 or "(an in-memory casebook has no file)"),
                ("Casebook version", str(self.schema_version)),
                ("Label-chain head", f"{self.chain_head} ({self.chain_events} events)")]
        if self.casebook_note:
            rows.append(("Note on the file hash", self.casebook_note))
        return rows


def tool_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """The inspector's and its libraries' versions that wrote this report (without importing torch)."""
    return library_versions(("platform", "sqlite", "numpy", "pillow", "jinja2", "sqlite-utils", "scikit-image",
                             "cryptography", *extra))


def _casebook_file(casebook: Casebook) -> tuple[str, str | None, str]:
    if casebook.path is None:
        return "in-memory casebook", None, ""
    path = Path(casebook.path)
    note = ""
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.exists() and wal.stat().st_size > 0:
            note = ("another program had the casebook open while it was exported: its newest changes may still be"
                    f" in {wal.name}, beside the file, which this sha256 does not cover. Export again once every"
                    " program has closed it for a hash of the whole file.")
    except OSError:
        pass
    return path.name, file_sha256(path), note


def _exported_at() -> tuple[str, str]:
    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    local = f"{now.strftime('%Y-%m-%d %H:%M:%S')} {now.tzname()} (UTC{offset[:3]}:{offset[3:]})"
    return local, format_time(now)


def gather(casebook: Casebook, selection: Selection | None = None, options: ReportOptions | None = None,
           extra_versions: Sequence[str] = ()) -> ReportData:
    """Gather a report of the chosen findings (default: all) of ``casebook``.

    ``verify`` runs over the whole file first: the report says "verified" only when it passes.

    Raises
    ------
    UserError
        When the selection names a finding, run or date that does not exist or chooses nothing.
    """
    selection = selection or Selection()
    options = options or ReportOptions()
    summaries = selection.summaries(casebook)
    check = casebook.verify()
    name, sha, note = _casebook_file(casebook)
    head, events = casebook.chain_head()
    searched = _indexes(casebook, summaries)
    roles = {i.get("role") or "training" for i in searched}
    role = (next(iter(roles)) if len(roles) == 1 else None) if roles else "training"
    counts = dict.fromkeys((*LABELS, UNLABELED), 0)
    for s in summaries:
        counts[s.label] = counts.get(s.label, 0) + 1
    local, utc = _exported_at()
    data = ReportData(
        casebook=casebook, options=options, selection=selection,
        title=options.title or f"Casebook report: {name}", exported_at=local, exported_at_utc=utc,
        versions=tool_versions(extra_versions), recorded_versions=_recorded_versions(casebook, summaries),
        casebook_name=name, casebook_sha256=sha, casebook_note=note, schema_version=casebook.schema_version,
        chain_head=head, chain_events=events, check=check, summaries=summaries, prompts=[], indexes=searched,
        role=role, counts=counts)
    by_prompt: dict[str, list[FindingSummary]] = {}
    for s in summaries:
        if s.kind != QUERY_KIND:  # a query image has no prompt: its own section says what was asked
            by_prompt.setdefault(s.prompt, []).append(s)
    data.prompts = [prompt_view(casebook, p, chosen, selection.run_id) for p, chosen in by_prompt.items()]
    return data


def _indexes(casebook: Casebook, summaries: Sequence[FindingSummary]) -> list[dict[str, Any]]:
    """The indexes the chosen findings were searched in (all of the casebook's when everything is chosen)."""
    every = casebook.indexes_searched()
    if not summaries:
        return every
    seen: list[dict[str, Any]] = []
    for s in summaries:
        f = casebook.get(s.id)
        identity = f.index or {"role": role_of(f.neighbours)}
        if identity not in seen:
            seen.append(identity)
    return seen


def _recorded_versions(casebook: Casebook, summaries: Sequence[FindingSummary]) -> list[tuple[dict, list[int]]]:
    """The library versions recorded with the chosen findings' generations, each with the findings made so."""
    out: list[tuple[dict, list[int]]] = []
    for s in summaries:
        versions = (casebook.get(s.id).provenance or {}).get("versions")
        if not isinstance(versions, dict):
            continue
        for known, ids in out:
            if known == versions:
                ids.append(s.id)
                break
        else:
            out.append((versions, [s.id]))
    return out


def index_rows(identity: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An index's identity as rows (role, source, images, build date, full content hash)."""
    words = role_words(identity.get("role"))
    rows = [("Role", f"{words.role_name} ({identity.get('role') or 'training'})")]
    for key, name in (("source", "Source"), ("images", "Images"), ("built", "Built"),
                      ("content_hash", "Content sha256"), ("index_id", "Index id")):
        if identity.get(key) not in (None, ""):
            rows.append((name, str(identity[key])))
    if len(rows) == 1:
        rows.append(("Source", "(not named: recorded before indexes were named)"))
    return rows


__all__ = [
    "ACTION_WORDS", "HEATMAP_SIDE", "HEATMAP_VMAX", "LABEL_WORDS", "PIXEL_HASH_WORDS", "PIXELS_RULE",
    "PIXELS_RULE_SIZED", "FindingView", "NeighbourView", "Picture", "PromptView", "ReportData", "ReportOptions",
    "Reproduction", "Selection", "comparison_arrays", "file_sha256", "finding_view", "gather", "heatmap_pictures",
    "index_rows", "label_words", "legend_picture",
]
