"""The one-step prefilter: Wen et al.'s score for every prompt first, generate-and-filter only for the highest.

Carlini et al.'s attack makes N generations of S denoising steps for each prompt (500 x 50 in the paper) and
looks for near-identical cliques among them. Wen et al. (ICLR 2024) showed that a memorized prompt already
steers the model hard at the first denoising step: d = ||eps(x_T, prompt) - eps(x_T, "")||_2, averaged over a
few seeds, separates memorized prompts from others. Scoring a prompt that way costs ``seeds x first_steps``
denoising evaluations (4 x 1 by default) instead of ``N x S`` (25,000 in the paper), so a scan can score every
prompt of a 350,000-caption file and run the full generate-and-filter only on the top K (``--prefilter-top``)
or on those scoring at least a threshold (``--prefilter-threshold``).

Every score is kept, whatever it was, by the one process that records (the driver of a Ray scan):

- in the casebook, as one finished run per prompt (kind ``scan``, no generations requested, ``wen_score`` the
  prefilter's score, its settings naming the scan folder and ``"prefilter": {"seeds", "first_steps"}``), so a
  prompt the prefilter set aside is on the record with its score, like any other inspection;
- in the scan folder (:class:`inspector.scan.ScanState`), ``prefilter-<first_steps>step-<seeds>seed.jsonl``: one
  JSON object a line (prompt, score, per-seed scores, seconds, the run's id), appended and flushed to the disk
  after the casebook has the run. A line cut short by a kill is ignored; a prompt whose run reached the casebook
  but whose line did not is taken back from the casebook (its run), never scored or recorded twice.

A resumed scan scores only the prompts with no score yet; another K or threshold reuses every score.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from inspector.errors import UserError
from inspector.progress import Progress, ProgressCallback, no_progress
from inspector.scan import ScanState, run_facts
from inspector.session import MODELS, InspectRequest

#: Seeds averaged per prompt by default (Wen et al. score one to four generations; four cost one batch).
PREFILTER_SEEDS = 4
#: Denoising steps from the start of the model's schedule by default: the first one is enough (Wen et al.).
PREFILTER_STEPS = 1
#: Prompts scored per call on a worker: enough to hide a call's overhead, few enough to lose little to a kill.
PREFILTER_CHUNK = 8
#: The stage of the prefilter's progress events (``done`` / ``total``: prompts scored).
PREFILTERING = "prefilter"


def prefilter_progress(done: int, total: int, rate: float | None, extra: str = "") -> Progress:
    """The prefilter's event: ``done`` of ``total`` prompts scored, ``rate`` prompts a second (None until
    measured), the time left from it; ``extra`` more words (the workers alive, on Ray)."""
    eta = (total - done) / rate if rate else None
    words = ", ".join(w for w in (f"{rate:.2f} prompts/s" if rate else "", extra) if w)
    return Progress(PREFILTERING, done=done, total=total, fraction=done / total if total else 1.0, eta_s=eta,
                    message=words)


@dataclass(frozen=True)
class PrefilterSettings:
    """How prompts are scored and which go on to the full scan.

    ``seeds``: seeds averaged per prompt (1-64), the scan's first seeds (``seed``, ``seed + 1``, ...);
    ``first_steps``: denoising steps scored from the start of the model's schedule of ``steps`` (>= 1);
    ``top``: at most this many prompts, highest scores first, go on to generate-and-filter;
    ``threshold``: only prompts scoring at least this go on (both: the top ``top`` of those).
    """

    seeds: int = PREFILTER_SEEDS
    first_steps: int = PREFILTER_STEPS
    top: int | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.seeds <= 64:
            raise UserError(f"--prefilter-seeds must be between 1 and 64, got {self.seeds}")
        if self.first_steps < 1:
            raise UserError(f"--prefilter-steps must be at least 1, got {self.first_steps}")
        if self.top is None and self.threshold is None:
            raise UserError("the prefilter needs --prefilter-top K or --prefilter-threshold X: which prompts go on")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise UserError(f"--prefilter-threshold must be a number, got {self.threshold}")
        if self.top is not None and self.top < 1:
            raise UserError(f"--prefilter-top must be at least 1, got {self.top}")

    def as_dict(self) -> dict[str, Any]:
        """What a run records of the prefilter (what the score is; K and the threshold only choose)."""
        return {"seeds": self.seeds, "first_steps": self.first_steps}


def prefilter_facts(model_source: str, *, seed: int, steps: int | None, guidance: float | None) -> dict[str, Any]:
    """What a prefilter run names (model, its weights, the settings), from the model loaded in this process."""
    return run_facts(model_source, None, InspectRequest(prompt="", n=0, seed=seed, steps=steps, guidance=guidance))


def score_prompt(model_source: str, prompt: str, settings: PrefilterSettings, *, seed: int, steps: int | None,
                 guidance: float | None) -> dict[str, Any]:
    """Wen et al.'s score of ``prompt`` over ``settings.first_steps`` denoising steps and ``settings.seeds``
    seeds (``seed`` on), on the model loaded in this process (a Ray worker's, or this one's).

    Returns ``{"prompt", "score" (>= 0, higher = more likely memorized), "per_seed", "steps_used", "seconds"}``.

    Raises
    ------
    UserError
        When the model has no Wen score (it needs one CLIP text encoder and classifier-free guidance).
    """
    from inspector.wen import WenUnsupported, wen_score

    model = MODELS.get(model_source)
    total = steps or model.default_steps
    if settings.first_steps > total:
        raise UserError(f"--prefilter-steps {settings.first_steps} is more than the {total} steps of a generation")
    started = time.perf_counter()
    try:
        with model.lock:
            result = wen_score(model.pipeline, prompt, seeds=[seed + i for i in range(settings.seeds)],
                               num_inference_steps=total, first_fraction=settings.first_steps / total,
                               guidance_scale=guidance)
    except WenUnsupported as exc:
        raise UserError(f"the prefilter scores prompts with Wen et al.'s score, and {exc}") from None
    return {"prompt": prompt, "score": result.score, "per_seed": result.per_seed, "steps_used": result.steps_used,
            "seconds": time.perf_counter() - started}


class Prefilter:
    """The prefilter scores of one scan, on disk and in the casebook; only one process records them.

    ``scores``: prompt -> its record (``score``, ``per_seed``, ``steps_used``, ``seconds``, ``run_id``).
    """

    def __init__(self, state: ScanState, settings: PrefilterSettings):
        self.state = state
        self.settings = settings
        self.path = state.folder / f"prefilter-{settings.first_steps}step-{settings.seeds}seed.jsonl"
        self.scores: dict[str, dict[str, Any]] = self._read()

    @classmethod
    def open(cls, state: ScanState, settings: PrefilterSettings, *, resume: bool) -> Prefilter:
        """The prefilter of the scan ``state``; refuses to start over a scan that was started (add ``resume``)."""
        prefilter = cls(state, settings)
        if not resume and (state.started() or prefilter.scores):
            raise UserError(f"a scan of these prompts with these settings was started before: add --resume to "
                            f"continue it, or delete {state.folder} to start again")
        if resume:
            prefilter._take_back_from_casebook()
        return prefilter

    def _read(self) -> dict[str, dict[str, Any]]:
        scores: dict[str, dict[str, Any]] = {}
        self._whole_lines = 0  # bytes of the file up to its last newline: what a kill left whole
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return scores
        except OSError as exc:
            raise UserError(f"cannot read the prefilter scores {self.path}: {exc.strerror or exc}") from None
        self._whole_lines = data.rfind(b"\n") + 1
        lines = data.split(b"\n")
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                scores[record["prompt"]] = record
            except (ValueError, KeyError, TypeError):
                if k < len(lines) - 1 and any(rest.strip() for rest in lines[k + 1:]):
                    raise UserError(f"the prefilter scores {self.path} are damaged at line {k + 1}: delete the "
                                    "file to score the prompts again") from None
                # the last line, cut short by a kill: that prompt is scored again (or taken back below)
        return scores

    def _is_ours(self, run: Any) -> bool:
        return (run.settings.get("scan") == self.state.folder.name
                and run.settings.get("prefilter") == self.settings.as_dict())

    def _take_back_from_casebook(self) -> None:
        """Prompts whose prefilter run is in the casebook but whose line is not (a kill between the two)."""
        from inspector.casebook import Casebook

        if not self.state.casebook.exists():
            return
        with Casebook.open(self.state.casebook) as book:
            found = [run for run in book.runs(kind="scan", finished=True)
                     if run.prompt not in self.scores and self._is_ours(run)]
        self._append([{"prompt": run.prompt, "score": run.wen_score, "per_seed": None, "steps_used": None,
                       "seconds": None, "run_id": run.id, "taken_back": True} for run in found])

    def missing(self, prompts: Iterable[str]) -> list[str]:
        """The prompts with no score yet, in order."""
        return [p for p in prompts if p not in self.scores]

    def record(self, records: list[dict[str, Any]], facts: dict[str, Any]) -> None:
        """Put scored prompts on the record: a finished run each in the casebook, then their lines on disk.

        ``facts``: :func:`prefilter_facts` of the process that scored them (model, weights, settings). A prompt
        already scored (a retried chunk) is not recorded again."""
        from inspector.casebook import Casebook

        fresh = [r for r in records if r["prompt"] not in self.scores]
        if not fresh:
            return
        settings = {**facts["settings"], "scan": self.state.folder.name, "prefilter": self.settings.as_dict()}
        with Casebook.open(self.state.casebook) as book:
            for record in fresh:
                run_id = book.start_run(kind="scan", prompt=record["prompt"], n_requested=0, settings=settings,
                                        model_id=facts["model_id"], model_sha256=facts["model_sha256"])
                book.finish_run(run_id, n_finished=0, wen_score=record["score"])
                record["run_id"] = run_id
        self._append(fresh)

    def _append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.state.folder.mkdir(parents=True, exist_ok=True)
        data = b"".join(json.dumps(r, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
                        for r in records)
        # Appended, not rewritten: one line a prompt keeps a 350,000-prompt file linear. A kill can cut the last
        # line only, which _read ignores (the casebook then has that prompt's run, taken back on resume) and the
        # first append drops, so that the next line starts on a line of its own.
        with open(self.path, "ab") as f:
            if f.tell() > self._whole_lines:
                f.truncate(self._whole_lines)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._whole_lines += len(data)
        for r in records:
            self.scores[r["prompt"]] = r

    def ranked(self, prompts: list[str]) -> dict[str, int]:
        """Prompt -> rank by score among ``prompts`` that have one (1 = highest; ties in file order)."""
        scored = [p for p in prompts if self.scores.get(p, {}).get("score") is not None]
        order = sorted(range(len(scored)), key=lambda k: (-self.scores[scored[k]]["score"], k))
        return {scored[k]: rank for rank, k in enumerate(order, start=1)}

    def selected(self, prompts: list[str]) -> list[str]:
        """The prompts that go on to generate-and-filter, highest score first: those scoring at least the
        threshold (when set), at most ``top`` of them (when set)."""
        ranks = self.ranked(prompts)
        chosen = sorted(ranks, key=ranks.__getitem__)
        if self.settings.threshold is not None:
            chosen = [p for p in chosen if self.scores[p]["score"] >= self.settings.threshold]
        if self.settings.top is not None:
            chosen = chosen[: self.settings.top]
        return chosen

    def row(self, prompt: str, ranks: dict[str, int], total: int) -> dict[str, Any]:
        """The prompt's prefilter facts for the scan's JSON rows."""
        record = self.scores.get(prompt) or {}
        return {"prefilter_score": record.get("score"), "prefilter_rank": ranks.get(prompt),
                "prefilter_of": total, "prefilter_run": record.get("run_id")}


def prefilter_locally(prefilter: Prefilter, prompts: list[str], *, model: str, seed: int, steps: int | None,
                      guidance: float | None, cancel: threading.Event | None = None,
                      progress: ProgressCallback | None = None) -> bool:
    """Score every prompt of ``prompts`` not scored yet, in this process, recording each chunk as it is done.

    ``progress`` receives :func:`prefilter_progress` events, one after each prompt. Returns False when
    ``cancel`` stopped it (what was scored is kept)."""
    report = progress or no_progress
    todo = prefilter.missing(prompts)
    total, done = len(prompts), len(prompts) - len(todo)
    report(prefilter_progress(done, total, None))
    if not todo:
        return True
    facts = prefilter_facts(model, seed=seed, steps=steps, guidance=guidance)
    started = time.monotonic()
    for k in range(0, len(todo), PREFILTER_CHUNK):
        chunk = []
        for prompt in todo[k:k + PREFILTER_CHUNK]:
            if cancel is not None and cancel.is_set():
                prefilter.record(chunk, facts)
                return False
            chunk.append(score_prompt(model, prompt, prefilter.settings, seed=seed, steps=steps, guidance=guidance))
            done += 1
            report(prefilter_progress(done, total, (k + len(chunk)) / max(time.monotonic() - started, 1e-9)))
        prefilter.record(chunk, facts)
    return True
