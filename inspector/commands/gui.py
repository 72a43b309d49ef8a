"""``inspector [gui]``: the desktop window (the default command)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop inspector (the default)",
                       description="Open the Memorization Inspector window. With no --model / --index the "
                                   "embedded demo is used.")
    p.add_argument("--model", help="demo, a local diffusers folder, a .safetensors file, or a cached Hub id")
    p.add_argument("--index", help="demo, or a training index folder (inspector index build)")
    p.add_argument("--casebook", help="casebook file (default: casebook.db in the user data folder)")
    p.add_argument("--screenshot", metavar="PNG", help="run one generation, save a picture of the window, exit")
    p.add_argument("--prompt", help="the prompt for --screenshot")
    p.add_argument("--n", type=int, help="number of images for --screenshot (default 16)")
    p.add_argument("--seed", type=int, help="first seed for --screenshot (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspector.errors import UserError

    if args.n is not None and not 1 <= args.n <= 500:
        raise UserError(f"--n must be between 1 and 500, got {args.n}")
    if args.prompt and not args.screenshot:
        raise UserError("--prompt is only used with --screenshot")
    from inspector.gui.app import run_gui

    return run_gui(model=args.model, index=args.index, casebook=args.casebook, screenshot=args.screenshot,
                   prompt=args.prompt, n=args.n, seed=args.seed)
