"""The ``inspector`` command line (DESIGN.md, "Command line").

Exit status: 0 on success, 2 on bad input or usage (one clear line on stderr), 1 otherwise.
Each command lives in its own module under ``inspector.commands`` and registers itself with ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from inspector import __version__
from inspector.errors import UserError

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
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
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
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"inspector: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inspector: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        print(f"inspector: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
