"""The artist's "check my work", without Qt (issue 18, point 3).

An artist points at the folder of their own works. The app indexes it as a *reference* collection (never called
training data), builds the prompts people would try ("{title}", "{title} by {name}", "in the style of {name}",
and the artist's own lines), generates each prompt's images, and says per work, in plain words, whether any
generation came out as a near copy of it (tiled l2 within :data:`inspector.metrics.EXTRACTION_THRESHOLD`).

Every step is a generator of progress (one unit of work per ``yield``), so the window runs it on a worker with
one progress bar and a Cancel that answers between images.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from PIL import Image

from inspector.metrics import EXTRACTION_THRESHOLD
from inspector.progress import Progress
from inspector.session import Inspected, InspectRequest, PromptSummary, inspect_prompt
from inspector.timestamps import utc_now

#: The prompts people would try, before the artist's own lines.
PROMPT_PATTERNS = ("{title}", "{title} by {name}", "in the style of {name}")
#: Longest side, in pixels, of the pictures a result keeps of each work and its closest generation.
THUMBNAIL_SIDE = 256
CANCELLED_WORDS = "the check was cancelled before every prompt ran: what is above covers only what ran"


def title_from(source: str, caption: str = "", caption_source: str | None = None) -> str:
    """A work's title: its caption when one was written for it (a sidecar .txt or .json), else its file name
    without extension, with ``_`` and ``-`` as spaces (``morning_cup.png`` -> ``morning cup``)."""
    if caption and caption_source not in (None, "", "file name", "filename", "name"):
        return caption.strip()
    stem = PurePath(source).stem
    return re.sub(r"[_\-]+", " ", stem).strip()


def build_prompts(titles: Sequence[str], name: str, own: Sequence[str] = (),
                  patterns: Sequence[str] = PROMPT_PATTERNS) -> list[str]:
    """Every prompt of ``patterns`` (default :data:`PROMPT_PATTERNS`) for each title (those naming the artist
    only when a name is given), then the artist's own lines; blank and repeated ones left out, in that order."""
    out: list[str] = []
    name = name.strip()
    for title in titles:
        for pattern in patterns:
            if "{title}" not in pattern:
                continue
            if "{name}" in pattern and not name:
                continue
            out.append(pattern.format(title=title, name=name))
    if name:
        out += [p.format(title="", name=name) for p in patterns if "{title}" not in p]
    out += [line.strip() for line in own]
    seen: set[str] = set()
    return [p for p in out if p and not (p in seen or seen.add(p))]


def pattern_problem(patterns: Sequence[str]) -> str:
    """What is wrong with the prompt patterns in words ("" when nothing is): each must name ``{title}`` or
    ``{name}`` and nothing else in braces."""
    import string

    for pattern in patterns:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
        except ValueError:
            return f"the pattern '{pattern}' has a brace without its partner: write {{title}} or {{name}}"
        other = [f for f in fields if f not in ("title", "name")]
        if other:
            return (f"the pattern '{pattern}' has {{{other[0]}}}, which nothing fills in: use {{title}} for each"
                    " work's title and {name} for your name")
        if not fields:
            return (f"the pattern '{pattern}' names neither {{title}} nor {{name}}: put it under your own prompts"
                    " instead")
    return ""


@dataclass
class WorkResult:
    """What the check found for one work: the closest generation, its prompt and the seeds that made a near copy."""

    file_name: str  # the work's file name, never its folder (exports carry no local paths)
    title: str
    best_tiled_l2: float | None = None
    best_prompt: str = ""
    near_copy_seeds: dict[str, list[int]] = field(default_factory=dict)  # prompt -> seeds
    best_seed: int | None = None
    #: Pictures to show beside the words: the work as the index keeps it (its thumbnail) and the closest
    #: generation, both PNG without any metadata (a generation's own PNG names the model's folder).
    work_png: bytes | None = field(default=None, repr=False)
    generation_png: bytes | None = field(default=None, repr=False)

    @property
    def reproduced(self) -> bool:
        return bool(self.near_copy_seeds)

    def in_words(self) -> str:
        """``Morning Cup.png was reproduced by 'a cup of coffee', seeds 0-7, tiled l2 0.03 (near copy)``."""
        if not self.reproduced:
            if self.best_tiled_l2 is None:
                return f"{self.file_name}: no generation came near it"
            return (f"{self.file_name}: no near copy (closest tiled l2 {self.best_tiled_l2:.2f}, by "
                    f"'{self.best_prompt}'; a near copy is {EXTRACTION_THRESHOLD} or less)")
        parts = [f"'{p}', seeds {seed_ranges(s)}" for p, s in self.near_copy_seeds.items()]
        return (f"{self.file_name} was reproduced by {'; '.join(parts)}, tiled l2 {self.best_tiled_l2:.2f}"
                f" (near copy)")


def seed_ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``0-3, 7``."""
    out, run = [], []
    for s in sorted(set(seeds)):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


@dataclass
class CheckResult:
    """The whole check: one :class:`WorkResult` per work, what was generated, and the words the model did not
    know."""

    name: str
    works: list[WorkResult]
    prompts: list[str]
    generations: int = 0
    unknown_words: list[str] = field(default_factory=list)
    name_unknown: bool = False
    cancelled: bool = False
    model: str = ""  # the model's name in words ("the demo model", a folder's name), never its path
    images_per_prompt: int = 0
    checked_at: str = ""

    @property
    def reproduced(self) -> list[WorkResult]:
        return [w for w in self.works if w.reproduced]

    def name_warning(self) -> str:
        """The warning when the model cannot read the name at all, else ""."""
        if not self.name_unknown:
            return ""
        return (f"the model cannot represent the name '{self.name}' at all: its tokenizer knows none of its"
                " words, so prompts with the name test nothing about it")

    def headline(self, words: bool = True) -> str:
        """How many works came out as a near copy, of how many generations and prompts, and (with ``words``) the
        words the model did not know."""
        found = self.reproduced
        if found:
            line = (f"{len(found)} of your {len(self.works)} works came out as a near copy in"
                    f" {self.generations} generations of {len(self.prompts)} prompts")
        else:
            line = (f"none of your {len(self.works)} works came out as a near copy in {self.generations}"
                    f" generations of {len(self.prompts)} prompts")
        if self.unknown_words and words:
            line += f"; the model did not know the words: {', '.join(self.unknown_words)}"
        return line

    def unknown_words_note(self) -> str:
        """The words the model did not know and what that means for the prompts holding them, or ""."""
        if not self.unknown_words:
            return ""
        return (f"the model did not know the words: {', '.join(self.unknown_words)} (a prompt holding one tests only"
                " its other words)")

    def summary(self) -> str:
        """One paragraph in plain words."""
        lines = [self.name_warning()] if self.name_unknown else []
        lines += [w.in_words() for w in self.reproduced]
        lines.append(self.headline())
        if self.cancelled:
            lines.append(CANCELLED_WORDS)
        return "\n".join(lines)


def build_reference(folder: str | os.PathLike, out: str | os.PathLike, *, cancel: threading.Event | None = None,
                    ) -> Iterator[Progress]:
    """Index the artist's folder as a reference collection at ``out``, yielding each progress event (its
    ``newly_skipped`` names the files that could not be read). Cancelled: the half-built folder is removed."""
    from inspector.training_index.ingest import IndexBuilder

    out = Path(out)
    fresh = not out.exists() or not any(out.iterdir())  # never remove an index that was there before
    builder = IndexBuilder(folder, out, role="reference", workers=1)
    events = builder.run()
    finished = False
    try:
        for event in events:
            yield event
            if cancel is not None and cancel.is_set():
                return
        finished = True
    finally:
        # Cancelled, closed by the caller (a window's worker on Cancel) or failed: nothing half-built stays.
        events.close()
        if not finished and fresh:
            shutil.rmtree(out, ignore_errors=True)


def works_in(index_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """(source, title) of every work in a reference index, in the index's order."""
    import sqlite3

    from inspector.fileio import sqlite_uri

    conn = sqlite3.connect(sqlite_uri(Path(index_dir) / "index.db", mode="ro"), uri=True)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
        source_column = "caption_source" if "caption_source" in columns else "NULL"
        rows = conn.execute(f"SELECT source, caption, {source_column} FROM items ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(source, title_from(source, caption or "", how)) for source, caption, how in rows]


def work_thumbnails(index_dir: str | os.PathLike) -> dict[str, bytes]:
    """source -> the PNG bytes of each work's display thumbnail in a reference index (longest side 128 px)."""
    import sqlite3

    from inspector.fileio import sqlite_uri

    folder = Path(index_dir)
    conn = sqlite3.connect(sqlite_uri(folder / "index.db", mode="ro"), uri=True)
    try:
        rows = conn.execute("SELECT source, thumbnail FROM items ORDER BY id").fetchall()
    finally:
        conn.close()
    out = {}
    for source, rel in rows:
        try:
            with Image.open(folder / rel) as im:
                out[source] = _png(np.asarray(im.convert("RGB")))
        except OSError:
            continue  # a thumbnail removed from the folder: the work is shown without a picture
    return out


def model_words(model: str) -> str:
    """The model in words for a page that may leave the machine: "the demo model" or the folder's name only."""
    from inspector.resources import DEMO

    if model == DEMO:
        return "the demo model"
    return PurePath(model).name or str(model)


def check_work(model: str, index_dir: str | os.PathLike, name: str, *, titles: dict[str, str] | None = None,
               own_prompts: Sequence[str] = (), n: int = 8, seed: int = 0, steps: int | None = None,
               patterns: Sequence[str] = PROMPT_PATTERNS, cancel: threading.Event | None = None, progress: Callable[[Progress], None] | None = None,
               ) -> CheckResult:
    """Run every prompt against the artist's reference index and say what came out, per work.

    ``titles`` maps a work's source (as the index names it) to its title (default: :func:`works_in`).
    ``patterns`` are the prompt patterns tried per title and for the name (default :data:`PROMPT_PATTERNS`;
    fewer patterns, fewer generations: prompts x ``n`` images in all).
    ``progress`` gets one :class:`Progress` over the whole batch (images done of prompts x n).
    """
    from inspector.vocabulary import check_model_prompt

    sources = dict(works_in(index_dir))
    if titles:
        sources.update({s: t for s, t in titles.items() if s in sources})
    works = {s: WorkResult(PurePath(s).name, t) for s, t in sources.items()}
    for source, png in work_thumbnails(index_dir).items():
        if source in works:
            works[source].work_png = png
    prompts = build_prompts(list(dict.fromkeys(sources.values())), name, own_prompts, patterns)
    result = CheckResult(name, list(works.values()), prompts, model=model_words(model), images_per_prompt=n,
                         checked_at=utc_now())
    unknown: list[str] = []
    for prompt in prompts:
        check = check_model_prompt(model, prompt)
        if check is not None:
            unknown += [w for w in check.unknown_words if w not in unknown]
    if name.strip():
        name_check = check_model_prompt(model, name)
        result.name_unknown = bool(name_check and name_check.words
                                   and all(w.unknown for w in name_check.words))
    result.unknown_words = unknown
    total = len(prompts) * n
    for k, prompt in enumerate(prompts):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        request = InspectRequest(prompt=prompt, n=n, seed=seed, steps=steps, wen=False)
        for item in inspect_prompt(model, str(index_dir), request, cancel=cancel):
            if isinstance(item, PromptSummary):
                result.cancelled = result.cancelled or item.cancelled
                continue
            _take(works, prompt, item)
            result.generations += 1
            if progress is not None:
                done = k * n + item.position + 1
                progress(Progress("generating", done=done, total=total, fraction=done / total,
                                  message=f"'{prompt}': {item.position + 1} of {n}"))
    return result


def _take(works: dict[str, WorkResult], prompt: str, item: Inspected) -> None:
    for nb in item.neighbours:
        work = works.get(nb.source)
        if work is None or nb.tiled_l2 is None:
            continue
        if work.best_tiled_l2 is None or nb.tiled_l2 < work.best_tiled_l2:
            work.best_tiled_l2, work.best_prompt, work.best_seed = float(nb.tiled_l2), prompt, item.seed
            work.generation_png = _png(item.image)
        if nb.tiled_l2 <= EXTRACTION_THRESHOLD:
            work.near_copy_seeds.setdefault(prompt, []).append(item.seed)


def _png(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> bytes:
    """``image`` (H x W x 3 uint8) as a PNG of at most ``side`` px a side, with no text chunks."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def as_page(result: CheckResult) -> dict[str, Any]:
    """The result as plain data for a one-page export: file names, words and pictures (PNG bytes without
    metadata), never a local path. Works reproduced first, then the others from the closest."""
    order = sorted(result.works, key=lambda w: (not w.reproduced, w.best_tiled_l2 is None, w.best_tiled_l2 or 0))
    return {"name": result.name, "summary": result.summary(), "headline": result.headline(words=False),
            "unknown_words_note": result.unknown_words_note(), "name_warning": result.name_warning(),
            "prompts": list(result.prompts),
            "generations": result.generations, "model": result.model,
            "images_per_prompt": result.images_per_prompt, "checked_at": result.checked_at,
            "name_unknown": result.name_unknown, "unknown_words": list(result.unknown_words),
            "cancelled": result.cancelled, "cancelled_words": CANCELLED_WORDS if result.cancelled else "",
            "threshold": EXTRACTION_THRESHOLD,
            "works": [{"file_name": w.file_name, "title": w.title, "words": w.in_words(),
                       "reproduced": w.reproduced, "best_tiled_l2": w.best_tiled_l2, "best_prompt": w.best_prompt,
                       "best_seed": w.best_seed, "work_png": w.work_png, "generation_png": w.generation_png}
                      for w in order]}


__all__ = ["PROMPT_PATTERNS", "CheckResult", "WorkResult", "as_page", "build_prompts", "build_reference",
           "check_work", "model_words", "pattern_problem", "seed_ranges", "title_from", "work_thumbnails", "works_in"]
