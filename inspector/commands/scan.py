"""``inspector scan PROMPTS.txt``: Carlini et al.'s generate-and-filter over many prompts, resumable."""

from __future__ import annotations

import argparse
import sys
import time

from inspector.commands import print_json
from inspector.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="sweep a file of prompts; candidates become unlabeled findings",
                       description="For each distinct prompt of PROMPTS.txt (one a line): N generations, their "
                                   "nearest training images, the largest near-identical clique and the Wen score. "
                                   "Candidates go to the casebook as unlabeled findings. Ctrl+C stops; --resume "
                                   "continues without duplicates.")
    p.add_argument("prompts", metavar="PROMPTS.txt")
    p.add_argument("--n", type=int, default=500, help="generations per prompt (default 500, as in the paper)")
    p.add_argument("--model", default="demo")
    p.add_argument("--index", default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--casebook", required=True, help="where the candidates are recorded")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan of the same file")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per distinct prompt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.scan import read_prompts, scan

    if not 1 <= args.n <= 10000:
        raise UserError(f"--n must be between 1 and 10000, got {args.n}")
    prompts = read_prompts(args.prompts)
    started = time.monotonic()

    def progress(info: dict) -> None:
        k, total = info.get("prompt_index", info.get("done", 0)), info.get("total", len(prompts))
        elapsed = time.monotonic() - started
        line = f"prompt {k + 1}/{total}"
        if info.get("stage") == "sampling":
            line += f", image {info['done']}/{info['n']}"
        if k:
            line += f", about {elapsed / k * (total - k) / 60:.1f} min left"
        print("\r" + line.ljust(70), end="", file=sys.stderr, flush=True)

    results = []
    try:
        for result in scan(prompts, args.casebook, model=args.model, index=args.index, n=args.n, seed=args.seed,
                           steps=args.steps, guidance=args.guidance, resume=args.resume,
                           prompts_file=args.prompts, progress=progress):
            results.append(result)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {len(results)} prompts: run again with --resume to continue", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    rows = [{"prompt": r["prompt"], "clique_size": r["clique_size"], "flagged": r["flagged"],
             "wen_score": r["wen_score"], "findings": r["findings"]} for r in results]
    if args.json:
        print_json(rows)
        return 0
    width = min(50, max(len(r["prompt"]) for r in rows))
    print(f"{'prompt':<{width}}  clique  flagged  wen     findings")
    for r in rows:
        wen = f"{r['wen_score']:.3f}" if r["wen_score"] is not None else "-"
        print(f"{r['prompt'][:width]:<{width}}  {r['clique_size']:>6}  {'YES' if r['flagged'] else 'no':>7}  "
              f"{wen:<6}  {len(r['findings'])}")
    return 0
