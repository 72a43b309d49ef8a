"""DESIGN.md's hard rules about imports, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "inspector"
QT = ("PySide6", "PyQt5", "PyQt6", "qtpy", "superqt", "shiboken6")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_outside_the_gui_package_imports_qt():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "gui" in path.relative_to(PACKAGE).parts:
            continue
        bad = [m for m in imported_modules(path) if m.split(".")[0] in QT]
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE.parent)}: {bad}")
    assert not offenders, offenders


def test_the_command_line_starts_without_torch_or_qt():
    code = "import sys, inspector.cli as c; c.build_parser(); print(sorted(m for m in ('torch','diffusers','PySide6') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
