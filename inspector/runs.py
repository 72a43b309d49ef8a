"""Every inspection on the record: a run in the casebook, whatever it found.

A run is one inspection of one prompt (the window's Generate, the ``inspect`` command, or one prompt of a scan):
the model and index it used, what was asked for, how many generations finished, the counts of suggested
verdicts, the clique, the Wen score and the words the model cannot read. "I checked my name and found no near
copies" is then a fact in the casebook, not a memory.

:func:`recorded_inspection` runs :func:`inspector.session.inspect_prompt` and keeps every generation as an
(unlabeled) finding the moment it is made, linked to the run, so that counts can never be cherry-picked: the
window and ``inspect`` use it. A scan records its run per prompt with :func:`start_run_for` and
:func:`finish_fields`, and keeps only its candidates as findings. No Qt here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from inspector.errors import UserError
from inspector.findings import LIKENESS_SUGGESTED, MEMORIZED, NOVEL
from inspector.progress import Progress, ProgressCallback, no_progress
from inspector.session import (
    INDEXES,
    LOADING_INDEX,
    LOADING_MODEL,
    MODELS,
    Inspected,
    InspectRequest,
    PromptSummary,
    finding_from,
    inspect_prompt,
)

#: The stage of the event that says a run is on the record.
RECORDING = "recording the run"


@dataclass(frozen=True)
class RunStarted(Progress):
    """The progress event sent once an inspection's run is on the record: ``run_id`` is its casebook id."""

    run_id: int | None = None


#: The provenance fields a finished run adds to its settings: what sampling actually used.
SAMPLED_SETTINGS = ("steps", "guidance", "batch_size", "batch_invariant", "width", "height")


def request_settings(request: InspectRequest, model: Any = None) -> dict[str, Any]:
    """What was asked for, as a run's settings: n, first seed, steps, guidance, scheduler, batch size (the
    model's defaults filled in where the request left them to it), and the inspection's own options."""
    steps = request.steps if request.steps is not None else getattr(model, "default_steps", None)
    guidance = request.guidance if request.guidance is not None else getattr(model, "default_guidance", None)
    scheduler = getattr(getattr(model, "pipeline", None), "scheduler", None)
    return {
        "n": request.n, "first_seed": request.seed, "steps": steps, "guidance": guidance,
        "scheduler": type(scheduler).__name__ if scheduler is not None else None,
        "batch_size": request.batch_size, "k": request.k, "clique_threshold": request.clique_threshold,
        "wen": request.wen, "device": getattr(model, "device", None), "dtype": getattr(model, "dtype", None),
    }


def start_run_for(book: Any, kind: str, model_source: str, index_source: str, request: InspectRequest, *,
                  reviewer: str = "", extra_settings: dict[str, Any] | None = None,
                  progress: ProgressCallback | None = None) -> int:
    """Start the casebook run of an inspection (the model and index loaded now, through the session's caches,
    so that the run names them exactly; ``progress`` hears the loading stages); return its id."""
    report = progress or no_progress
    report(Progress(LOADING_MODEL))
    model = MODELS.get(model_source)
    report(Progress(LOADING_INDEX))
    index = INDEXES.get(index_source, progress=report)
    identity = model.identity
    return book.start_run(
        kind=kind, prompt=request.prompt, negative_prompt=request.negative_prompt, n_requested=request.n,
        settings={**request_settings(request, model), **(extra_settings or {})},
        model_id=identity.source, model_sha256=identity.sha256, index=index.identity(), reviewer=reviewer)


def finish_fields(items: list[Inspected], summary: PromptSummary | None, *, cancelled: bool = False,
                  error: str = "") -> dict[str, Any]:
    """The keyword arguments of ``Casebook.finish_run`` for an inspection that made ``items`` (in position
    order) and, when it got that far, ``summary``."""
    verdicts = [i.suggestion.verdict for i in items]
    fields: dict[str, Any] = {
        "n_finished": len(items),
        "cancelled": bool(cancelled or (summary is not None and summary.cancelled)),
        "error": error,
        "near_copies": verdicts.count(MEMORIZED),
        "likeness": verdicts.count(LIKENESS_SUGGESTED),
        "novel": verdicts.count(NOVEL),
    }
    if items:
        prov = items[0].provenance or {}
        sampled = {k: prov[k] for k in SAMPLED_SETTINGS if k in prov}
        scheduler = prov.get("scheduler")
        if isinstance(scheduler, dict) and scheduler.get("class"):
            sampled["scheduler"] = scheduler["class"]
        fields["settings"] = sampled
    if summary is None:
        return fields
    clique = summary.clique
    if clique is not None:
        fields.update(clique_size=clique.size, clique_flagged=bool(clique.flagged), clique_min_size=clique.min_size,
                      clique_seeds=[items[k].seed for k in clique.members])
    fields["wen_score"] = summary.wen_score
    vocabulary = getattr(summary.words, "vocabulary", None)
    fields["unknown_words"] = list(vocabulary.unknown_words) if vocabulary is not None else []
    return fields


def error_words(exc: BaseException) -> str:
    """What went wrong, in one line, for a run's record."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def recorded_inspection(
    casebook_path: str | os.PathLike,
    model_source: str,
    index_source: str,
    request: InspectRequest,
    *,
    kind: str,
    reviewer: str = "",
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[Inspected | PromptSummary]:
    """:func:`inspector.session.inspect_prompt`, on the record: a run in the casebook at ``casebook_path``
    (created when missing), every generation an unlabeled finding linked to it as soon as it is made (its
    ``finding_id`` set before it is yielded; a generation already in the casebook keeps its finding, and its
    label and notes come with it), and the run finished with the summary's counts.

    A run stopped early (``cancel``, the consumer closing this generator, or an error) is finished with what
    was made, marked cancelled or with the error in words. ``progress`` also receives a :class:`RunStarted`
    event (with the run's id) once the run is on the record. The yielded summary carries ``run_id``.
    """
    from inspector.casebook import Casebook

    if not request.prompt.strip():
        raise UserError("type a prompt first")
    report = progress or no_progress
    with Casebook.open(casebook_path) as book:  # first: a casebook that cannot be written fails at once
        run_id = start_run_for(book, kind, model_source, index_source, request, reviewer=reviewer,
                               progress=report)
        report(RunStarted(RECORDING, message=f"run #{run_id}", run_id=run_id))
        items: list[Inspected] = []
        finished = False
        try:
            for value in inspect_prompt(model_source, index_source, request, cancel=cancel, progress=progress):
                if isinstance(value, Inspected):
                    finding = finding_from(value)
                    value.finding_id = book.record(finding, run_id=run_id)
                    if finding.run_id != run_id:  # made before (a scan, another window run): its label holds
                        known = book.summary(value.finding_id)
                        value.label, value.notes = known.label, known.notes
                    items.append(value)
                else:
                    value.run_id = run_id
                    book.finish_run(run_id, **finish_fields(items, value))
                    finished = True
                yield value
        except BaseException as exc:
            if not finished:
                stopped = isinstance(exc, (GeneratorExit, KeyboardInterrupt)) or bool(cancel and cancel.is_set())
                book.finish_run(run_id, **finish_fields(items, None, cancelled=stopped,
                                                        error="" if stopped else error_words(exc)))
            raise
