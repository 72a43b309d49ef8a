"""Sweep many prompts headlessly (Carlini et al.'s generate-and-filter), keeping the candidates worth a look.

For each distinct prompt: N generations, each one's nearest training images, the largest near-identical
clique and the Wen score; the candidates become unlabeled findings in the casebook. Resumable: after Ctrl+C or
a kill, ``resume=True`` skips prompts already finished and never records a finding twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import UserError
from inspector.session import Inspected, InspectRequest, PromptSummary, finding_from, inspect_prompt

#: At most this many findings per prompt (the closest candidates first).
MAX_CANDIDATES = 16


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Distinct prompts of a text file, one a line, in order: blank lines skipped, repeats scanned once.

    Long prompts are kept whole (the tokenizer truncates what the model sees; the casebook records all).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"prompt file not found: {path}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: save it as UTF-8, one prompt per line") from None
    seen: dict[str, None] = {}
    for line in text.splitlines():
        prompt = " ".join(line.split())
        if prompt and prompt not in seen:
            seen[prompt] = None
    if not seen:
        raise UserError(f"{path} has no prompts: write one prompt per line")
    return list(seen)


def candidates(items: list[Inspected], summary: PromptSummary, limit: int = MAX_CANDIDATES) -> list[Inspected]:
    """The generations worth a human look: the clique's medoid (the paper's extraction candidate), then every
    generation suggested memorized or likeness, closest first; at most ``limit``."""
    chosen: list[Inspected] = []
    if summary.clique and summary.clique.medoid is not None:
        chosen.append(items[summary.clique.medoid])
    suspicious = sorted((i for i in items if i.suggestion.verdict != "novel"),
                        key=lambda i: i.nearest_tiled_l2 if i.nearest_tiled_l2 is not None else 9.0)
    for item in suspicious:
        if item not in chosen:
            chosen.append(item)
    return chosen[:limit]


@dataclass
class ScanState:
    """Which prompts are finished, kept beside the casebook so a scan can resume."""

    path: Path
    done: dict[str, dict[str, Any]]

    @classmethod
    def for_scan(cls, casebook: str | os.PathLike, prompts_file: str | os.PathLike, settings: dict) -> ScanState:
        key = hashlib.sha256(json.dumps({"file": str(Path(prompts_file).resolve()), **settings},
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = Path(str(casebook) + f".scan-{key}.json")
        done = {}
        if path.exists():
            try:
                done = json.loads(path.read_text(encoding="utf-8"))["done"]
            except (OSError, ValueError, KeyError):
                raise UserError(f"the scan state {path} is damaged: delete it to start the scan again") from None
        return cls(path, done)

    def mark(self, prompt: str, result: dict[str, Any]) -> None:
        self.done[prompt] = result
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".scan-", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"done": self.done}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def scan(
    prompts: list[str],
    casebook_path: str | os.PathLike,
    *,
    model: str = "demo",
    index: str = "demo",
    n: int = 500,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    resume: bool = False,
    prompts_file: str | os.PathLike = "",
    cancel: threading.Event | None = None,
    progress: Callable[[dict], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Scan each prompt; yield one result dict per distinct prompt (also for prompts skipped by ``resume``)."""
    from inspector.casebook import Casebook

    settings = {"model": model, "index": index, "n": n, "seed": seed, "steps": steps, "guidance": guidance}
    state = ScanState.for_scan(casebook_path, prompts_file, settings)
    if state.done and not resume:
        raise UserError(f"a scan of these prompts was started before ({len(state.done)} done): add --resume to "
                        f"continue it, or delete {state.path} to start again")
    report = progress or (lambda _i: None)
    for k, prompt in enumerate(prompts):
        if cancel is not None and cancel.is_set():
            return
        if prompt in state.done:
            yield {**state.done[prompt], "resumed": True}
            continue
        report({"stage": "prompt", "prompt": prompt, "done": k, "total": len(prompts)})
        request = InspectRequest(prompt=prompt, n=n, seed=seed, steps=steps, guidance=guidance)
        items: list[Inspected] = []
        summary: PromptSummary | None = None
        for value in inspect_prompt(model, index, request, cancel=cancel,
                                    progress=lambda info, k=k, p=prompt: report({**info, "prompt": p, "prompt_index": k,
                                                                                 "total": len(prompts)})):
            if isinstance(value, Inspected):
                items.append(value)
            else:
                summary = value
        if summary is None or summary.cancelled or (cancel is not None and cancel.is_set()):
            return  # an unfinished prompt is scanned again on resume
        ids = []
        with Casebook.open(casebook_path) as book:
            for item in candidates(items, summary):
                finding = finding_from(item, summary)
                digest = hashlib.sha256(finding.image_png).hexdigest()
                existing = book.findings(prompt=prompt, seed=item.seed, image_sha256=digest, limit=1)
                ids.append(existing[0].id if existing else book.record(finding))
        result = {**summary.as_dict(), "findings": ids}
        result.pop("wen_tokens", None)
        state.mark(prompt, result)
        yield result
