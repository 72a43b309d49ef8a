"""The annotator's speed in the window's Review tab: seconds from a label key to the next finding on screen.

Goal (issue 18): one keystroke a label and under 1.5 s a finding on this machine. The window runs offscreen
(its own settings, data and cache folders in a temporary folder); each label is a real key press on the queue
list, timed until the next finding's comparison is shown, and until its heatmaps are drawn. By default the
findings are made up at Stable Diffusion's size (512 px generations, neighbours compared at 256 px: the most a
finding costs to read and draw); --casebook reviews a copy of a real one (e.g. a demo scan's). --writer adds a
second process recording a finding every half second into the same casebook, as a scan would.
Prints the figures and their ratio to the goal; asserts nothing about time.

    python bench/bench_review_queue.py                      # 40 labels, 512 px findings
    python bench/bench_review_queue.py --n 20 --writer
    python bench/bench_review_queue.py --casebook scan.db   # a copy of a real casebook
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_S = 1.5


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def made_up_finding(k: int, side: int):
    """A finding as a scan records it: a ``side`` px generation, four neighbours with their compared pixels."""
    from inspector.findings import MEMORIZED, NOVEL, Finding, Neighbour

    rng = np.random.default_rng(k)
    size = min(side, 256)
    base = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    neighbours = []
    for r in range(1, 5):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        neighbours.append(Neighbour(rank=r, item_id=k * 10 + r, source=f"train/{k}-{r}.png", caption=f"caption {r}",
                                    duplicate_count=r, l2=0.02 * r, tiled_l2=0.03 * r + 0.001 * (k % 50),
                                    ssim=0.9 / r, comparison_size=size, pixels=pixels,
                                    thumbnail_png=_png(pixels[::4, ::4])))
    return Finding(prompt=f"a bench prompt {k // 8}", seed=k, image_png=_png(base),
                   provenance={"model": {"id": "bench", "sha256": "ab" * 32}, "steps": 25, "seed": k},
                   neighbours=neighbours, suggested_verdict=MEMORIZED if k % 3 == 0 else NOVEL,
                   suggestion_reason="made up for the bench")


def _writer(path: str, side: int, first: int, stop) -> None:
    """Another program (a scan): one finding every half second into the same casebook."""
    from inspector.casebook import Casebook

    k = first
    while not stop.is_set():
        with Casebook.open(path) as book:
            book.record(made_up_finding(k, side))
        k += 1
        stop.wait(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="labels to give (40)")
    parser.add_argument("--side", type=int, default=512, help="side of the made-up generations in px (512)")
    parser.add_argument("--casebook", help="review a copy of this casebook instead of made-up findings")
    parser.add_argument("--writer", action="store_true", help="another process records a finding every 0.5 s")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-review-"))
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("INSPECTOR_DATA_DIR", "data"), ("INSPECTOR_CACHE_DIR", "cache")):
        os.environ[var] = str(tmp / sub)
    os.environ["INSPECTOR_REVIEWER"] = "bench"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    path = tmp / "review.db"
    from inspector.casebook import Casebook

    if args.casebook:
        shutil.copy(args.casebook, path)
        with Casebook.open(path, readonly=True) as book:
            waiting = book.count(label="unlabeled")
        if waiting < args.n + 1:
            print(f"{args.casebook} has {waiting} unlabeled findings: give --n {max(1, waiting - 1)} or fewer")
            return 2
        what = f"a copy of {args.casebook}"
    else:
        with Casebook.open(path) as book:
            book.record_many([made_up_finding(k, args.side) for k in range(args.n + 1)])
        what = f"{args.n + 1} made-up findings, {args.side} px generations"
    stop = writer = None
    if args.writer:  # started before Qt: a forked child must not inherit a running QApplication
        stop = multiprocessing.Event()
        writer = multiprocessing.Process(target=_writer, args=(str(path), args.side, 10**6, stop), daemon=True)
        writer.start()
    try:
        return _label(path, args, what)
    finally:
        if writer is not None:
            stop.set()
            writer.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _label(path: Path, args, what: str) -> int:
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from inspector.casebook import Casebook
    from inspector.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])

    def wait(condition, timeout_s: float = 120.0) -> None:
        end = time.perf_counter() + timeout_s
        while not condition():
            if time.perf_counter() > end:
                raise TimeoutError("the Review tab did not answer")
            app.processEvents()
            time.sleep(0.001)

    win = MainWindow(casebook_path=str(path),
                     settings=QSettings(str(path.with_suffix(".ini")), QSettings.Format.IniFormat))
    win.resize(1440, 900)
    win.show()
    win.activateWindow()
    tab = win.review_tab
    win.tabs.setCurrentWidget(tab)
    wait(lambda: tab.shown is not None and tab.shown.current is not None and tab.idle)
    pictures = []
    tab.views_shown.connect(lambda: pictures.append(time.perf_counter()))
    keys = (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3)
    shown_s, drawn_s, given = [], [], {}
    for k in range(args.n):
        fid = tab.shown.current.id
        pictures.clear()
        start = time.perf_counter()
        QTest.keyClick(tab.list, keys[k % 3])
        wait(lambda fid=fid: tab.shown.current is not None and tab.shown.current.id != fid)
        shown_s.append(time.perf_counter() - start)
        wait(lambda: bool(pictures) and tab.idle)
        drawn_s.append(pictures[-1] - start)
        given[fid] = k % 3
    win.close()
    with Casebook.open(path, readonly=True) as book:
        written = sum(1 for fid in given if book.get(fid).reviewer == "bench" and book.get(fid).label != "unlabeled")

    def p95(values: list[float]) -> float:
        return float(np.percentile(values, 95))

    print(f"Review tab, {what}{', a second process writing' if args.writer else ''}: {args.n} labels, one key "
          f"each ({written} in the casebook with the reviewer)")
    for name, values in (("key press to the next finding shown", shown_s),
                         ("key press to its heatmaps drawn", drawn_s)):
        median = statistics.median(values)
        print(f"  {name}: median {median:.3f} s, p95 {p95(values):.3f} s, worst {max(values):.3f} s; "
              f"ratio to the {GOAL_S} s goal {median / GOAL_S:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
