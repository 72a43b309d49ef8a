"""The scan on Ray against the scan in one process, and the one-step prefilter against generate-and-filter.

The six demo prompts are scanned (``--n`` images of ``--steps`` steps each) in rounds, each into a fresh
casebook, every contender with the same torch thread count per process (``--threads``, default 1):

- locally, the model and index already loaded (a warm-up scan loads them first);
- on a local Ray cluster of 2 CPUs (started once; its start time is printed) with 1 worker, then 2 workers. A
  Ray scan's time is counted from the moment its workers are ready (they load the model and open the index when
  they start, as a local scan's first prompt does); the time until then is printed apart.
- with ``--two-threads``, also locally with 2 threads (this machine's default), for information.

Printed: wall seconds of each (the fastest round); the time of Ray with 1 worker over local (the overhead, goal:
at most 1.15x); the throughput of 2 workers over local on this machine (its 2 cores are shared with other
programs: a ratio far from 2 says more about the machine than about Ray; with every core busy, a 2-thread
process waits on its slowest thread at each step, so one thread per process is the fair unit); the driver's own
work per image (recording the PNG and its JSON in the scan folder), which bounds how many images a second one
driver can take in; and the scan folder's size per generation once prompts are finished.

Then the prefilter: prompts a second scored by Wen et al.'s score at the first step over 4 seeds (the default),
locally and on 2 workers, against prompts a second of the full generate-and-filter above, and the driver's time
to record one score (a finished run in the casebook and a line in the scan folder). No asserts.

    python bench/bench_scan_ray.py [--n 4] [--steps 4] [--repeats 2] [--threads 1] [--two-threads]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path


def _prompts() -> list[str]:
    from inspector.resources import demo_prompts_file

    return [p for group in json.loads(demo_prompts_file().read_text(encoding="utf-8")).values() for p in group]


class _Timed:
    """Wraps a function and sums the time spent in it."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.original = owner, name, getattr(owner, name)
        self.seconds, self.calls = 0.0, 0

    def __enter__(self):
        original = self.original

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def _local(prompts: list[str], folder: Path, n: int, steps: int, threads: int) -> float:
    import torch

    from inspector.scan import scan

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        results = list(scan(prompts, folder / "casebook.db", n=n, steps=steps, prompts_file=folder / "p.txt"))
        assert all(r["complete"] for r in results)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def _on_ray(prompts: list[str], folder: Path, n: int, steps: int, workers: int, threads: int) -> tuple[float, float]:
    """(seconds until the workers were ready, seconds from then to the end)."""
    from inspector.scan_ray import CONNECTED, ray_scan

    begun = time.perf_counter()
    ready: list[float] = []

    def progress(event) -> None:
        if event.stage == CONNECTED:
            ready.append(time.perf_counter())

    results = list(ray_scan(prompts, folder / "casebook.db", workers=workers, threads=threads, n=n, steps=steps,
                            prompts_file=folder / "p.txt", progress=progress))
    end = time.perf_counter()
    assert all(r["complete"] for r in results)
    return ready[0] - begun, end - ready[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4, help="images per prompt (default 4)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the scans (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--two-threads", action="store_true", help="also scan locally with 2 torch threads")
    args = parser.parse_args()

    import ray
    import torch

    from inspector.prefilter import Prefilter, PrefilterSettings, score_prompt
    from inspector.scan import ScanState, scan, scan_settings
    from inspector.scan_ray import Cluster, prefilter_on_cluster

    prompts = _prompts()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-ray-"))
    list(scan(prompts[:1], tmp / "warm.db", n=1, steps=1, prompts_file=tmp / "warm.txt"))  # load model, index
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    started = time.perf_counter() - start
    images = len(prompts) * args.n
    t = args.threads
    print(f"six demo prompts x {args.n} images x {args.steps} steps = {images} images, {t} torch thread(s) a "
          f"process; Ray cluster (2 CPUs) started in {started:.1f} s")
    names = ("local", "ray 1 worker", "ray 2 workers") + (("local, 2 threads",) if args.two_threads else ())
    times: dict[str, list[float]] = {name: [] for name in names}
    starts: dict[str, list[float]] = {"ray 1 worker": [], "ray 2 workers": []}
    recording = _Timed(ScanState, "record_generation")
    try:
        with recording:
            for r in range(args.repeats):
                times["local"].append(_local(prompts, tmp / f"local{r}", args.n, args.steps, t))
                for workers, name in ((1, "ray 1 worker"), (2, "ray 2 workers")):
                    until_ready, scanning = _on_ray(prompts, tmp / f"{name}{r}", args.n, args.steps, workers, t)
                    starts[name].append(until_ready)
                    times[name].append(scanning)
                if args.two_threads:
                    times["local, 2 threads"].append(_local(prompts, tmp / f"local2t{r}", args.n, args.steps, 2))
        best = {name: min(values) for name, values in times.items()}
        for name in names:
            ready = f" (+ {statistics.median(starts[name]):.1f} s for the workers to load the model)" \
                if name in starts else ""
            print(f"  {name:<17} {best[name]:7.1f} s  {images / best[name]:.2f} images/s{ready}   "
                  f"rounds: {', '.join(f'{v:.1f}' for v in times[name])}")
        print(f"Ray with 1 worker / local: {best['ray 1 worker'] / best['local']:.2f}x the time (goal <= 1.15x)")
        two = f" ({best['local, 2 threads'] / best['ray 2 workers']:.2f}x that of one process of 2 threads)" \
            if args.two_threads else ""
        print(f"Ray with 2 workers: {best['local'] / best['ray 2 workers']:.2f}x the local throughput on this "
              f"2-core machine{two}")
        print(f"driver's work per image (PNG + JSON into the scan folder): "
              f"{1000 * recording.seconds / max(1, recording.calls):.1f} ms")
        kept = sum(f.stat().st_size for f in (tmp / "local0").glob("casebook.db.scan-*/*/result.json"))
        print(f"scan folder after the scan: {kept / images:.0f} bytes of result.json per generation")

        # The prefilter: here, then on 2 workers.
        settings = PrefilterSettings(top=2)
        torch.set_num_threads(t)
        start = time.perf_counter()
        for prompt in prompts:
            score_prompt("demo", prompt, settings, seed=0, steps=None, guidance=None)
        local_rate = len(prompts) / (time.perf_counter() - start)
        folder = tmp / "prefilter"
        state = ScanState.for_scan(folder / "casebook.db", folder / "p.txt", scan_settings(n=args.n, steps=args.steps))
        prefilter = Prefilter.open(state, settings, resume=False)
        with _Timed(Prefilter, "record") as recorded:
            with Cluster.connect(None, 2, "demo", "demo", t) as cluster:
                cluster.wait_ready(None, lambda _e: None)
                start = time.perf_counter()
                prefilter_on_cluster(cluster, prefilter, prompts, seed=0, steps=None, guidance=None, cancel=None,
                                     report=lambda _e: None)
                ray_rate = len(prompts) / (time.perf_counter() - start)
        full_rate = len(prompts) / best["local"]
        print(f"prefilter (first step, 4 seeds): {local_rate:.2f} prompts/s here, {ray_rate:.2f} prompts/s on 2 "
              f"workers; generate-and-filter ({args.n} x {args.steps} steps): {full_rate:.3f} prompts/s here: "
              f"the prefilter is {local_rate / full_rate:.0f}x cheaper per prompt at these settings")
        print(f"driver's work per prefilter score (a finished run in the casebook, a line on disk): "
              f"{1000 * recorded.seconds / len(prompts):.1f} ms")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
