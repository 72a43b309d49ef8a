"""``inspector demo build``: rebuild the embedded demo world (training set, model, image embedder, prompts,
report)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the embedded demo world", description="The embedded demo world.")
    demo_sub = p.add_subparsers(dest="demo_command", metavar="COMMAND", required=True)
    b = demo_sub.add_parser(
        "build", help="rebuild resources/demo deterministically (about 90 minutes on two CPU cores)",
        description="Write the demo training set, train the demo model (seeded, deterministic on the same "
                    "machine, library versions and thread count), then write prompts.json and the training "
                    "report. Takes about 90 minutes on two CPU cores.")
    b.add_argument("--out", type=Path, help="where to write (default: resources/demo of this checkout)")
    b.add_argument("--steps", type=int, help="training steps (default: the recipe's 10000)")
    b.add_argument("--seed", type=int, default=0, help="seed of the whole build (default 0)")
    b.add_argument("--embedder-only", action="store_true",
                   help="only (re)train the demo's image embedder on the existing training set, calibrate its "
                        "likeness threshold and measure the suggested verdicts (about 15 minutes; resumes an "
                        "interrupted run)")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from inspector.errors import UserError

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    from inspector.demo.build import RESOURCES, build
    from inspector.demo.train import TrainConfig

    cfg = TrainConfig(seed=args.seed)
    if args.steps is not None:
        cfg.steps = args.steps
    out = args.out or RESOURCES / "demo"
    import json

    from inspector.demo.evaluate import evaluate, evaluate_suggestions

    if args.embedder_only:
        if args.steps is not None:
            raise UserError("--steps sets the model's training steps: leave it out with --embedder-only")
        if not (out / "training").is_dir() or not (out / "model" / "model_index.json").is_file():
            raise UserError(f"{out} has no demo training set and model: run inspector demo build first")
        from inspector.demo.embedder import EmbedderConfig, build_embedder

        build_embedder(out, EmbedderConfig(seed=args.seed))
    else:
        build(out, cfg)
        report = evaluate(out / "model", out / "training")
        (out / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    suggestions = evaluate_suggestions(out)
    (out / "suggestions.json").write_text(json.dumps(suggestions, indent=1) + "\n", encoding="utf-8")
    from inspector.demo.report import write_report

    write_report(out)
    print(f"demo world written to {out}; see {out / 'TRAINING.md'}")
    return 0
