"""Smoke test of the built bundle: start it offscreen with --screenshot and check the picture is not empty.

    python packaging/smoke_test.py [--bundle dist/memorization-inspector] [--timeout 900]

(`make bundle-smoke` runs it.) Two runs share one fresh cache folder: the first is a user's very first
start (the demo's training index is built into the cache), the second a later start. Each must exit 0 and
write a PNG of the window that is not one colour. A third start measures the time to the first window, and
an index build with two decoding processes checks that the frozen executable starts its workers. Prints the
bundle's size and the time of each run; exits 0 when all is well, 1 with the reason otherwise. Needs Pillow
(the project's environment has it); never imports Qt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "memorization-inspector"
PROMPT = "astronaut eileen collins"
#: A real window has text, widgets and images: far more colours than this. A blank or one-colour grab has one.
MIN_COLOURS = 64


class SmokeFailure(Exception):
    pass


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def check_layout(bundle: Path) -> Path:
    """The bundle's executable, after checking that the files the app looks for at run time are there."""
    exe = bundle / NAME
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise SmokeFailure(f"no executable {exe}: build the bundle first (make dist)")
    internal = bundle / "_internal"
    needed = [
        internal / "inspector" / "_resources" / "icons" / f"{NAME}.svg",
        internal / "inspector" / "_resources" / "demo" / "model" / "model_index.json",
        internal / "inspector" / "_resources" / "demo" / "training",
    ]
    missing = [str(p.relative_to(bundle)) for p in needed if not p.exists()]
    if not list(internal.glob("PySide6/Qt/plugins/iconengines/*svg*")):
        missing.append("PySide6/Qt/plugins/iconengines/ (the SVG icon engine: the window would have no icon)")
    if missing:
        raise SmokeFailure("the bundle lacks " + ", ".join(missing))
    return exe


def check_picture(path: Path) -> str:
    """Raise unless ``path`` is a PNG of a real window; return a one-line description."""
    from PIL import Image

    if not path.is_file() or path.stat().st_size == 0:
        raise SmokeFailure(f"no screenshot was written to {path}")
    with Image.open(path) as image:
        if image.format != "PNG":
            raise SmokeFailure(f"{path} is a {image.format}, not a PNG")
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        if len(colours) < MIN_COLOURS:
            raise SmokeFailure(f"{path} ({rgb.width} x {rgb.height}) has only {len(colours)} colours: "
                               "the window was not drawn")
        return f"{rgb.width} x {rgb.height} px, {len(colours)} colours"


def run_once(exe: Path, shot: Path, env: dict[str, str], timeout: float) -> float:
    """Run one screenshot start; return its wall time in seconds."""
    args = [str(exe), "--screenshot", str(shot), "--prompt", PROMPT, "--n", "2"]
    start = time.monotonic()
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SmokeFailure(f"the bundle ran for more than {timeout:.0f} s: {' '.join(args)}") from exc
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise SmokeFailure(f"the bundle exited {done.returncode}:\n{tail}")
    return elapsed


def window_start_time(exe: Path, tmp: str, env: dict[str, str], timeout: float) -> float:
    """Seconds from starting the bundle to its window being up. Measured by asking for a model that does not
    exist: the window opens, its generation run fails at once, and the screenshot path exits 1 with the
    error."""
    missing = Path(tmp, "no-such-model")
    shot = str(Path(tmp, "unused.png"))
    args = [str(exe), "--screenshot", shot, "--prompt", PROMPT, "--model", str(missing)]
    # its own data folder: the window remembers the model it was given
    env = dict(env, INSPECTOR_DATA_DIR=str(Path(tmp, "data-window")))
    start = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - start
    if done.returncode != 1 or str(missing) not in done.stderr:
        raise SmokeFailure(f"expected the window to report the missing model and exit 1, got "
                           f"{done.returncode}: {done.stderr.strip()[-500:]}")
    return elapsed


def check_worker_processes(exe: Path, bundle: Path, tmp: str, env: dict[str, str], timeout: float) -> str:
    """Build an index of the demo training images with two decoding processes: in a frozen app each one is
    this executable started again, which must become a worker (multiprocessing.freeze_support), not a second
    app."""
    training = bundle / "_internal" / "inspector" / "_resources" / "demo" / "training"
    out = str(Path(tmp, "index"))
    args = [str(exe), "index", "build", str(training), "--out", out, "--workers", "2", "--json"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SmokeFailure(f"`index build --workers 2` exited {done.returncode}: "
                           f"{done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    if not report["unique_images"] or report["skipped"]:
        raise SmokeFailure(f"`index build --workers 2` indexed {report['unique_images']} images, "
                           f"skipped {len(report['skipped'])}")
    return f"{report['files_seen']} files, {report['unique_images']} unique, in {report['seconds']:.1f} s"


def smoke(bundle: Path, timeout: float) -> None:
    exe = check_layout(bundle)
    print(f"bundle: {bundle} ({folder_size(bundle) / 2**20:.0f} MiB)")
    with tempfile.TemporaryDirectory(prefix="inspector-bundle-smoke-") as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
                   INSPECTOR_DATA_DIR=str(Path(tmp, "data")), INSPECTOR_CACHE_DIR=str(Path(tmp, "cache")))
        start = time.monotonic()
        version = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True,
                                 timeout=timeout)
        if version.returncode != 0:
            raise SmokeFailure(f"`{NAME} --version` exited {version.returncode}: {version.stderr.strip()}")
        print(f"--version: {version.stdout.strip()} in {time.monotonic() - start:.1f} s")
        for label in ("first start (builds the demo index)", "second start (index cached)"):
            shot = Path(tmp, f"shot-{label.split()[0]}.png")
            elapsed = run_once(exe, shot, env, timeout)
            print(f"{label}: screenshot of 2 generations in {elapsed:.1f} s; {check_picture(shot)}")
        print(f"start-up to the first window: {window_start_time(exe, tmp, env, timeout):.1f} s")
        workers = check_worker_processes(exe, bundle, tmp, env, timeout)
        print(f"index build with 2 worker processes: {workers}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / NAME, help="the one-folder bundle")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each run may take")
    args = parser.parse_args(argv)
    try:
        smoke(args.bundle.resolve(), args.timeout)
    except SmokeFailure as exc:
        print(f"bundle smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    print("bundle smoke test passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
