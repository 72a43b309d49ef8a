"""The ``inspector`` command line (DESIGN.md, "Command line").

Exit status: 0 on success, 2 on bad input or usage (one clear line on stderr), 1 otherwise.
Each command lives in its own module under ``inspector.commands`` and registers itself with ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from inspector import __version__
from inspector.errors import BusyError, UserError, user_error

#: Command modules, in the order ``--help`` lists them. Each defines ``register(subparsers)``.
COMMAND_MODULES = (
    "inspector.commands.gui",
    "inspector.commands.generate",
    "inspector.commands.index",
    "inspector.commands.compare",
    "inspector.commands.inspect",
    "inspector.commands.scan",
    "inspector.commands.casebook",
    "inspector.commands.report",
    "inspector.commands.demo",
    "inspector.commands.evaluate",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with one line
        # A bad value of one argument ("argument --seed: ...") is named in the line itself; the usage is printed
        # only for a malformed command line (a missing or unknown argument), where it helps.
        if not message.startswith("argument "):
            self.print_usage(sys.stderr)
        raise SystemExit(f"{self.prog}: error: {message}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inspector",
        description="Memorization Inspector: does an image-generation model copy its training images?",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()
    if "gui" in commands and (not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if getattr(args, "timeout", None) is not None:
            from inspector.casebook import set_busy_timeout

            set_busy_timeout(args.timeout)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"inspector: error: {_user_words(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inspector: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        # A condition the person can fix that no write site translated (no permission, a full disk, a busy
        # database): the same words, naming the file the error names, else the command's output.
        translated = _translate(exc, args)
        if translated is not None:
            print(f"inspector: error: {_user_words(translated, args)}", file=sys.stderr)
            return 2
        print(f"inspector: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


#: The arguments that name what a command writes, most specific first (generate/index build/export --out,
#: compare --heatmap, gui --screenshot, a casebook).
_OUTPUT_ARGUMENTS = ("out", "add_to", "heatmap", "screenshot", "casebook", "file")


def _output_path(args: argparse.Namespace) -> Path | None:
    for name in _OUTPUT_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
    return None


def _translate(exc: BaseException, args: argparse.Namespace) -> UserError | None:
    """:func:`inspector.errors.user_error` for an exception that reached the command line."""
    output = _output_path(args)
    filename = getattr(exc, "filename", None)
    if filename is None:
        return user_error(exc, output)
    # An error about a file inside what the command writes is a write; about any other file, it may be a read.
    inside = output is not None and Path(filename).resolve().is_relative_to(output.resolve())
    return user_error(exc, filename, verb="write" if inside else "open")


def _user_words(exc: UserError, args: argparse.Namespace) -> str:
    """The error's line, with the option that helps where this command has it."""
    if isinstance(exc, BusyError) and "timeout" in vars(args):
        waited = f" (it waited {exc.waited:g} s)" if exc.waited is not None else ""
        return f"{exc}, or raise --timeout{waited}"
    return str(exc)
