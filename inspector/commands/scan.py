"""``inspector scan PROMPTS``: Carlini et al.'s generate-and-filter over a research prompt file, resumable."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from inspector.commands import (
    add_timeout_option,
    casebook_file,
    nonempty,
    option_words,
    print_json,
    seed,
    whole_number,
)
from inspector.commands.progress import TerminalProgress
from inspector.errors import UserError
from inspector.limits import MAX_IMAGES
from inspector.progress import Progress, format_duration
from inspector.resources import DEMO

#: Exit status of a scan stopped by a signal: 128 + the signal's number, the shell's convention.
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _n_value(text: str) -> int:
    from inspector.scan import N_PRESETS

    if text.strip().lower() in N_PRESETS:
        return N_PRESETS[text.strip().lower()]
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--n takes a number of generations or 'paper' (500), got {text!r}") \
            from None
    if not 1 <= value <= MAX_IMAGES:
        raise argparse.ArgumentTypeError(f"--n must be between 1 and {MAX_IMAGES}, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan", help="sweep a research prompt file; candidates become unlabeled findings",
        description="For each distinct prompt of PROMPTS: N generations, their nearest training images, the "
                    "largest near-identical clique and the Wen score. Candidates go to the casebook as unlabeled "
                    "findings. PROMPTS: .txt (one a line), .csv/.tsv with a header, .jsonl or .json (strings, or "
                    "objects with a prompt/caption/text/TEXT key), .parquet (LAION metadata). Each image is "
                    "recorded as it is made: Ctrl+C (or a kill) loses at most the image in progress, and "
                    "--resume continues without making any recorded image again.")
    p.add_argument("prompts", metavar="PROMPTS")
    p.add_argument("--column", metavar="NAME",
                   help="the CSV/TSV/parquet column or JSON key holding the prompts (default: the first of "
                        "prompt, caption, text, TEXT)")
    p.add_argument("--n", type=_n_value, default=None, metavar="N|paper",
                   help="generations per prompt (default 16, a laptop's scale; 'paper': 500, as in Carlini et "
                        "al.)")
    p.add_argument("--model", default=DEMO, type=nonempty("a model: demo, a model folder or a .safetensors file"))
    p.add_argument("--index", default=DEMO, type=nonempty("an index: demo or an index folder"))
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--casebook", required=True, type=casebook_file,
                   help="where the candidates are recorded (a new casebook is made in an existing folder only)")
    add_timeout_option(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan of the same file")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one object per distinct prompt (also when stopped: unfinished "
                        "prompts have \"complete\": false)")
    cluster = p.add_argument_group("on a Ray cluster (pip install 'memorization-inspector[ray]'; docs/scale.md)")
    cluster.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS|auto|local",
                         help="spread the prompts over Ray workers: ADDRESS (host:6379, or ray://host:10001) or "
                              "auto joins a running cluster, local starts one on this machine; bare --ray: "
                              "RAY_ADDRESS, else a cluster started here with `ray start`, else a local one. The "
                              "model and index paths must be readable on every node")
    cluster.add_argument("--workers", type=whole_number(1, 100000, "--workers"), metavar="W",
                         help="Ray workers, each loading the model once (default: one per GPU; without GPUs, "
                              "one per 4 CPUs, each with cores / W threads)")
    prefilter = p.add_argument_group("the one-step prefilter (Wen et al.): score every prompt first, scan the top")
    prefilter.add_argument("--prefilter-top", type=whole_number(1, 10**9, "--prefilter-top"), metavar="K",
                           help="generate-and-filter only the K prompts with the highest prefilter score")
    prefilter.add_argument("--prefilter-threshold", type=float, metavar="X",
                           help="generate-and-filter only prompts whose prefilter score is at least X")
    prefilter.add_argument("--prefilter-seeds", type=whole_number(1, 64, "--prefilter-seeds"), default=None,
                           metavar="S", help="seeds the score is averaged over (default 4)")
    prefilter.add_argument("--prefilter-steps", type=whole_number(1, 1000, "--prefilter-steps"), default=None,
                           metavar="T", help="denoising steps scored from the start of the schedule (default 1)")
    p.set_defaults(func=run)


_WORD_KEYS = ("unknown_words", "truncated_words", "words_in_no_caption", "caption_matches", "prompt_equals_caption")


def _row(result: dict[str, Any]) -> dict[str, Any]:
    row = {key: result.get(key) for key in ("prompt", "clique_size", "flagged", "wen_score", "findings")}
    row["findings"] = row["findings"] or []
    row.update(complete=bool(result.get("complete")), generated=result.get("generated"), n=result.get("n"))
    # The prompt's words (inspector.prompt_words): words the model cannot read, captions matching the prompt.
    row["notes"] = result.get("notes") or []
    row.update({k: result[k] for k in _WORD_KEYS if k in result})
    return row


class _Progress:
    """The lines on stderr: the plan, the estimate before the first image, one line a prompt, and the one
    progress display: the prompt in work, or on Ray the whole cluster (images done, rate, time left, prompts
    done, workers alive), or the prefilter's prompts scored. A Ray worker lost is a line of its own."""

    def __init__(self, total: int, n: int, live: bool, shown: TerminalProgress | None = None):
        self.total, self.n, self.live = total, n, live
        self.shown = shown if shown is not None else TerminalProgress()

    def __call__(self, event: Progress) -> None:
        """The scan's :class:`inspector.scan.ScanProgress` events: the plan, the estimate and each finished
        prompt as lines of their own, the rest on the one progress display."""
        from inspector.scan import ESTIMATE, PLAN, PROMPT_DONE, ScanProgress
        from inspector.scan_ray import CONNECTED, WORKER_LOST

        if event.stage in (CONNECTED, WORKER_LOST):
            self.shown.note(event.message)
        elif not isinstance(event, ScanProgress) or event.stage not in (PLAN, ESTIMATE, PROMPT_DONE):
            self.shown(event)
        elif event.stage == PLAN:
            if event.finished or event.recorded:
                self.shown.note(f"resuming: {event.finished} of {event.prompts} prompts finished, {event.recorded} "
                                f"images of unfinished prompts already recorded; {event.images_left} images left "
                                "to make")
            else:
                self.shown.note(f"{event.message}: {event.images_left} images to make")
        elif event.stage == ESTIMATE:
            self.shown.note(f"estimate: {format_duration(event.eta_s or 0.0)} for the {event.images_left} images "
                            f"left ({event.seconds_per_step:.2f} s a step, {event.steps} steps an image, measured "
                            "on the first image), plus each prompt's clique and Wen score")
        else:
            result = event.result or {}
            flag = "FLAGGED" if result.get("flagged") else "not flagged"
            eta = f"; {format_duration(event.eta_s)} left" if event.eta_s else ""
            self.shown.note(f"{event.message} done: clique {result.get('clique_size')} of "
                            f"{result.get('generated')} ({flag}), {len(result.get('findings', []))} findings{eta}")


def run(args: argparse.Namespace) -> int:
    from inspector.scan import N_DEFAULT, ScanState, load_prompt_file, scan_settings
    from inspector.session import InspectRequest

    n = args.n if args.n is not None else N_DEFAULT
    source = load_prompt_file(args.prompts, args.column)
    prompts = source.prompts
    try:  # every number before a folder is made or the model loads
        InspectRequest(prompt=prompts[0], n=n, seed=args.seed, steps=args.steps, guidance=args.guidance).validate()
    except UserError as exc:
        raise UserError(option_words(str(exc))) from None
    from inspector.casebook import Casebook

    with Casebook.open(args.casebook) as book:  # one that cannot be written, or is busy, is named before any work
        book.check_writable()
    prefilter = _prefilter(args, n)
    print(f"scan: {source.describe()}", file=sys.stderr)
    cancel = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum, _frame) -> None:
        if cancel.is_set():  # a second signal: stop now (recorded images are whole files either way)
            raise KeyboardInterrupt
        stopped_by.append(signum)
        cancel.set()
        print("\nstopping after the current step (again to stop at once)…", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in _SIGNAL_EXIT}
    results: list[dict[str, Any]] = []
    shown = TerminalProgress()
    try:
        for result in _results(args, prompts, n, prefilter, cancel,
                               _Progress(len(prompts), n, sys.stderr.isatty(), shown)):
            results.append(result)
    except KeyboardInterrupt:
        stopped_by.append(stopped_by[0] if stopped_by else signal.SIGINT)
    finally:
        shown.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state = ScanState.for_scan(args.casebook, args.prompts, scan_settings(
        model=args.model, index=args.index, n=n, seed=args.seed, steps=args.steps, guidance=args.guidance))
    rows = _rows(prompts, n, results, prefilter, state)
    unfinished = [r for r in rows if not r["complete"]]
    if unfinished:
        first = unfinished[0]
        print(f"\nstopped: {len(rows) - len(unfinished)} of {len(rows)} prompts finished; “{first['prompt'][:60]}” "
              f"has {first['generated']} of {n} images recorded. Run the same command with --resume to "
              "continue.", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        _print_table(rows)
    return _SIGNAL_EXIT.get(stopped_by[0], 130) if unfinished and stopped_by else (1 if unfinished else 0)


def _prefilter(args: argparse.Namespace, n: int) -> Any:
    """The scan's :class:`inspector.prefilter.Prefilter`, or None without ``--prefilter-top/-threshold``; every
    option checked before any work (exit 2)."""
    from inspector.prefilter import PREFILTER_SEEDS, PREFILTER_STEPS, Prefilter, PrefilterSettings
    from inspector.scan import ScanState, scan_settings

    if args.workers is not None and args.ray is None:
        raise UserError("--workers needs --ray: the workers are Ray's")
    if args.prefilter_top is None and args.prefilter_threshold is None:
        if args.prefilter_seeds is not None or args.prefilter_steps is not None:
            raise UserError("--prefilter-seeds and --prefilter-steps need --prefilter-top K or --prefilter-threshold X")
        return None
    settings = PrefilterSettings(seeds=args.prefilter_seeds or PREFILTER_SEEDS,
                                 first_steps=args.prefilter_steps or PREFILTER_STEPS, top=args.prefilter_top,
                                 threshold=args.prefilter_threshold)
    state = ScanState.for_scan(args.casebook, args.prompts, scan_settings(
        model=args.model, index=args.index, n=n, seed=args.seed, steps=args.steps, guidance=args.guidance))
    return Prefilter.open(state, settings, resume=args.resume)


def _results(args: argparse.Namespace, prompts: list[str], n: int, prefilter: Any, cancel: threading.Event,
             progress: Any) -> Any:
    """The scan's results, one per prompt scanned: on Ray with ``--ray``, else here; after the prefilter, only
    the prompts it selected (none when it was stopped before every prompt had its score)."""
    from inspector.prefilter import prefilter_locally
    from inspector.scan import scan

    common = dict(model=args.model, index=args.index, n=n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                  resume=args.resume, prompts_file=args.prompts, cancel=cancel, progress=progress)
    if args.ray is not None:
        from inspector.scan_ray import ray_scan

        return ray_scan(prompts, args.casebook, address=args.ray or None, workers=args.workers, prefilter=prefilter,
                        **common)
    if prefilter is not None:
        if not prefilter_locally(prefilter, prompts, model=args.model, seed=args.seed, steps=args.steps,
                                 guidance=args.guidance, cancel=cancel, progress=progress):
            return iter(())
        prompts = prefilter.selected(prompts)
    return scan(prompts, args.casebook, **common)


def _rows(prompts: list[str], n: int, results: list[dict[str, Any]], prefilter: Any, state: Any) -> list[dict]:
    """One row per prompt of the file, in its order: its result, else set aside by the prefilter, else
    unfinished (with the images recorded so far)."""
    from inspector.scan import unfinished_result

    by_prompt = {r["prompt"]: r for r in results}
    scored = prefilter is not None and not prefilter.missing(prompts)
    selected = set(prefilter.selected(prompts)) if scored else set()
    ranks = prefilter.ranked(prompts) if prefilter is not None else {}
    rows = []
    for prompt in prompts:
        if prompt in by_prompt:
            row = _row(by_prompt[prompt])
        elif scored and prompt not in selected:  # complete: the prefilter's score is its answer
            row = _row({"prompt": prompt, "complete": True, "generated": 0, "n": n})
        else:
            row = _row(unfinished_result(prompt, n, len(state.recorded(prompt))))
        if prefilter is not None:
            row.update(prefilter.row(prompt, ranks, len(prompts)), selected=prompt in selected,
                       set_aside=scored and prompt not in selected)
        rows.append(row)
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    width = min(50, max(len(r["prompt"]) for r in rows))
    print(f"{'prompt':<{width}}  clique  flagged  wen     findings")
    for r in rows:
        score = f"  prefilter {r['prefilter_score']:.3g}, rank {r['prefilter_rank']} of {r['prefilter_of']}" \
            if r.get("prefilter_score") is not None else ""
        if r.get("set_aside"):
            print(f"{r['prompt'][:width]:<{width}}  set aside by the prefilter:{score[len('  prefilter'):]}")
            continue
        if not r["complete"]:
            print(f"{r['prompt'][:width]:<{width}}  unfinished: {r['generated']} of {r['n']} images recorded{score}")
            continue
        wen = f"{r['wen_score']:.3f}" if r["wen_score"] is not None else "-"
        print(f"{r['prompt'][:width]:<{width}}  {r['clique_size']:>6}  {'YES' if r['flagged'] else 'no':>7}  "
              f"{wen:<6}  {len(r['findings'])}{score}")
    for r in rows:
        for note in r["notes"]:
            print(f"note on “{r['prompt']}”: {note}")
