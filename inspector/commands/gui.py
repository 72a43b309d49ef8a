"""``inspector [gui]``: the desktop window (the default command)."""

from __future__ import annotations

import argparse

from inspector.commands import casebook_file, nonempty, whole_number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop inspector (the default)",
                       description="Open the Memorization Inspector window. With no --model / --index the "
                                   "embedded demo is used.")
    p.add_argument("--model", type=nonempty("a model: demo, a model folder, a .safetensors file or a cached Hub id"),
                   help="demo, a local diffusers folder, a .safetensors file, or a cached Hub id")
    p.add_argument("--index", type=nonempty("an index: demo or an index folder"),
                   help="demo, or a training index folder (inspector index build)")
    p.add_argument("--casebook", type=casebook_file,
                   help="casebook file (default: casebook.db in the user data folder); a new one is made in an "
                        "existing folder only")
    p.add_argument("--screenshot", metavar="PNG", help="run one generation, save a picture of the window, exit")
    p.add_argument("--prompt", help="the prompt for --screenshot")
    p.add_argument("--n", type=int, help="number of images for --screenshot (default 16)")
    # The window's seed box holds a 32-bit number.
    p.add_argument("--seed", type=whole_number(0, 2**31 - 1, "the seed"), help="first seed for --screenshot (default 0)")
    p.add_argument("--size", type=window_size, metavar="WxH",
                   help="the window's size in pixels, e.g. 1366x768 (default: as last left, else to fit the screen)")
    p.set_defaults(func=run)


def window_size(text: str) -> tuple[int, int]:
    """An argparse type: WIDTHxHEIGHT in pixels, each 320 .. 16384."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in pixels, e.g. 1366x768, got {text!r}")
    w, h = (int(p) for p in parts)
    if not (320 <= w <= 16384 and 320 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"must be between 320 and 16384 pixels each way, got {w}x{h}")
    return w, h


def run(args: argparse.Namespace) -> int:
    from inspector.errors import UserError
    from inspector.limits import MAX_WINDOW_IMAGES

    if args.n is not None and not 1 <= args.n <= MAX_WINDOW_IMAGES:
        raise UserError(f"--n must be between 1 and {MAX_WINDOW_IMAGES}, got {args.n}")
    if args.prompt and not args.screenshot:
        raise UserError("--prompt is only used with --screenshot")
    if args.screenshot:
        from pathlib import Path

        from inspector.errors import check_writable_folder

        check_writable_folder(Path(args.screenshot).expanduser().parent)  # before the window and the model
    from inspector.gui.app import run_gui

    return run_gui(model=args.model, index=args.index, casebook=args.casebook, screenshot=args.screenshot,
                   prompt=args.prompt, n=args.n, seed=args.seed, size=args.size)
