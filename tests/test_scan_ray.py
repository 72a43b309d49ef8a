"""`inspector scan --ray`: the same scan on a Ray cluster. A local 2-CPU cluster is started once for this file and
stopped at its end (no Ray process is left behind); each test scans the demo with two workers: the same candidates
and pixels as a local scan, a worker killed mid-prompt with every generation still recorded exactly once, and the
one-step prefilter scoring every prompt before generating for the top K only."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from inspector.resources import demo_model_dir, demo_prompts_file
from inspector.scan import ScanState, scan, scan_settings

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (demo_model_dir() / "model_index.json").exists(), reason="no demo model"),
]

DEMO_PROMPTS = json.loads(demo_prompts_file().read_text(encoding="utf-8"))
SIX = [p for group in DEMO_PROMPTS.values() for p in group]


def _descendants(pid: int) -> set[int]:
    """The live processes started by ``pid`` and by those (from /proc; empty where there is none)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] != "Z":  # a zombie has ended; only its exit status is waiting to be read
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def local_ray():
    """A Ray cluster on this machine with 2 CPUs, for this file's tests only; none of its processes outlive it."""
    sigterm = signal.getsignal(signal.SIGTERM)
    before = _descendants(os.getpid())  # e.g. multiprocessing's resource tracker, started by earlier tests
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        # The raylet, the GCS, the workers they started (not what this process had started before Ray, and not
        # multiprocessing's resource tracker, which lives as long as this process by design).
        started = {pid for pid in _descendants(os.getpid()) - before if not _is_resource_tracker(pid)}
        ray.shutdown()
        signal.signal(signal.SIGTERM, sigterm)  # ray.init took it over
        deadline = time.monotonic() + 30
        while started & _live(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _live(started), "Ray processes were left running"


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _live(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2:].split()[0] != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def local_scan(tmp_path_factory):
    """The six demo prompts scanned here, without Ray: what a Ray scan must match."""
    folder = tmp_path_factory.mktemp("local")
    book = folder / "casebook.db"
    return book, list(scan(SIX, book, n=2, steps=2, prompts_file=folder / "prompts.txt"))


def _candidates(book: Path) -> list[tuple]:
    from inspector.casebook import Casebook

    with Casebook.open(book) as cb:
        # The generation key covers the decoded pixels' hash (and the model, prompt, seed, steps, scheduler).
        return sorted((f.prompt, f.seed, f.suggested_verdict, f.nearest_tiled_l2, f.generation_key)
                      for f in cb.findings())


def _scan_runs(book: Path) -> dict[str, list]:
    from inspector.casebook import Casebook

    runs: dict[str, list] = {}
    with Casebook.open(book) as cb:
        for run in cb.runs(kind="scan"):
            runs.setdefault(run.prompt, []).append(run)
    return runs


def test_a_ray_scan_with_two_workers_records_the_same_candidates_and_pixels_as_a_local_scan(
        local_ray, local_scan, tmp_path):
    from inspector.scan_ray import CONNECTED, ray_scan

    local_book, local = local_scan
    events = []
    book = tmp_path / "casebook.db"
    on_ray = list(ray_scan(SIX, book, workers=2, n=2, steps=2, prompts_file=tmp_path / "prompts.txt",
                           progress=events.append))

    assert next(e for e in events if e.stage == CONNECTED).workers == 2
    assert [r["prompt"] for r in on_ray] == SIX and all(r["complete"] for r in on_ray)
    for here, there in zip(local, on_ray, strict=True):
        # The pixels, not the PNG files: a PNG's provenance names the torch thread count (2 here, 1 a worker).
        assert [(g["seed"], g["pixels_sha256"], g["suggested"], g["in_clique"]) for g in there["generations"]] == \
            [(g["seed"], g["pixels_sha256"], g["suggested"], g["in_clique"]) for g in here["generations"]]
        assert all(g["pixels_sha256"] for g in there["generations"])
        assert (there["clique_size"], there["flagged"]) == (here["clique_size"], here["flagged"])
        assert there["wen_score"] == pytest.approx(here["wen_score"], rel=1e-5)
    assert _candidates(book) == _candidates(local_book)
    runs, local_runs = _scan_runs(book), _scan_runs(local_book)
    for prompt in SIX:  # one finished run a prompt, naming the same model and index, with the same counts
        (run,), (local_run,) = runs[prompt], local_runs[prompt]
        assert run.finished and run.n_finished == 2 and run.findings == local_run.findings
        assert (run.model_sha256, run.index, run.clique_size, run.near_copies) == \
            (local_run.model_sha256, local_run.index, local_run.clique_size, local_run.near_copies)


def test_a_worker_killed_in_the_middle_leaves_every_generation_recorded_exactly_once(local_ray, tmp_path,
                                                                                      monkeypatch):
    from inspector.scan_ray import GENERATING, WORKER_LOST, ray_scan

    prompts = DEMO_PROMPTS["memorized"]
    n = 3
    recorded: Counter = Counter()
    record_generation = ScanState.record_generation

    def counting(self, prompt, item, attempt):
        recorded[prompt, item.seed] += 1
        return record_generation(self, prompt, item, attempt)

    monkeypatch.setattr(ScanState, "record_generation", counting)
    killed: list[tuple[int, str]] = []
    events = []

    def kill_a_worker_after_its_first_image(event) -> None:
        events.append(event)
        if not killed and event.stage == GENERATING and event.pid:
            os.kill(event.pid, signal.SIGKILL)  # its prompt has 1 of 3 images recorded
            killed.append((event.pid, event.prompt))

    book = tmp_path / "casebook.db"
    results = list(ray_scan(prompts, book, workers=2, n=n, steps=2, prompts_file=tmp_path / "prompts.txt",
                            progress=kill_a_worker_after_its_first_image))

    assert killed, "no worker was killed"
    lost = [e for e in events if e.stage == WORKER_LOST]
    assert [(e.pid, e.prompt) for e in lost] == killed
    assert all(r["complete"] for r in results) and [r["prompt"] for r in results] == prompts
    assert recorded == Counter({(p, s): 1 for p in prompts for s in range(n)}), "a generation recorded twice or lost"
    for r in results:
        assert sorted(g["seed"] for g in r["generations"]) == list(range(n))
    keys = [c[-1] for c in _candidates(book)]
    assert len(keys) == len(set(keys)), "a finding was recorded twice"
    runs = _scan_runs(book)
    assert {p: [(r.finished, r.n_finished) for r in runs[p]] for p in prompts} == {p: [(True, n)] for p in prompts}


def test_the_prefilter_on_ray_scores_every_prompt_and_generates_only_for_the_top_k(local_ray, tmp_path,
                                                                                   monkeypatch):
    from inspector.casebook import Casebook
    from inspector.prefilter import Prefilter, PrefilterSettings
    from inspector.scan_ray import ray_scan

    generated: Counter = Counter()
    record_generation = ScanState.record_generation

    def counting(self, prompt, item, attempt):
        generated[prompt] += 1
        return record_generation(self, prompt, item, attempt)

    monkeypatch.setattr(ScanState, "record_generation", counting)
    book, prompts_file = tmp_path / "casebook.db", tmp_path / "prompts.txt"
    state = ScanState.for_scan(book, prompts_file, scan_settings(n=2, steps=2))
    prefilter = Prefilter.open(state, PrefilterSettings(top=2), resume=False)
    results = list(ray_scan(SIX, book, workers=2, n=2, steps=2, prompts_file=prompts_file, prefilter=prefilter))

    scores = {p: prefilter.scores[p]["score"] for p in SIX}
    top = sorted(SIX, key=lambda p: -scores[p])[:2]
    assert [r["prompt"] for r in results] == top and all(r["complete"] for r in results)
    assert generated == Counter({p: 2 for p in top}), "generated for a prompt outside the top K"
    assert set(top) <= set(DEMO_PROMPTS["memorized"]), scores  # the demo's copied prompts score highest
    with Casebook.open(book) as cb:
        scored = {r.prompt: r for r in cb.runs(kind="scan") if r.settings.get("prefilter")}
    assert {p: (r.wen_score, r.n_requested, r.finished) for p, r in scored.items()} == \
        {p: (scores[p], 0, True) for p in SIX}
    assert {p: r["score"] for p, r in Prefilter(state, prefilter.settings).scores.items()} == scores  # on disk


def test_a_worker_that_cannot_open_the_index_is_named_in_one_line(local_ray, tmp_path):
    from inspector.errors import UserError
    from inspector.scan_ray import ray_scan

    missing = tmp_path / "no-such-index"
    with pytest.raises(UserError, match=r"^a Ray worker could not start: index folder not found: .*no-such-index"):
        list(ray_scan(["the cameraman"], tmp_path / "casebook.db", workers=1, n=1, steps=1, index=str(missing),
                      prompts_file=tmp_path / "prompts.txt"))


def test_a_ray_scan_stopped_midway_resumes_without_ray_making_only_the_images_not_recorded(local_ray, tmp_path,
                                                                                         monkeypatch):
    import threading

    from inspector.errors import UserError
    from inspector.scan_ray import GENERATING, ray_scan

    prompts, n = DEMO_PROMPTS["memorized"][:2], 3
    recorded: Counter = Counter()
    record_generation = ScanState.record_generation

    def counting(self, prompt, item, attempt):
        recorded[prompt, item.seed] += 1
        return record_generation(self, prompt, item, attempt)

    monkeypatch.setattr(ScanState, "record_generation", counting)
    cancel = threading.Event()

    def stop_after_two_images(event) -> None:
        if event.stage == GENERATING and event.done >= 2:
            cancel.set()

    book, prompts_file = tmp_path / "casebook.db", tmp_path / "prompts.txt"
    first = list(ray_scan(prompts, book, workers=2, n=n, steps=2, prompts_file=prompts_file, cancel=cancel,
                          progress=stop_after_two_images))
    assert [r["prompt"] for r in first] == prompts and not all(r["complete"] for r in first)
    made_on_ray = sum(recorded.values())
    assert 2 <= made_on_ray < len(prompts) * n
    with pytest.raises(UserError, match="--resume"):
        next(scan(prompts, book, n=n, steps=2, prompts_file=prompts_file))

    second = list(scan(prompts, book, n=n, steps=2, prompts_file=prompts_file, resume=True))
    assert all(r["complete"] for r in second)
    assert recorded == Counter({(p, s): 1 for p in prompts for s in range(n)}), "an image was made twice"
    assert sum(r["made_now"] for r in second if not r.get("resumed")) == len(prompts) * n - made_on_ray
    runs = _scan_runs(book)
    assert all(runs[p][-1].finished and runs[p][-1].n_finished == n for p in prompts)
