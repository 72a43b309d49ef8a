"""One place for each shared fact and job (issue 15, point 3): the threshold, the label names, the demo's name,
library versions, timestamps and JSON sanitising are defined once and used everywhere."""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inspector.casebook.jsontext import canonical, jsonable
from inspector.findings import LABEL_WORDS, LABELS, SUGGESTIONS, UNLABELED, label_meaning
from inspector.metrics import EXTRACTION_THRESHOLD, describe_tiled_l2
from inspector.provenance import json_restore, json_safe, library_versions
from inspector.timestamps import FORMAT, format_time, parse_time, utc_now

PACKAGE = Path(__file__).resolve().parent.parent / "inspector"


def constants(value) -> list[str]:
    """Where ``value`` is written as a literal in the package's code (docstrings and comments do not count)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_the_extraction_threshold_is_written_once():
    # The benchmark world draws stripes 4 to 15% of the picture wide: a size, not the threshold (and the trained
    # benchmark model saw exactly those pixels, so the number stays).
    assert [p.split(":")[0] for p in constants(0.15)] == ["demo/benchmark_world.py", "metrics.py"]
    assert describe_tiled_l2(0.06) == f"tiled l2 0.06: near copy (threshold {EXTRACTION_THRESHOLD:.2f})"


def test_the_label_names_are_written_once_outside_the_demo_world():
    # The demo world names its prompt kinds after the labels (demo/world.py); the app's code uses the constants.
    # ("novel" is also the name of a run's count of novel suggestions, a column of the casebook's runs table.)
    for name in sorted({*LABELS, UNLABELED, *SUGGESTIONS} - {"novel"}):
        outside = [p for p in constants(name) if not p.startswith(("findings.py", "demo/"))]
        assert outside == [], (name, outside)


def test_the_demo_source_is_named_once():
    # resources.py names it (and its folder); `inspector demo` is a command of that name.
    assert {p.split(":")[0] for p in constants("demo")} <= {"resources.py", "commands/demo.py", "demo/build.py"}


def test_labels_have_words_in_the_index_roles_words():
    assert [LABEL_WORDS[k] for k in (*LABELS, UNLABELED)] == ["Memorized", "Likeness only", "Novel", "Unlabeled"]
    assert label_meaning("memorized", "reference image", "reference images") == "a near copy of a reference image"
    assert "training" not in label_meaning("likeness-only", "reference image", "reference images")


def test_library_versions_come_from_one_function_without_importing_torch():
    code = ("import sys; from inspector.provenance import library_versions as v; "
            "d = v(('torch', 'numpy', 'sqlite', 'no-such-package')); "
            "print(sorted(d), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['inspector', 'no-such-package', 'numpy', 'python', 'sqlite', 'torch'] False"
    assert library_versions(("no-such-package",))["no-such-package"] == "missing"


def test_new_records_carry_one_timestamp_format_and_old_ones_still_read():
    now = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now)
    assert datetime.strptime(now, FORMAT)
    old_index = parse_time("2026-11-29T15:00:00+00:00")  # an index manifest written before the one format
    assert format_time(old_index) == "2026-11-29T15:00:00.000000Z"
    assert parse_time("2026-11-29T15:00:00Z") == datetime(2026, 11, 29, 15, tzinfo=UTC)
    assert format_time(datetime(2026, 11, 29, 15, 0, tzinfo=UTC)) < now  # the format sorts as text


def test_json_sanitising_is_one_function_with_three_spellings_of_a_non_finite_float():
    value = {"a": (1, 2.5), "b": -math.inf, "c": b"\x00", 3: {2, 1}}
    assert json_safe(value) == {"a": [1, 2.5], "b": {"__float__": "-inf"}, "c": {"base64": "AA=="}, "3": [1, 2]}
    assert json_restore(json_safe(value))["b"] == -math.inf
    assert json_safe(value, non_finite="null")["b"] is None
    # The casebook's spelling, which its hash chain depends on: unchanged.
    assert jsonable(value) == json_safe(value, non_finite="text")
    assert canonical({"x": math.nan, "y": 1}) == b'{"x":"nan","y":1}'
    with pytest.raises(ValueError):
        json_safe(math.inf, non_finite="zero")
