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
    b.add_argument("--benchmark", action="store_true",
                   help="build the benchmark world instead (benchmark/ of this checkout): many prompts with known "
                        "answers, for inspector evaluate; about 70 minutes of training on two CPU cores")
    b.add_argument("--resume", action="store_true",
                   help="with --benchmark: go on from the last training checkpoint (same result as one run)")
    b.add_argument("--leg-minutes", type=float, metavar="M",
                   help="with --benchmark: stop at the first checkpoint after M minutes (exit status 75); run "
                        "again with --resume to go on")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from inspector.errors import UserError

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    from inspector.demo.build import RESOURCES, build
    from inspector.demo.train import TrainConfig

    if args.benchmark:
        return _run_benchmark(args)
    if args.resume or args.leg_minutes is not None:
        raise UserError("--resume and --leg-minutes go with --benchmark")
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


#: Exit status of a benchmark build that paused at its leg's time limit (BSD's EX_TEMPFAIL: try again).
PAUSED = 75


def _run_benchmark(args: argparse.Namespace) -> int:
    from inspector.demo.benchmark import DEFAULT_DIR, benchmark_config, build_benchmark
    from inspector.demo.train import TrainingPaused
    from inspector.errors import UserError

    if args.embedder_only:
        raise UserError("--embedder-only is for the demo world, not --benchmark")
    if args.leg_minutes is not None and args.leg_minutes <= 0:
        raise UserError(f"--leg-minutes must be above 0, got {args.leg_minutes}")
    cfg = benchmark_config(args.seed)
    if args.steps is not None:
        cfg.steps = args.steps
    out = args.out or DEFAULT_DIR
    try:
        build_benchmark(out, cfg, resume=args.resume, leg_minutes=args.leg_minutes)
    except TrainingPaused as paused:
        print(paused)
        return PAUSED
    except ValueError as err:
        raise UserError(str(err)) from err
    print(f"benchmark world written to {out}; measure the inspector on it with: inspector evaluate")
    return 0
