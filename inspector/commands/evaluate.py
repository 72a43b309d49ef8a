"""``inspector evaluate``: score the inspector's own signals on the benchmark world (docs/evaluation.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="how often the verdicts are right, on the benchmark world with known answers",
        description="Sample every prompt of the benchmark world (inspector demo build --benchmark) N times and score "
                    "the suggested verdicts (precision, recall, confusion matrix), the prompt-level signals (clique "
                    "size, Wen score at 1, 5 and 10 steps with 1 and 4 generations, nearest tiled l2: ROC AUC) and "
                    "the extraction rate against the duplicate count, against a ground truth from construction and "
                    "exact distances. Writes the numbers as JSON and the report with plots (docs/evaluation.md). "
                    "About 15 minutes on two CPU cores for the 44 prompts at N = 16.")
    p.add_argument("--benchmark", type=Path, metavar="DIR",
                   help="the benchmark world (default: benchmark/ of this checkout)")
    p.add_argument("--n", type=int, default=16, help="generations per prompt, seeds 0 .. N-1 (default 16)")
    p.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="evaluate only this benchmark prompt (repeat for several; default: all)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="where to write the numbers (default: DIR/evaluation.json)")
    p.add_argument("--doc", type=Path, metavar="FILE",
                   help="where to write the report; its plots go beside it in evaluation/ (default: "
                        "docs/evaluation.md of this checkout)")
    p.add_argument("--no-doc", action="store_true", help="write the JSON only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from inspector.errors import UserError

    if args.n < 2:
        raise UserError(f"--n must be at least 2 (a clique needs two generations), got {args.n}")
    if not 1 <= args.steps <= 1000:
        raise UserError(f"--steps must be in 1..1000, got {args.steps}")
    from inspector.demo.benchmark import DEFAULT_DIR
    from inspector.demo.benchmark_eval import EvaluationConfig, evaluate_benchmark
    from inspector.fileio import write_atomic

    bench = args.benchmark or DEFAULT_DIR
    cfg = EvaluationConfig(n=args.n, sampling_steps=args.steps, prompts=args.prompt)
    if max(g for _, g in cfg.wen_settings) > args.n:
        cfg.wen_settings = tuple(s for s in cfg.wen_settings if s[1] <= args.n)
    if any(first > args.steps for first, _ in cfg.wen_settings):
        cfg.wen_settings = tuple(s for s in cfg.wen_settings if s[0] <= args.steps)
    try:
        evaluation = evaluate_benchmark(bench, cfg)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from err
    out = args.json or bench / "evaluation.json"
    write_atomic(out, json.dumps(evaluation, indent=1) + "\n")
    print(f"numbers written to {out}")
    if not args.no_doc:
        from inspector.demo.benchmark_report import goal_rows, write_report

        doc = write_report(evaluation, args.doc or DOC)
        print(f"report written to {doc}")
        for name, value, goal, verdict in goal_rows(evaluation["results"]):
            shown = "n/a" if value is None else f"{value:.3f}"
            print(f"  {name}: {shown} (goal {goal:.2f}): {verdict}")
    return 0
