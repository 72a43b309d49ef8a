"""A scan on a Ray cluster: the same scan as :func:`inspector.scan.scan`, its generations made by Ray actors.

Where each part runs, and why:

- **Workers** (Ray actors: one per GPU where the cluster has GPUs, else ``--workers`` W with cores / W torch
  threads each) load the model and open the index once, when they start. A worker takes one prompt at a time:
  it makes the prompt's seeds not yet recorded, finds each generation's nearest training images, and sends each
  generation back the moment it is made (a streaming actor generator: one message per image), then the prompt's
  summary (clique, Wen score, word notes) with its candidates in full.
- **The nearest-neighbour step runs on the workers**, which open the index read-only from a path every node can
  read (a shared file system, or the same folder copied to each node). Why not the driver: an exact query
  re-ranks its candidates on their pixels (a few hundred milliseconds of one core for a 256 px generation), so
  the paper's 175 million generations would be years of one driver's core, and the driver would need every
  generation's pixels and the candidates' from the index. On the workers the queries scale with them, and an
  index is safe to open from many processes (FAISS files and row files read, SQLite opened read-only).
- **The driver** (this process) is the only writer of the scan folder and the casebook: it records each
  generation (:meth:`ScanState.record_generation`) as its message arrives, starts and finishes each prompt's run
  and writes the candidates (:func:`inspector.scan.complete_prompt`). The scan folder is the local scan's, so a
  Ray scan resumes a local one and the other way round, and ``--resume`` works exactly as for a local scan.

Faults: a worker that dies (its process killed, its node lost) ends its stream with an actor error. Its prompt
goes back to the front of the queue and the next free worker (another one, or the same one restarted by Ray,
``max_restarts``) is sent the seeds already recorded (their PNGs: brought back and queried again, as a local
resume does) and makes only the others. No generation is recorded twice: the driver records a seed only when the
scan folder does not have it. The driver killed is the ordinary ``--resume``; Ray ends the actors with it.

Sampling is batch-invariant and thread-count-invariant, so a Ray scan records the same pixels, hence the same
candidates, as a local scan of the same prompts and settings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.errors import UserError
from inspector.prefilter import (
    PREFILTER_CHUNK,
    Prefilter,
    PrefilterSettings,
    prefilter_facts,
    prefilter_progress,
    score_prompt,
)
from inspector.progress import Progress, ProgressCallback, no_progress
from inspector.resources import DEMO
from inspector.scan import (
    PLAN,
    PROMPT_DONE,
    ScanProgress,
    ScanState,
    bring_back,
    candidates,
    complete_prompt,
    finish_prompt_run,
    prompt_request,
    prompt_run,
    run_facts,
    scan_settings,
    unfinished_result,
)
from inspector.session import INDEXES, MODELS, Inspected, inspect_generations, open_index, summarize_prompt

#: Torch threads per worker when the cluster has no GPUs and ``--workers`` is not given: cores / 4 workers.
THREADS_PER_CPU_WORKER = 4
#: Times Ray restarts a dead worker (its model loaded again) before the scan goes on without it.
MAX_RESTARTS = 3
#: Times one prompt may be lost with its worker before the scan stops (a prompt that kills every worker).
MAX_ATTEMPTS = 4
#: Seconds the driver waits for a message before it looks at the stop request again.
POLL_SECONDS = 0.25
#: Seconds between two questions to a restarting worker: is it back?
RESTART_POLL_SECONDS = 1.0

_NO_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)

#: The stages of a Ray scan's own events (beside the local scan's plan and "prompt done", and the prefilter's).
STARTING, CONNECTED, GENERATING, WORKER_LOST = "starting workers", "cluster", "generating", "worker lost"


@dataclass(frozen=True)
class ClusterProgress(ScanProgress):
    """A Ray scan's event, for the whole cluster. ``stage``: :data:`CONNECTED` once (``message``: the workers
    and the cluster, in words); :data:`GENERATING` after each image recorded (``done`` / ``total``: images this
    run made / has to make; ``message``: prompts done, the rate, workers alive; ``prompt``, ``worker``, ``pid``,
    ``seed``: the image's); :data:`WORKER_LOST` when a worker dies (``message`` in words)."""

    workers: int = 0  # workers still given work
    workers_alive: int = 0  # of those, the ones that answered since their latest failure
    rate: float | None = None  # images a second over the cluster
    worker: int | None = None  # 0-based
    pid: int | None = None
    seed: int | None = None


def _slim(item: Inspected, *, png: bool) -> Inspected:
    """The generation without what the driver does not need of it: its pixels, its neighbours' pixels and
    thumbnails (and, with ``png`` False, its PNG, already recorded)."""
    return dataclasses.replace(
        item, image=_NO_PIXELS, png=item.png if png else b"",
        neighbours=[dataclasses.replace(nb, pixels=None, pixels_png=None, thumbnail_png=None)
                    for nb in item.neighbours])


def _with_thumbnails(item: Inspected) -> Inspected:
    """A candidate with its neighbours' thumbnails as bytes, read here, where the index is: the driver may not
    see the index's folder, and the casebook keeps the thumbnails in the file."""
    for nb in item.neighbours:
        if nb.thumbnail and nb.thumbnail_png is None:
            try:
                with open(nb.thumbnail, "rb") as f:
                    nb.thumbnail_png = f.read()
            except OSError:
                pass  # the casebook logs a missing thumbnail and keeps the finding, as it does locally
    return item


class ScanWorker:
    """The work of one Ray actor (a plain class: :func:`_actor_class` makes it remote). No casebook, no files."""

    def __init__(self, model: str, index: str, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.model, self.index = model, index
        MODELS.get(model)  # once per worker, before the first prompt
        INDEXES.get(index)

    def pid(self) -> int:
        return os.getpid()

    def scan_prompt(self, prompt: str, settings: dict[str, Any], have: dict[int, bytes]) -> Iterator[tuple]:
        """Messages, in order: ``("facts", run facts + pid)``, ``("generation", slim Inspected)`` for each seed
        not in ``have`` (seed -> recorded PNG), then ``("summary", PromptSummary, items)``: every generation in
        position order, the candidates in full, the others slim."""
        request = prompt_request(settings, prompt)
        yield "facts", {**run_facts(self.model, self.index, request), "pid": os.getpid()}
        seeds = [request.seed + i for i in range(request.n)]
        missing = [s for s in seeds if s not in have]
        items: dict[int, Inspected] = {}
        if missing:
            for item in inspect_generations(self.model, self.index, request, seeds=missing):
                items[item.seed] = item
                yield "generation", _slim(item, png=True)
        for s, png in have.items():
            items[s] = bring_back(self.index, request, s, png)
        ordered = [items[s] for s in seeds]
        summary = summarize_prompt(self.model, request, ordered, index_source=self.index)
        chosen = {id(i) for i in candidates(ordered, summary)}
        yield "summary", summary, [_with_thumbnails(i) if id(i) in chosen else _slim(i, png=False) for i in ordered]

    def prefilter(self, prompts: list[str], settings: PrefilterSettings, seed: int, steps: int | None,
                  guidance: float | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The prefilter scores of ``prompts`` and the facts their runs name."""
        facts = prefilter_facts(self.model, seed=seed, steps=steps, guidance=guidance)
        return facts, [score_prompt(self.model, p, settings, seed=seed, steps=steps, guidance=guidance)
                       for p in prompts]


def _actor_class(ray: Any) -> Any:
    return ray.remote(ScanWorker)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise UserError("--ray needs Ray: pip install 'memorization-inspector[ray]' (the same Ray version as the "
                        "cluster's)") from None
    return ray


@dataclass
class Cluster:
    """The scan's workers on a Ray cluster, and what the driver knows of each."""

    ray: Any
    actors: list[Any]
    gpus: int
    threads: int
    address: str
    pids: dict[int, int] = field(default_factory=dict)  # worker -> process id, from its latest message
    alive: set[int] = field(default_factory=set)  # workers that answered since their latest failure
    failures: dict[int, int] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)  # restarts used up: no more work for them
    #: Workers Ray is restarting: (the ping that asks whether it is back, or None; when to ask again).
    restarting: dict[int, tuple[Any, float]] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def connect(cls, address: str | None, workers: int | None, model: str, index: str,
                threads: int | None = None) -> Iterator[Cluster]:
        """Join the cluster at ``address`` (``auto``: the one this machine belongs to; ``host:port``, or
        ``ray://host:10001`` with Ray's client), or start one on this machine (``local`` or None; a Ray
        already started in this process is used as it is). Starts the workers; on leaving, ends them and
        disconnects (stopping the cluster only when it was started here). ``threads``: torch threads per worker
        (default: the cluster's CPUs / workers, at most one node's)."""
        ray = _import_ray()
        model, index = _shared_path(model), _shared_path(index)
        if index == DEMO:  # built here first, so that the workers on this machine do not all build it at once
            open_index(DEMO).close()
        in_main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if in_main else None
        connected_here = False
        if not ray.is_initialized():
            target = address or None  # None: RAY_ADDRESS, else a cluster `ray start`ed here, else a new local one
            try:
                ray.init(address=target, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from None
            connected_here = True
            if in_main and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)  # ray.init takes SIGTERM over; the scan stops cleanly on it
        actors: list[Any] = []
        try:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
            # A worker must fit on one node: the head node's CPUs are in the total but hold no GPU.
            node_cpus = max([int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
                            or [cpus])
            count = workers or gpus or max(1, cpus // THREADS_PER_CPU_WORKER)
            if gpus and count > gpus:
                raise UserError(f"--workers {count} is more than the cluster's {gpus} GPUs: one worker a GPU")
            if not gpus and count > cpus:
                raise UserError(f"--workers {count} is more than the cluster's {cpus} CPUs")
            threads = threads or max(1, min(cpus // count, node_cpus))
            # On GPUs a worker's CPU threads only search the index and write PNGs: one reserved CPU is enough.
            remote = _actor_class(ray).options(num_cpus=1 if gpus else threads, num_gpus=1 if gpus else 0,
                                               max_restarts=MAX_RESTARTS, max_task_retries=0)
            actors = [remote.remote(model, index, threads) for _ in range(count)]
            yield cls(ray=ray, actors=actors, gpus=gpus, threads=threads, address=address or "default")
        finally:
            for actor in actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone with its node: nothing left to end
                    pass
            if connected_here:
                ray.shutdown()
            if in_main and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)

    def wait_ready(self, cancel: threading.Event | None, report: ProgressCallback) -> bool:
        """Wait until every worker has loaded the model and opened the index (an autoscaling cluster may first
        have to start its nodes); False when ``cancel`` was set meanwhile.

        Raises
        ------
        UserError
            When a worker could not start: the model or index path is not there on its node, say.
        """
        waiting = {actor.pid.remote(): k for k, actor in enumerate(self.actors)}
        report(Progress(STARTING, done=0, total=len(self.actors), fraction=0.0))
        while waiting:
            if cancel is not None and cancel.is_set():
                return False
            ready, _ = self.ray.wait(list(waiting), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                worker = waiting.pop(ref)
                try:
                    self.answered(worker, self.ray.get(ref))
                except self.ray.exceptions.RayError as exc:
                    raise _start_error(exc) from None
                report(Progress(STARTING, done=len(self.alive), total=len(self.actors),
                                fraction=len(self.alive) / len(self.actors)))
        return True

    @property
    def usable(self) -> list[int]:
        return [k for k in range(len(self.actors)) if k not in self.gone]

    def answered(self, worker: int, pid: int | None = None) -> None:
        self.alive.add(worker)
        if pid is not None:
            self.pids[worker] = pid

    def free(self, busy: set[int]) -> list[int]:
        """The workers that can take work now: alive (a restarted one once it answers again), not ``busy``."""
        self._poll_restarting()
        return [k for k in self.usable if k in self.alive and k not in busy]

    def lost(self, worker: int, exc: BaseException | None = None) -> None:
        """The worker died: Ray restarts it while it has restarts left (it gets work again once it answers);
        after that, or when Ray says it is dead for good, it gets no more work."""
        self.alive.discard(worker)
        self.failures[worker] = self.failures.get(worker, 0) + 1
        if self.failures[worker] > MAX_RESTARTS or isinstance(exc, self.ray.exceptions.ActorDiedError):
            self._give_up(worker)
        else:
            # Asked at once, a restarting actor answers "unavailable": ask until it is back.
            self.restarting[worker] = (None, time.monotonic())

    def _give_up(self, worker: int) -> None:
        self.gone.add(worker)
        self.restarting.pop(worker, None)
        if not self.usable:
            raise RuntimeError("every Ray worker died (each restarted until Ray gave up): see the cluster's logs")

    def _poll_restarting(self) -> None:
        now = time.monotonic()
        for worker, (ping, due) in list(self.restarting.items()):
            if ping is None:
                if now >= due:
                    self.restarting[worker] = (self.actors[worker].pid.remote(), due)
                continue
            if not self.ray.wait([ping], timeout=0)[0]:
                continue
            try:
                pid = self.ray.get(ping)
            except self.ray.exceptions.ActorDiedError:
                self._give_up(worker)
            except self.ray.exceptions.RayError:
                self.restarting[worker] = (None, now + RESTART_POLL_SECONDS)
            else:
                del self.restarting[worker]
                self.answered(worker, pid)


def _shared_path(source: str) -> str:
    """A model or index given as a path that exists here, made absolute: a worker's folder is not the driver's."""
    return os.path.abspath(source) if source not in (DEMO, "") and os.path.exists(source) else source


def _start_error(exc: BaseException) -> UserError:
    """A worker's failed start in one line: the exception its constructor raised, as that exception says it
    (a cluster cannot pickle the exception itself back, only its text)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", getattr(exc, "error_msg", "") or str(exc))
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    name, _, words = last.partition(": ")
    if name in _user_error_names():
        return UserError(f"a Ray worker could not start: {words}")
    return UserError(f"a Ray worker could not start: {last or type(exc).__name__} (see the cluster's logs)")


def _user_error_names() -> set[str]:
    names, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        names.add(f"{cls.__module__}.{cls.__name__}")
        todo.extend(cls.__subclasses__())
    return names


def _task_error(ray: Any, exc: BaseException, what: str) -> BaseException:
    """The error a worker raised, as this process should raise it: a UserError as itself (one line, exit 2)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        return UserError(str(cause))
    return RuntimeError(f"a Ray worker failed {what}: {cause if cause is not None else exc}")


@dataclass
class ClusterClock:
    """The time a cluster scan has left, from the throughput measured in this run (seconds throughout).

    The rates are counted from the first image (or prompt) received, so the workers' start-up is not in them:
    images a second over all workers, prompts a second likewise. The estimate is the larger of (images left /
    image rate) and (prompts left / prompt rate): the image rate alone misses each prompt's clique and Wen score
    after its last image, the prompt rate alone is coarse while few prompts have finished.
    """

    images_left: int
    prompts_left: int
    images_made: int = 0
    prompts_made: int = 0
    _first_image: float | None = None
    _first_prompt_start: float | None = None

    def on_image(self, now: float) -> None:
        if self._first_image is None:
            self._first_image = now
        self.images_made += 1

    def on_prompt(self, now: float) -> None:
        self.prompts_made += 1

    def started(self, now: float) -> None:
        if self._first_prompt_start is None:
            self._first_prompt_start = now

    def image_rate(self, now: float) -> float | None:
        """Images a second over the whole cluster, or None until two images are in."""
        if self._first_image is None or self.images_made < 2 or now <= self._first_image:
            return None
        return (self.images_made - 1) / (now - self._first_image)

    def eta(self, now: float) -> float | None:
        rate = self.image_rate(now)
        if rate is None:
            return None
        left = max(0, self.images_left - self.images_made) / rate
        if self.prompts_made and self._first_prompt_start is not None and now > self._first_prompt_start:
            prompt_rate = self.prompts_made / (now - self._first_prompt_start)
            left = max(left, max(0, self.prompts_left - self.prompts_made) / prompt_rate)
        return left


@dataclass
class _Job:
    """One prompt on its way through the cluster."""

    prompt: str
    index: int  # its place in the scan's prompt list
    run_id: int | None = None
    attempts: int = 0
    recorded: set[int] = field(default_factory=set)  # seeds in the scan folder (the driver is its only writer)
    made_now: set[int] = field(default_factory=set)  # seeds this scan recorded (over all attempts)


def ray_scan(
    prompts: list[str],
    casebook_path: str | os.PathLike,
    *,
    address: str | None = "local",
    workers: int | None = None,
    model: str = DEMO,
    index: str = DEMO,
    n: int = 16,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    resume: bool = False,
    prompts_file: str | os.PathLike = "",
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    prefilter: Prefilter | None = None,
    threads: int | None = None,
) -> Iterator[dict[str, Any]]:
    """:func:`inspector.scan.scan` on a Ray cluster (``address``, ``workers``, ``threads``: see
    :meth:`Cluster.connect`).

    Yields one result per prompt scanned, in order, as the local scan does (finished ones from an earlier run with
    ``"resumed": True``; when ``cancel`` is set, :func:`inspector.scan.unfinished_result` for each prompt not
    finished). With ``prefilter``, every prompt it has no score for is scored first on the same workers, and only
    ``prefilter.selected(prompts)`` are scanned, highest score first. Stopped before the workers were ready or
    while scoring, it yields nothing.

    ``progress`` receives the local scan's :class:`ScanProgress` "plan" and "prompt done" events, the
    prefilter's (:func:`inspector.prefilter.prefilter_progress`) and :class:`ClusterProgress` events.
    """
    settings = scan_settings(model=model, index=index, n=n, seed=seed, steps=steps, guidance=guidance)
    state = ScanState.for_scan(casebook_path, prompts_file, settings)
    if prefilter is None and state.started() and not resume:
        raise UserError(f"a scan of these prompts with these settings was started before: add --resume to "
                        f"continue it, or delete {state.folder} to start again")
    report = progress or no_progress
    with Cluster.connect(address, workers, model, index, threads) as cluster:
        if not cluster.wait_ready(cancel, report):
            return
        each = f"one GPU each of the cluster's {cluster.gpus}" if cluster.gpus else \
            f"{cluster.threads} CPU threads each"
        report(ClusterProgress(CONNECTED, message=f"Ray: {len(cluster.actors)} workers ({each}), cluster "
                                                  f"{cluster.address}", workers=len(cluster.actors)))
        if prefilter is not None:
            if not prefilter_on_cluster(cluster, prefilter, prompts, seed=seed, steps=steps, guidance=guidance,
                                 cancel=cancel, report=report):
                return
            prompts = prefilter.selected(prompts)
        yield from _drive(cluster, state, prompts, settings, cancel, report)


def prefilter_on_cluster(cluster: Cluster, prefilter: Prefilter, prompts: list[str], *, seed: int,
                         steps: int | None, guidance: float | None, cancel: threading.Event | None,
                         report: ProgressCallback) -> bool:
    """Score the prompts the prefilter has no score for, in chunks spread over the workers; False when stopped."""
    ray = cluster.ray
    todo = prefilter.missing(prompts)
    # Chunks hide a call's overhead; a few prompts are still spread over every worker.
    size = max(1, min(PREFILTER_CHUNK, -(-len(todo) // (2 * len(cluster.usable)))))
    chunks = deque(todo[k:k + size] for k in range(0, len(todo), size))
    total, done = len(prompts), len(prompts) - len(todo)
    report(prefilter_progress(done, total, None))
    in_flight: dict[Any, tuple[int, list[str]]] = {}
    started = time.monotonic()
    scored_now = 0
    while chunks or in_flight:
        if cancel is not None and cancel.is_set():
            return False
        # Two chunks a worker: the second waits on the worker while the driver records the first's scores.
        loads = Counter(w for w, _c in in_flight.values())
        for worker in cluster.free({w for w, k in loads.items() if k >= 2}) * 2:
            if not chunks or loads[worker] >= 2:
                continue
            chunk = chunks.popleft()
            ref = cluster.actors[worker].prefilter.remote(chunk, prefilter.settings, seed, steps, guidance)
            in_flight[ref] = (worker, chunk)
            loads[worker] += 1
        if not in_flight:  # every worker restarting
            time.sleep(POLL_SECONDS)
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            worker, chunk = in_flight.pop(ref)
            try:
                facts, records = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                raise _task_error(ray, exc, "scoring prompts") from None
            except ray.exceptions.RayError as exc:
                cluster.lost(worker, exc)
                chunks.appendleft(chunk)
                report(_lost(cluster, worker, f"scoring {len(chunk)} prompts: they go to the next free worker"))
                continue
            cluster.answered(worker)
            prefilter.record(records, facts)
            done += len(records)
            scored_now += len(records)
            report(prefilter_progress(done, total, scored_now / max(time.monotonic() - started, 1e-9),
                                      f"workers {len(cluster.alive)}/{len(cluster.usable)} alive"))
    return True


def _lost(cluster: Cluster, worker: int, doing: str, **fields: Any) -> ClusterProgress:
    pid = cluster.pids.get(worker)
    return ClusterProgress(WORKER_LOST, message=f"worker {worker + 1}{f' (process {pid})' if pid else ''} lost "
                                                f"while {doing}", workers=len(cluster.usable),
                           workers_alive=len(cluster.alive), worker=worker, pid=pid, **fields)


def _drive(cluster: Cluster, state: ScanState, prompts: list[str], settings: dict[str, Any],
           cancel: threading.Event | None, report: ProgressCallback) -> Iterator[dict[str, Any]]:
    """The driver's loop: hand prompts to free workers, record what comes back, yield results in order."""
    ray = cluster.ray
    n = settings["n"]
    results: dict[int, dict[str, Any]] = {}
    queue: deque[_Job] = deque()
    recorded_before = 0
    for k, prompt in enumerate(prompts):
        done = state.result(prompt)
        if done is not None:
            state.tidy(prompt)
            results[k] = {**done, "resumed": True}
        else:
            queue.append(_Job(prompt, k))
            recorded_before += len(state.recorded(prompt))
    images_left = n * len(queue) - recorded_before
    report(ScanProgress(PLAN, total=images_left, fraction=0.0 if images_left else 1.0,
                        message=f"{len(prompts)} prompts x {n} images", prompts=len(prompts),
                        finished=len(results), recorded=recorded_before, images_left=images_left,
                        prompts_left=len(queue)))
    clock = ClusterClock(images_left=images_left, prompts_left=len(queue))
    attempt = uuid.uuid4().hex[:12]
    in_flight: dict[Any, tuple[int, _Job]] = {}  # stream -> (worker, job)
    next_out = 0

    def share() -> float:
        return min(1.0, clock.images_made / images_left) if images_left else 1.0

    def tick(job: _Job, worker: int, seed: int) -> None:
        now = time.monotonic()
        rate = clock.image_rate(now)
        words = f"prompts {len(results)}/{len(prompts)}" + (f", {rate:.2f} images/s" if rate else "") + \
            f", workers {len(cluster.alive)}/{len(cluster.usable)} alive"
        report(ClusterProgress(GENERATING, done=clock.images_made, total=images_left, fraction=share(),
                               eta_s=clock.eta(now), message=words, prompt=job.prompt, prompt_index=job.index,
                               prompts=len(prompts), images_left=images_left, prompts_left=clock.prompts_left,
                               workers=len(cluster.usable), workers_alive=len(cluster.alive), rate=rate,
                               worker=worker, pid=cluster.pids.get(worker), seed=seed))

    def submit(worker: int, job: _Job) -> None:
        job.recorded = set(state.recorded(job.prompt))  # what is on disk now is what the worker need not make
        have = {s: state.png(job.prompt, s) for s in job.recorded}
        job.attempts += 1
        clock.started(time.monotonic())
        stream = cluster.actors[worker].scan_prompt.options(num_returns="streaming").remote(
            job.prompt, settings, have)
        in_flight[stream] = (worker, job)

    while queue or in_flight:
        if cancel is not None and cancel.is_set():  # what was recorded stays for --resume
            for job in [j for _w, j in in_flight.values()] + list(queue):
                if job.run_id is not None:
                    finish_prompt_run(state, job.run_id, None, None, cancelled=len(job.recorded))
            break
        for worker in cluster.free({w for w, _j in in_flight.values()}):
            if not queue:
                break
            submit(worker, queue.popleft())
        if not in_flight:  # every worker restarting
            time.sleep(POLL_SECONDS)
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
        if ready:  # and every other stream with a message waiting: one message each per pass
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
        for stream in ready:
            worker, job = in_flight[stream]
            failure: BaseException | None = None
            try:
                message = ray.get(next(stream))
            except StopIteration:  # the stream ended without its summary: treat as a lost worker
                message = None
            except ray.exceptions.RayTaskError as exc:
                raise _task_error(ray, exc, f"on “{job.prompt}”") from None
            except ray.exceptions.RayError as exc:
                message, failure = None, exc
            if message is None:
                del in_flight[stream]
                cluster.lost(worker, failure)
                if job.attempts >= MAX_ATTEMPTS:
                    raise RuntimeError(f"“{job.prompt}” was lost with its Ray worker {job.attempts} times: see the "
                                       "cluster's logs (out of memory?)")
                queue.appendleft(job)  # first in line again, for the next free worker
                report(_lost(cluster, worker, f"on “{job.prompt[:60]}” with {len(job.recorded)} of its images "
                             "recorded: the prompt goes to the next free worker, which makes only the others",
                             prompt=job.prompt, prompt_index=job.index, prompts=len(prompts)))
                continue
            kind = message[0]
            if kind == "facts":
                cluster.answered(worker, message[1]["pid"])
                if job.run_id is None:
                    job.run_id = prompt_run(state, job.prompt, prompt_request(settings, job.prompt), report,
                                            facts=message[1])
            elif kind == "generation":
                item: Inspected = message[1]
                if item.seed not in job.recorded:  # never twice, whatever a retry sends
                    state.record_generation(job.prompt, item, attempt)
                    job.recorded.add(item.seed)
                    job.made_now.add(item.seed)
                    clock.on_image(time.monotonic())
                tick(job, worker, item.seed)
            elif kind == "summary":
                del in_flight[stream]  # the worker is free: its next prompt queues behind this stream's end
                if queue and worker in cluster.free({w for w, _j in in_flight.values()}):
                    submit(worker, queue.popleft())  # before the casebook writes below, which it need not wait for
                summary, ordered = message[1], message[2]
                records = state.recorded(job.prompt)
                result = complete_prompt(state, ordered, records, summary, job.run_id, made_now=len(job.made_now),
                                         brought_back=n - len(job.made_now))
                results[job.index] = result
                clock.on_prompt(time.monotonic())
                report(ScanProgress(PROMPT_DONE, done=result["generated"], total=n, fraction=share(),
                                    eta_s=clock.eta(time.monotonic()), message=f"prompt {job.index + 1}/"
                                    f"{len(prompts)}", prompt=job.prompt, prompt_index=job.index,
                                    prompts=len(prompts), images_left=images_left, prompts_left=clock.prompts_left,
                                    result=result))
        while next_out in results:
            yield results[next_out]
            next_out += 1
    for k in range(next_out, len(prompts)):
        yield results.get(k) or unfinished_result(prompts[k], n, len(state.recorded(prompts[k])))
