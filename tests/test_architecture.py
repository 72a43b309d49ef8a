"""docs/architecture.md's layers and DESIGN.md's hard rules about imports, checked on the source itself.

The contracts live in pyproject.toml ([tool.importlinter]); `make check` runs them on the checkout. These tests
run them on a copy of the package in a temporary folder, once untouched and once with a throwaway module that
breaks a rule, so a contract that silently stopped covering something fails here.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "inspector"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
CONTRACTS = {c["type"]: c["name"] for c in CONFIG["contracts"]}
LAYERS, QT_BAN, CASEBOOK_API = CONTRACTS["layers"], CONTRACTS["forbidden"], CONTRACTS["protected"]


def lint_copy(tmp_path: Path, changes: dict[str, str]) -> dict[str, str]:
    """Copy the package and pyproject.toml to ``tmp_path``, append each text of ``changes`` to its file (created
    when missing), run lint-imports there and return ``{contract name: "KEPT" or "BROKEN"}``."""
    shutil.copytree(PACKAGE, tmp_path / "inspector", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for relative, text in changes.items():
        with open(tmp_path / relative, "a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")
    # lint-imports puts its working folder first on sys.path, so it analyses the copy, not the checkout.
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    text = " ".join(done.stdout.split())  # the report wraps long contract names over lines
    verdicts = {name: m.group(1) for name in CONTRACTS.values()
                if (m := re.search(re.escape(name) + r" (KEPT|BROKEN)", text))}
    assert len(verdicts) == len(CONTRACTS), done.stdout + done.stderr
    assert (done.returncode == 0) == all(v == "KEPT" for v in verdicts.values()), done.stdout + done.stderr
    return verdicts


def test_the_untouched_package_keeps_every_contract(tmp_path):
    assert lint_copy(tmp_path, {}) == {name: "KEPT" for name in CONTRACTS.values()}


@pytest.mark.parametrize(("changes", "broken"), [
    pytest.param({"inspector/findings.py": "from inspector import session"}, {LAYERS},
                 id="a primitive imports a workflow"),
    pytest.param({"inspector/casebook/shortcut.py": "import inspector.runs"}, {LAYERS},
                 id="a new module inside an engine imports a workflow"),
    pytest.param({"inspector/generation/lookup.py": "from inspector.casebook import Casebook"}, {LAYERS},
                 id="one engine imports a sibling it must stay independent of"),
    pytest.param({"inspector/helpers.py": "HELPERS = 1"}, {LAYERS},
                 id="a new top-level module placed in no layer"),
    pytest.param({"inspector/training_index/preview.py": "from PySide6.QtGui import QImage"}, {QT_BAN},
                 id="a module outside the gui imports PySide6"),
    pytest.param({"inspector/thumbnails.py": "from PySide6.QtGui import QImage"}, {QT_BAN, LAYERS},
                 id="a new top-level module imports PySide6"),
    pytest.param({"inspector/metrics.py": "import qtpy"}, {QT_BAN},
                 id="a module outside the gui imports another Qt binding"),
    pytest.param({"inspector/runs.py": "from inspector.casebook.store import verdict_neighbour"}, {CASEBOOK_API},
                 id="a workflow reaches into the casebook's modules"),
])
def test_a_throwaway_module_that_breaks_a_rule_breaks_its_contract(tmp_path, changes, broken):
    verdicts = lint_copy(tmp_path, changes)
    assert {name for name, v in verdicts.items() if v == "BROKEN"} == broken


def test_the_architecture_page_shows_the_layers_the_contract_enforces():
    page = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    section = page.split("## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[1] for line in section.splitlines() if line.startswith("| ") and "`" in line]
    shown = [span.replace("\\|", "|") for row in rows for span in re.findall(r"`([^`]+)`", row)]
    (contract,) = [c for c in CONFIG["contracts"] if c["type"] == "layers"]
    assert shown == contract["layers"]


def names_bound_by(init: Path, package: str) -> dict[str, str]:
    """``{name: what it is}`` for each name a package's ``__init__.py`` binds to something other than its own
    module of that name (``from package import name`` of a module binds the module itself)."""
    bound = {}
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if not (node.module == package and alias.asname is None):
                    bound[alias.asname or alias.name] = f"{alias.name} from {node.module}"
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound[node.name] = "defined there"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    bound[target.id] = "assigned there"
    return bound


def test_no_package_hides_one_of_its_modules_behind_a_name_it_exports():
    """A package that exports a function named like one of its modules (``inspector.generation`` once exported
    ``reproduce`` from ``reproduce.py``) makes ``import inspector.generation.reproduce`` give the function."""
    hidden = []
    for init in PACKAGE.rglob("__init__.py"):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        modules = {p.stem for p in init.parent.glob("*.py")} | {p.parent.name for p in init.parent.glob("*/__init__.py")}
        bound = names_bound_by(init, package)
        hidden += [f"{package}.{name}: {bound[name]}" for name in sorted(modules & bound.keys())]
    assert not hidden, hidden


def test_the_command_line_starts_without_torch_or_qt():
    code = "import sys, inspector.cli as c; c.build_parser(); print(sorted(m for m in ('torch','diffusers','PySide6') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
