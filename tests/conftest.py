from __future__ import annotations

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep the test run's settings, casebooks, weight-hash cache and demo index out of the user's own folders.
_scratch = tempfile.mkdtemp(prefix="inspector-tests-")
os.environ.setdefault("INSPECTOR_DATA_DIR", os.path.join(_scratch, "data"))
os.environ.setdefault("INSPECTOR_CACHE_DIR", os.path.join(_scratch, "cache"))
# Tests label as a named reviewer (a label needs one: the CLI refuses, the window asks); the tests of that
# refusal and that question remove it.
os.environ.setdefault("INSPECTOR_REVIEWER", "test reviewer")
