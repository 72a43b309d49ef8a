"""One module per command of the ``inspector`` command line; each defines ``register(subparsers)``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def print_json(document: Any) -> None:
    """Print one JSON document on stdout and nothing else (the --json contract)."""
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False, allow_nan=False)
    sys.stdout.write("\n")


# --- argument types: a bad value is refused while the command line is read, before anything loads ---------------

#: The largest id SQLite stores (a signed 64-bit integer): findings and runs are numbered 1 .. this.
MAX_ID = 2**63 - 1


def whole_number(lo: int, hi: int, what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi], refused with the range in words otherwise (a finding id
    of 2**64 is "out of range", not an overflow deep inside SQLite)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {value}")
        return value

    return parse


#: A finding's or a run's id (``casebook list`` shows them).
finding_id = whole_number(1, MAX_ID, "a finding id")
run_id = whole_number(1, MAX_ID, "a run id")


def seed(text: str) -> int:
    """An argparse type: a seed, 0 .. 2**63 - 1 (what torch.Generator.manual_seed takes and provenance records)."""
    from inspector.generation.sampling import MAX_SEED

    return whole_number(0, MAX_SEED, "the seed")(text)


def neighbour_count(text: str) -> int:
    """An argparse type: how many nearest images to show per image, 1 .. ``session.MAX_NEIGHBOURS``."""
    from inspector.session import MAX_NEIGHBOURS

    return whole_number(1, MAX_NEIGHBOURS, "the number of neighbours")(text)


def nonempty(what: str) -> Callable[[str], str]:
    """An argparse type: text that is not empty or blank (``--model ""`` must not quietly mean the demo)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty: give {what}")
        return text

    return parse


def casebook_file(text: str) -> str:
    """An argparse type: a casebook path whose folder exists. A new casebook is created in an existing folder
    only, so that a typing mistake in a folder name does not quietly start a casebook somewhere new."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give the casebook file (.db)")
    folder = Path(text).expanduser().parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"the folder {folder} {what}: create it first, or give a casebook in "
                                         "an existing folder")
    return text


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def add_timeout_option(parser: argparse.ArgumentParser) -> None:
    """``--timeout SECONDS``: how long a casebook write waits for another program's (applied by cli.main)."""
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="how long to wait for another program writing the casebook (default 30)")


#: Settings as the engines name them in their messages, and the options that set them on the command line.
_OPTION_WORDS = (
    ("the number of images (n)", "--n"), ("the last seed (seed + n - 1)", "--seed + --n - 1"),
    ("the seed", "--seed"), ("the number of steps", "--steps"), ("the guidance scale", "--guidance"),
    ("the batch size", "--batch-size"), ("the height", "--size height"), ("the width", "--size width"),
    ("the number of neighbours (k)", "--k"),
)


def option_words(message: str) -> str:
    """Name the command-line option in an engine's message about a setting ("--steps: the number of steps must
    be between 1 and 1000, got 0")."""
    for setting, option in _OPTION_WORDS:
        if message.startswith(setting):
            return f"{option}: {message}"
    return message
