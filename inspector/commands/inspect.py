"""``inspector inspect PROMPT``: one prompt, N generations, each with its four nearest and a suggestion."""

from __future__ import annotations

import argparse

from inspector.commands import add_timeout_option, casebook_file, nonempty, option_words, print_json, seed
from inspector.commands.progress import TerminalProgress
from inspector.errors import UserError
from inspector.limits import MAX_IMAGES
from inspector.resources import DEMO
from inspector.roles import describe_index, origin_words, role_words


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="generate N images of a prompt and find each one's nearest indexed images",
                       description="Generate N images of PROMPT, find each one's four nearest images in the index "
                                   "(the training set, or a reference collection built with --role reference), "
                                   "suggest a verdict, and measure the prompt's clique and Wen score. The "
                                   "inspection is recorded as a run in the casebook (--casebook, else the one in "
                                   "the user data folder), every generation as an unlabeled finding.")
    p.add_argument("prompt", metavar="PROMPT")
    p.add_argument("--model", default=DEMO, type=nonempty("a model: demo, a model folder or a .safetensors file"),
                   help="demo (default), a local diffusers folder, or a .safetensors file")
    p.add_argument("--index", default=DEMO, type=nonempty("an index: demo or an index folder"),
                   help="demo (default) or an index folder (inspector index build, training or reference)")
    p.add_argument("--n", type=int, default=16, help="number of generations (default 16)")
    p.add_argument("--seed", type=seed, default=0, help="first seed (default 0)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--no-wen", action="store_true", help="skip the Wen score")
    p.add_argument("--casebook", type=casebook_file,
                   help="the casebook that records the run and every generation as an unlabeled finding (default: "
                        "casebook.db in the user data folder); a new one is made in an existing folder only")
    add_timeout_option(p)
    p.add_argument("--reviewer", default="", metavar="NAME", help="who ran the inspection (kept with the run)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def _generation_dict(item, finding_id) -> dict:
    return {
        "seed": item.seed,
        "suggested_verdict": item.suggestion.verdict,
        "reason": item.suggestion.reason,
        # signed distance to the extraction line (threshold - nearest tiled l2) and whether it is within 0.02
        "margin": item.suggestion.evidence.get("margin"),
        "borderline": item.suggestion.evidence.get("borderline"),
        "in_clique": item.in_clique,
        "finding_id": finding_id,
        "comparison_size": item.comparison_size,
        "neighbours": [{k: v for k, v in nb.as_dict().items() if k not in ("thumbnail_png", "pixels_png")}
                       for nb in item.neighbours],
    }


def run(args: argparse.Namespace) -> int:
    from inspector.casebook import Casebook, default_casebook_path
    from inspector.runs import recorded_inspection
    from inspector.session import Inspected, InspectRequest

    if not 1 <= args.n <= MAX_IMAGES:
        raise UserError(f"--n must be between 1 and {MAX_IMAGES}, got {args.n}")
    if not args.prompt.strip():
        raise UserError("the prompt is empty")
    request = InspectRequest(prompt=args.prompt, negative_prompt=args.negative, n=args.n, seed=args.seed,
                             steps=args.steps, guidance=args.guidance, wen=not args.no_wen)
    try:
        request.validate()  # every number before the casebook, the model or the index is touched
    except UserError as exc:
        raise UserError(option_words(str(exc))) from None

    casebook = args.casebook or str(default_casebook_path())
    with Casebook.open(casebook) as book:  # one that cannot be written, or is busy, is named before the model loads
        book.check_writable()
    items, summary = [], None
    with TerminalProgress() as progress:
        for value in recorded_inspection(casebook, args.model, args.index, request, kind="inspect",
                                         reviewer=args.reviewer, progress=progress):
            if isinstance(value, Inspected):
                items.append(value)
            else:
                summary = value
    ids = [item.finding_id for item in items]
    if args.json:
        print_json({**summary.as_dict(), "casebook": casebook,
                    "generations": [_generation_dict(i, f) for i, f in zip(items, ids, strict=True)]})
        return 0
    words = role_words((summary.index or {}).get("role"))
    print(f"prompt “{args.prompt}”: {len(items)} generations")
    if summary.index:
        print(f"searched {describe_index(summary.index)}")
    for item, fid in zip(items, ids, strict=True):
        nb = min(item.neighbours, key=lambda n: n.tiled_l2) if item.neighbours else None  # the verdict's image
        near = f"nearest tiled l2 {nb.tiled_l2:.3f} at {nb.comparison_size} px (“{nb.caption}”, " \
               f"{words.count(nb.duplicate_count)})" if nb else "no neighbours"
        flag = " [clique]" if item.in_clique else ""
        rec = f" finding #{fid}" if fid else ""
        print(f"  seed {item.seed:>5}: {item.suggestion.verdict:<10} {near}{flag}{rec}")
        if nb:
            print(f"               {words.image}: {nb.source}" + (f"  {origin_words(nb.url)}" if nb.url else ""))
    clique = summary.clique
    print(f"largest near-identical clique: {clique.size if clique else 0} of {summary.n}"
          + (f" — FLAGGED (>= {clique.min_size})" if clique and clique.flagged else ""))
    if summary.wen_score is not None:
        print(f"Wen score: {summary.wen_score:.3f}")
    if summary.wen_tokens:
        from inspector.prompt_words import steering_words

        unknown = summary.words.vocabulary.unknown_words if summary.words and summary.words.vocabulary else []
        print(f"words that steer hardest (Wen attribution, per word): {steering_words(summary.wen_tokens, unknown)}")
    for note in summary.notes:
        print(f"note: {note}")
    print(f"recorded as run #{summary.run_id} with its {len(items)} generations in {casebook}")
    return 0
