"""Sweep many prompts headlessly (Carlini et al.'s generate-and-filter), keeping the candidates worth a look.

For each distinct prompt: N generations, each one's nearest training images, the largest near-identical
clique and the Wen score; the candidates become unlabeled findings in the casebook.

A kill loses at most one image. Each generation is recorded on disk the moment it is made, in a scan folder
beside the casebook; ``resume=True`` makes only the seeds not yet recorded, brings the recorded ones back (their
PNGs, with neighbours found again in the index) and computes the clique once the prompt has all its images. The
casebook keeps only each prompt's candidates (at most :data:`MAX_CANDIDATES`), so a paper-scale scan of 500
images a prompt does not store 500 images a prompt there; the scan folder holds the images of the prompt in
progress only, and one small ``result.json`` per finished prompt::

    CASEBOOK.scan-KEY/                 KEY: the prompt file and the settings (model, index, n, seed, steps, ...)
      scan.json                        those settings, for a person reading the folder
      <sha256 of the prompt, 16 hex>/
        prompt.txt                     the prompt, for a person
        seed_00000003.png              a generation as made (PNG with its provenance chunks)
        seed_00000003.json             written after its PNG: its presence records the image
        result.json                    the prompt has finished: summary, finding ids, one line per generation;
                                       the prompt's PNG and JSON files are then deleted

Every file is written through a temporary file, fsync and a rename, so a kill leaves whole files only; a PNG
without its JSON (the kill fell between the two) is made again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import UserError
from inspector.fileio import write_atomic
from inspector.findings import NOVEL, SUGGESTIONS
from inspector.progress import SAMPLING, Progress, ProgressCallback, format_duration, no_progress
from inspector.prompt_files import load_prompt_file, read_prompts
from inspector.resources import DEMO
from inspector.session import (
    INDEXES,
    MODELS,
    Inspected,
    InspectRequest,
    PromptSummary,
    finding_from,
    inspect_generations,
    inspect_image,
    summarize_prompt,
)
from inspector.timestamps import utc_now

__all__ = ["MAX_CANDIDATES", "N_DEFAULT", "N_PRESETS", "ScanClock", "ScanState", "bring_back", "candidates",
           "complete_prompt", "finish_prompt_run", "format_duration", "load_prompt_file", "prompt_request",
           "prompt_run", "read_prompts", "run_facts", "scan", "scan_settings", "unfinished_result"]

#: At most this many findings per prompt (the closest candidates first).
MAX_CANDIDATES = 16
#: Generations per prompt by default: enough for a clique of 3 (10 of 500, scaled) on a laptop's CPU.
N_DEFAULT = 16
#: Named values of ``--n``: the paper's 500 generations per prompt (Carlini et al. 2023).
N_PRESETS = {"paper": 500}


def candidates(items: list[Inspected], summary: PromptSummary, limit: int = MAX_CANDIDATES) -> list[Inspected]:
    """The generations worth a human look: the clique's medoid (the paper's extraction candidate), then every
    generation suggested memorized or likeness, closest first; at most ``limit``."""
    chosen: list[Inspected] = []
    if summary.clique and summary.clique.medoid is not None:
        chosen.append(items[summary.clique.medoid])
    suspicious = sorted((i for i in items if i.suggestion.verdict != NOVEL),
                        key=lambda i: i.nearest_tiled_l2 if i.nearest_tiled_l2 is not None else 9.0)
    for item in suspicious:
        if item not in chosen:
            chosen.append(item)
    return chosen[:limit]


#: The stages of a scan's own events (the rest are one inspection's, :data:`inspector.session.STAGES`).
PLAN, ESTIMATE, PROMPT_DONE = "plan", "estimate", "prompt done"


@dataclass(frozen=True)
class ScanProgress(Progress):
    """A scan's progress event. ``stage``: :data:`PLAN` once at the start, :data:`ESTIMATE` once the first
    image's sampling speed is measured, one inspection's stages for the prompt in work, :data:`PROMPT_DONE`
    after each prompt. ``done`` / ``total`` count the images of the prompt in work (those an earlier run
    recorded included; for the plan, the images this run has to make); ``step`` / ``steps`` the denoising step
    of the image in work; ``fraction`` and ``eta_s`` are the whole scan's; ``message`` names the prompt
    ("prompt 3/40") or the plan ("40 prompts x 16 images")."""

    prompt: str = ""
    prompt_index: int | None = None  # 0-based, in the distinct prompts
    prompts: int = 0  # distinct prompts in the scan
    finished: int = 0  # prompts an earlier run finished (plan)
    recorded: int = 0  # images of unfinished prompts an earlier run recorded (plan)
    images_left: int = 0  # images this run has to make (as planned)
    prompts_left: int = 0  # prompts this run has to finish (as planned)
    seconds_per_step: float | None = None  # measured on the first image (estimate)
    result: dict[str, Any] | None = None  # the prompt's result (prompt done)


def _share(clock: ScanClock, in_image: float = 0.0) -> float | None:
    """The scan's share done: images made by this run (and ``in_image`` of the one in work) over those it has
    to make; None when it has none to make."""
    if clock.images_left <= 0:
        return None
    return min(1.0, (clock.images_made + in_image) / clock.images_left)


def scan_settings(*, model: str = DEMO, index: str = DEMO, n: int = N_DEFAULT, seed: int = 0,
                  steps: int | None = None, guidance: float | None = None) -> dict[str, Any]:
    """The settings that name a scan's state: a scan with other settings starts its own folder."""
    return {"model": model, "index": index, "n": n, "seed": seed, "steps": steps, "guidance": guidance}


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False, default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass
class ScanState:
    """A scan's work on disk, in a folder beside the casebook (see the module docstring for its layout)."""

    folder: Path
    settings: dict[str, Any]
    casebook: Path

    @classmethod
    def for_scan(cls, casebook: str | os.PathLike, prompts_file: str | os.PathLike,
                 settings: dict[str, Any]) -> ScanState:
        """The state of the scan of ``prompts_file`` with ``settings``, recorded beside ``casebook``."""
        key = hashlib.sha256(json.dumps({"file": str(Path(prompts_file).resolve()), **settings},
                                        sort_keys=True).encode()).hexdigest()[:16]
        return cls(Path(str(casebook) + f".scan-{key}"), dict(settings), Path(casebook))

    def started(self) -> bool:
        """Whether anything of this scan is on disk (a finished prompt or a recorded image)."""
        return self.folder.is_dir() and any(p.is_dir() for p in self.folder.iterdir())

    def prompt_folder(self, prompt: str) -> Path:
        return self.folder / hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]

    def result(self, prompt: str) -> dict[str, Any] | None:
        """The finished prompt's result, or None when it has not finished."""
        path = self.prompt_folder(prompt) / "result.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"the scan state {path} is damaged: delete that file to scan the prompt again") from None

    def recorded(self, prompt: str) -> dict[int, dict[str, Any]]:
        """The prompt's recorded generations, by seed: each one whose JSON and PNG are both on disk and agree.

        A PNG whose bytes no longer match its record is left out (so it is made again)."""
        records: dict[int, dict[str, Any]] = {}
        folder = self.prompt_folder(prompt)
        if not folder.is_dir():
            return records
        for path in sorted(folder.glob("seed_*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                png = path.with_suffix(".png").read_bytes()
            except (OSError, ValueError):
                continue
            if hashlib.sha256(png).hexdigest() == record.get("png_sha256"):
                records[int(record["seed"])] = record
        return records

    def record_generation(self, prompt: str, item: Inspected, attempt: str) -> dict[str, Any]:
        """Record one generation the moment it is made: its PNG, then its JSON (which marks it recorded).

        This is the one place a scan records a generation; the record holds what a run record needs (seed,
        PNG hash, suggested verdict, nearest distance, the attempt that made it)."""
        from inspector.generation.sampling import seed_filename

        folder = self.prompt_folder(prompt)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / "prompt.txt", prompt.encode("utf-8"))
            if not (self.folder / "scan.json").exists():
                write_atomic(self.folder / "scan.json", _json_bytes({"settings": self.settings,
                                                                      "created_at": utc_now()}))
        png_path = folder / seed_filename(item.seed)
        write_atomic(png_path, item.png)
        record = {
            "seed": item.seed,
            "position": item.position,
            "png_sha256": hashlib.sha256(item.png).hexdigest(),
            # The pixels' own hash (provenance.rgb_sha256): the same wherever the image was made, while the PNG's
            # text chunks name the machine's thread count.
            "pixels_sha256": item.provenance.get("pixels_sha256"),
            "attempt": attempt,
            "recorded_at": utc_now(),
            "suggested": item.suggestion.verdict,
            "nearest_tiled_l2": item.nearest_tiled_l2,
            "nearest": [{"item_id": nb.item_id, "source": nb.source, "tiled_l2": nb.tiled_l2}
                        for nb in item.neighbours],
        }
        write_atomic(png_path.with_suffix(".json"), _json_bytes(record))
        return record

    def png(self, prompt: str, seed: int) -> bytes:
        from inspector.generation.sampling import seed_filename

        return (self.prompt_folder(prompt) / seed_filename(seed)).read_bytes()

    def finish(self, prompt: str, result: dict[str, Any]) -> None:
        """Write the prompt's result, then delete its images: the candidates are in the casebook by now."""
        folder = self.prompt_folder(prompt)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "result.json", _json_bytes(result))
        self.tidy(prompt)

    def tidy(self, prompt: str) -> None:
        """Delete a finished prompt's images (also left-overs of a kill between its result and the deletion)."""
        for path in self.prompt_folder(prompt).glob("seed_*"):
            path.unlink(missing_ok=True)


def unfinished_result(prompt: str, n: int, generated: int) -> dict[str, Any]:
    """The entry of a prompt a stopped scan did not finish: no clique, no Wen score, no findings yet."""
    return {"prompt": prompt, "complete": False, "n": n, "generated": generated, "clique_size": None,
            "flagged": None, "wen_score": None, "findings": []}


@dataclass
class ScanClock:
    """The time a scan has left, from the sampling speed measured in this run.

    Before the first image is done, the estimate is (seconds a denoising step) x (steps an image) x (images
    left), the step time measured between the first image's step callbacks; once images are done, it is the
    measured time an image (its neighbours and record included) x images left, plus the measured time of a
    prompt's clique, Wen score and casebook write x prompts left. Seconds throughout.
    """

    images_left: int  # images this run has to make
    prompts_left: int  # prompts this run has to finish
    images_made: int = 0
    prompts_made: int = 0
    seconds_per_step: float | None = None
    steps: int | None = None
    _last_step: tuple[int, int, float] | None = None  # (image, step, time) of the latest step callback
    _step_intervals: list[float] = field(default_factory=list)
    _first_step_at: float | None = None
    _image_time: float = 0.0  # summed over images made: from the step before their first step to their record
    _image_start: float | None = None
    _start_is_step_one: bool = False  # the start was taken at the end of step 1: add that step's time
    _prompt_overhead: list[float] = field(default_factory=list)
    _last_image_done: float | None = None

    def on_step(self, image: int, step: int, steps: int, now: float) -> None:
        """A sampling step ``step`` of ``steps`` (1-based) of the image made ``image``-th in this run finished."""
        self.steps = steps
        if self._last_step and self._last_step[0] == image and step == self._last_step[1] + 1:
            self._step_intervals.append(now - self._last_step[2])
            self.seconds_per_step = sum(self._step_intervals) / len(self._step_intervals)
        elif steps == 1 and self._last_step and image == self._last_step[0] + 1:
            self.seconds_per_step = now - self._last_step[2]  # one step an image: time between images
        if step == 1 and self._image_start is None:
            self._start_is_step_one = self._last_image_done is None
            self._image_start = now if self._start_is_step_one else self._last_image_done
        if self._first_step_at is None:
            self._first_step_at = now
        self._last_step = (image, step, now)

    def on_image(self, now: float) -> None:
        """An image was made and recorded."""
        self.images_made += 1
        if self._image_start is not None:
            first_step = (self.seconds_per_step or 0.0) if self._start_is_step_one else 0.0
            self._image_time += now - self._image_start + first_step
        self._image_start = None
        self._last_image_done = now

    def on_prompt(self, now: float) -> None:
        """A prompt this run worked on finished (its clique, Wen score and findings are recorded)."""
        self.prompts_made += 1
        if self._last_image_done is not None:
            self._prompt_overhead.append(now - self._last_image_done)
        self._last_image_done = now

    @property
    def seconds_per_image(self) -> float | None:
        if self.images_made:
            return self._image_time / self.images_made
        if self.seconds_per_step is not None and self.steps:
            return self.seconds_per_step * self.steps
        return None

    def eta(self) -> float | None:
        """Seconds left for the whole scan, or None until a step time has been measured."""
        per_image = self.seconds_per_image
        if per_image is None:
            return None
        left = max(0, self.images_left - self.images_made) * per_image
        if self._prompt_overhead:
            left += max(0, self.prompts_left - self.prompts_made) * (sum(self._prompt_overhead)
                                                                     / len(self._prompt_overhead))
        return left


def scan(
    prompts: list[str],
    casebook_path: str | os.PathLike,
    *,
    model: str = DEMO,
    index: str = DEMO,
    n: int = N_DEFAULT,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    resume: bool = False,
    prompts_file: str | os.PathLike = "",
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[dict[str, Any]]:
    """Scan each prompt; yield one result dict per distinct prompt, in order.

    A finished prompt's dict has ``"complete": True`` and the summary (clique, Wen score, finding ids); one
    finished by an earlier run has ``"resumed": True`` as well. When ``cancel`` is set the scan stops within one
    denoising step (the image in progress is dropped, every recorded one is kept) and yields
    :func:`unfinished_result` for the prompt in progress and each one after it.

    ``progress`` receives :class:`ScanProgress` events: "plan" once at the start; the stages of
    :func:`inspector.session.inspect_prompt` for the prompt in work; "estimate" once, as soon as the first
    image's sampling speed is measured; "prompt done" with the prompt's result.
    """
    for prompt in prompts[:1]:  # the numbers, before a folder is made or a model loads
        InspectRequest(prompt=prompt, n=n, seed=seed, steps=steps, guidance=guidance).validate()
    settings = scan_settings(model=model, index=index, n=n, seed=seed, steps=steps, guidance=guidance)
    state = ScanState.for_scan(casebook_path, prompts_file, settings)
    if state.started() and not resume:
        raise UserError(f"a scan of these prompts with these settings was started before: add --resume to "
                        f"continue it, or delete {state.folder} to start again")
    report = progress or no_progress
    finished = {p: r for p in prompts if (r := state.result(p)) is not None}
    recorded = {p: len(state.recorded(p)) for p in prompts if p not in finished}
    images_left = sum(n - k for k in recorded.values())
    report(ScanProgress(PLAN, total=images_left, fraction=0.0 if images_left else 1.0,
                        message=f"{len(prompts)} prompts x {n} images", prompts=len(prompts),
                        finished=len(finished), recorded=sum(recorded.values()), images_left=images_left,
                        prompts_left=len(recorded)))
    clock = ScanClock(images_left=images_left, prompts_left=len(recorded))
    attempt = uuid.uuid4().hex[:12]
    estimated = False

    def forward(event: Progress, k: int, prompt: str) -> None:
        nonlocal estimated
        sampling = event.stage == SAMPLING and bool(event.step) and bool(event.steps)
        if sampling and event.done != event.total:
            clock.on_step(clock.images_made, event.step, event.steps, time.monotonic())
            if not estimated and clock.seconds_per_step is not None and (
                    event.step >= min(event.steps, 3) or event.steps == 1):
                estimated = True
                report(ScanProgress(ESTIMATE, steps=clock.steps, fraction=_share(clock), eta_s=clock.eta(),
                                    prompts=len(prompts), images_left=clock.images_left,
                                    prompts_left=clock.prompts_left, seconds_per_step=clock.seconds_per_step))
        in_image = event.step / event.steps if sampling and event.done != event.total else 0.0
        report(ScanProgress(event.stage, done=event.done, total=event.total, step=event.step, steps=event.steps,
                            fraction=_share(clock, in_image), eta_s=clock.eta(),
                            message=f"prompt {k + 1}/{len(prompts)}", prompt=prompt, prompt_index=k,
                            prompts=len(prompts), images_left=clock.images_left, prompts_left=clock.prompts_left))

    for k, prompt in enumerate(prompts):
        if prompt in finished:
            state.tidy(prompt)
            yield {**finished[prompt], "resumed": True}
            continue
        if cancel is not None and cancel.is_set():
            yield from _unfinished(state, prompts[k:], n)
            return
        result = _scan_prompt(state, prompt, settings, attempt, clock, cancel,
                              lambda info, k=k, p=prompt: forward(info, k, p))
        if result is None:
            yield from _unfinished(state, prompts[k:], n)
            return
        clock.on_prompt(time.monotonic())
        report(ScanProgress(PROMPT_DONE, done=result["generated"], total=n, fraction=_share(clock),
                            eta_s=clock.eta(), message=f"prompt {k + 1}/{len(prompts)}", prompt=prompt,
                            prompt_index=k, prompts=len(prompts), images_left=clock.images_left,
                            prompts_left=clock.prompts_left, result=result))
        yield result


def _unfinished(state: ScanState, prompts: list[str], n: int) -> Iterator[dict[str, Any]]:
    for prompt in prompts:
        done = state.result(prompt)
        yield {**done, "resumed": True} if done else unfinished_result(prompt, n, len(state.recorded(prompt)))


def _scan_prompt(state: ScanState, prompt: str, settings: dict[str, Any], attempt: str, clock: ScanClock,
                 cancel: threading.Event | None, progress: ProgressCallback) -> dict[str, Any] | None:
    """Make the prompt's missing generations, recording each; then its summary and candidates. None when the
    scan was stopped before the prompt finished."""
    model, index = settings["model"], settings["index"]
    request = prompt_request(settings, prompt)
    seeds = [request.seed + i for i in range(request.n)]
    have = state.recorded(prompt)
    missing = [s for s in seeds if s not in have]
    items: dict[int, Inspected] = {}
    records: dict[int, dict[str, Any]] = dict(have)
    run_id = prompt_run(state, prompt, request, progress)
    if missing:
        def forward(event: Progress) -> None:  # counts of the whole prompt, not only of this run's seeds
            progress(dataclasses.replace(event, done=len(have) + event.done, total=request.n))

        for item in inspect_generations(model, index, request, seeds=missing, cancel=cancel, progress=forward):
            records[item.seed] = state.record_generation(prompt, item, attempt)
            items[item.seed] = item
            clock.on_image(time.monotonic())
        if len(items) < len(missing):
            finish_prompt_run(state, run_id, None, None, cancelled=len(have) + len(items))
            return None  # stopped: what was recorded stays for --resume
    for s in have:  # made by an earlier run: the same image, its neighbours found again
        items[s] = bring_back(index, request, s, state.png(prompt, s))
    ordered = [items[s] for s in seeds]
    summary = summarize_prompt(model, request, ordered, progress=progress, index_source=index)
    return complete_prompt(state, ordered, records, summary, run_id, made_now=len(missing), brought_back=len(have))


def prompt_request(settings: dict[str, Any], prompt: str) -> InspectRequest:
    """The inspection of ``prompt`` that a scan with ``settings`` (:func:`scan_settings`) makes."""
    return InspectRequest(prompt=prompt, n=settings["n"], seed=settings["seed"], steps=settings["steps"],
                          guidance=settings["guidance"])


def complete_prompt(state: ScanState, ordered: list[Inspected], records: dict[int, dict[str, Any]],
                    summary: PromptSummary, run_id: int, *, made_now: int, brought_back: int) -> dict[str, Any]:
    """Finish a prompt whose generations (``ordered``, in position order, each recorded: ``records`` by seed)
    and summary are made, wherever they were made (here, or on a Ray worker): its candidates into the casebook,
    its run finished, its ``result.json`` written and its images dropped. Returns the prompt's result."""
    ids = record_candidates(state, ordered, summary, run_id=run_id)
    finish_prompt_run(state, run_id, ordered, summary)
    summary.run_id = run_id
    by_seed = dict(ids)
    result = {**summary.as_dict(), "complete": True, "generated": len(ordered),
              "findings": [fid for _s, fid in ids],
              "made_now": made_now, "brought_back": brought_back,
              "suggested": {v: sum(1 for i in ordered if i.suggestion.verdict == v)
                            for v in SUGGESTIONS},
              "generations": [{**records[i.seed], "in_clique": i.in_clique, "finding": by_seed.get(i.seed)}
                              for i in ordered],
              "finished_at": utc_now()}
    result.pop("wen_tokens", None)
    result.pop("cancelled", None)
    state.finish(summary.prompt, result)
    return result


def record_candidates(state: ScanState, items: list[Inspected], summary: PromptSummary,
                      run_id: int | None = None) -> list[tuple[int, int]]:
    """Put the prompt's candidates in the casebook, linked to the prompt's run (once: a candidate already there
    keeps its finding, the generation key finding the same generation made by anyone); return (seed, finding id)
    pairs. The one place a scan writes findings to the casebook."""
    from inspector.casebook import Casebook

    pairs = []
    with Casebook.open(state.casebook) as book:
        for item in candidates(items, summary):
            finding = finding_from(item, summary)
            digest = hashlib.sha256(finding.image_png).hexdigest()
            existing = book.findings(prompt=summary.prompt, seed=item.seed, image_sha256=digest, limit=1)
            if existing:
                if run_id is not None:
                    book.link_run(run_id, existing[0].id)
                pairs.append((item.seed, existing[0].id))
            else:
                pairs.append((item.seed, book.record(finding, run_id=run_id)))
    return pairs


def prompt_run(state: ScanState, prompt: str, request: InspectRequest, progress: ProgressCallback,
               facts: dict[str, Any] | None = None) -> int:
    """The prompt's run in the casebook: the one a killed scan left unfinished (same prompt, same scan), or a
    new one. A scan keeps one run per prompt, its candidates as findings, never its 500 images. ``facts``
    (:func:`run_facts`): the model and index as loaded elsewhere (a Ray worker), so this process loads neither."""
    from inspector.casebook import Casebook
    from inspector.runs import start_run_for

    with Casebook.open(state.casebook) as book:
        for run in book.runs(kind="scan", prompt=prompt, finished=False, descending=True):
            if run.settings.get("scan") == state.folder.name:
                return run.id
        if facts is not None:
            return book.start_run(kind="scan", prompt=request.prompt, negative_prompt=request.negative_prompt,
                                  n_requested=request.n, settings={**facts["settings"], "scan": state.folder.name},
                                  model_id=facts["model_id"], model_sha256=facts["model_sha256"],
                                  index=facts["index"])
        return start_run_for(book, "scan", state.settings["model"], state.settings["index"], request,
                             extra_settings={"scan": state.folder.name}, progress=progress)


def run_facts(model_source: str, index_source: str | None, request: InspectRequest) -> dict[str, Any]:
    """What a run names of its model and index (``runs.start_run_for``'s fields: the settings with the model's
    defaults filled in, the model's source and weights sha256, the index's identity), from the model and index
    loaded in this process; a Ray worker sends them to the driver, which records the run."""
    from inspector.runs import request_settings

    model = MODELS.get(model_source)
    index = INDEXES.get(index_source).identity() if index_source is not None else None
    return {"settings": request_settings(request, model), "model_id": model.identity.source,
            "model_sha256": model.identity.sha256, "index": index}


def finish_prompt_run(state: ScanState, run_id: int, items: list[Inspected] | None,
                      summary: PromptSummary | None, cancelled: int | None = None) -> None:
    """Finish the prompt's run: with its summary, or (``cancelled``: how many images were made) stopped."""
    from inspector.casebook import Casebook
    from inspector.runs import finish_fields

    with Casebook.open(state.casebook) as book:
        if cancelled is not None:
            book.finish_run(run_id, n_finished=cancelled, cancelled=True)
        else:
            book.finish_run(run_id, **finish_fields(items or [], summary))


def bring_back(index_source: str, request: InspectRequest, seed: int, png: bytes) -> Inspected:
    """A generation recorded by an earlier run (its PNG), inspected again: the same image, its neighbours found
    again in the index."""
    return inspect_image(index_source, request, seed - request.seed, seed, _decode(png), png, _provenance(png))


def _decode(png: bytes):
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _provenance(png: bytes) -> dict[str, Any]:
    from inspector.provenance import read_provenance

    return read_provenance(png)
