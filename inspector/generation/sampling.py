"""Seeded sampling: N images of one prompt, streamed image by image, with progress, cancel and provenance.

An image depends on its seed alone: each image gets its own CPU ``torch.Generator`` seeded with its seed, the
diffusers convention (``generator=[torch.Generator("cpu").manual_seed(s) for s in seeds]``), so its initial noise
does not depend on the batch it is sampled in; and by default the networks compute image by image inside a batch
(:mod:`inspector.generation.invariance`), so the arithmetic does not either: batch sizes 1 and 4 give the same
pixels. With ``batch_invariant=False`` a batch is one network call (faster on a GPU); kernels then pick their
blocking by batch shape, which can flip a few pixels by one level, so the provenance records the batch and
:func:`inspector.generation.reproduce` replays it. Every provenance also records the torch thread count.

The thread count: on the CPU, oneDNN's convolutions pick their blocking by the number of threads, so the same seed
sampled with 1 and 2 torch threads could differ by a level in a few pixels (measured on an AMD EPYC: the window,
which keeps a core free, and a command-line scan then recorded the same seed as two findings). While
``thread_invariant`` holds (the default: it follows ``batch_invariant``), CPU sampling runs with oneDNN turned off:
PyTorch's own convolutions (im2col and a GEMM) give the same pixels with any thread count, for about 5% more time
on the demo with per-image calls. The provenance says so (``thread_invariant``); a record without it is
reproduced with oneDNN on and its recorded thread count. GPUs are not affected (oneDNN is a CPU library).

Cancel: pass any object with ``is_set()`` (a ``threading.Event``). It is checked after every denoising step
(through ``callback_on_step_end``) and before every batch. When it is set, the pipeline's ``_interrupt`` flag is
raised (the diffusers convention) and the running batch is abandoned at once, without decoding: its unfinished
images are discarded, images already yielded are kept, and the iterator simply ends. Tell a cancelled run from
a finished one by the token (``cancel.is_set()``) or by counting the images.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inspector.errors import UserError
from inspector.fileio import write_atomic
from inspector.limits import MAX_IMAGES
from inspector.progress import SAMPLING, Progress, ProgressCallback, sampling_fraction

if TYPE_CHECKING:
    from PIL import Image

    from inspector.generation.loading import LoadedModel

#: Largest side in pixels a request may ask for.
MAX_SIDE = 4096
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
#: Default batch size on a GPU; on the CPU it is 1 (batching gains little there).
GPU_BATCH_SIZE = 4
#: How the initial noise is drawn, recorded in every provenance.
NOISE = "torch.Generator('cpu').manual_seed(seed), one generator per image"

# ``progress(event)`` (inspector.progress.ProgressCallback) gets a Progress with stage "sampling" after each
# denoising step of the running batch: ``done`` images of ``total``, ``step`` from 1 to ``steps`` (the
# scheduler's number of denoiser calls), ``fraction`` of the whole request, ``eta_s`` the time left for it (None
# until it can be estimated); and a last event with ``fraction`` 1.0 when every image is made.


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class GenerationError(UserError):
    """Bad generation settings, or sampling failed; the message says what to change."""


class GenerationOutOfMemory(GenerationError):
    """The device ran out of memory while sampling."""


@dataclass
class GenerationRequest:
    """What to generate.

    Attributes
    ----------
    prompt, negative_prompt
        Text; an empty negative prompt means none.
    n
        Number of images, >= 1; their seeds are ``seed, seed + 1, ..., seed + n - 1``.
    seed
        First seed, in [0, 2**63 - 1].
    seeds
        Explicit seeds instead (distinct); then ``n`` and ``seed`` are ignored.
    steps
        Denoising steps in [1, 1000]; ``None``: the model's default.
    guidance
        Classifier-free guidance scale in [0, 100]; ``None``: the model's default.
    scheduler
        A diffusers scheduler class name compatible with the model (``"DDIMScheduler"``, ``"EulerDiscrete"``,
        case-insensitive, the ``Scheduler`` suffix optional); ``None``: the model's own.
    scheduler_config
        The scheduler's full config, as recorded in a provenance (its JSON-safe form is fine: non-finite floats
        are restored, see :func:`scheduler_config_from_record`); used to reproduce exactly.
    height, width
        Image size in pixels; ``None``: the model's native size. Must be a multiple of the model's size step.
    batch_size
        Images sampled together (speed vs memory); ``None``: 1 on the CPU, 4 on a GPU. It never changes an
        image's pixels while ``batch_invariant`` holds.
    batch_invariant
        Run the networks image by image inside a batch, so an image's pixels depend on its seed alone (the
        default). ``False``: one network call per batch, faster on a GPU, but a pixel may then differ by a level
        from the same seed sampled in another batch (see the module docstring).
    thread_invariant
        On the CPU, compute convolutions without oneDNN, so the pixels do not depend on the torch thread count
        either; ``None`` (the default): the same as ``batch_invariant``. Ignored on a GPU.
    """

    prompt: str
    negative_prompt: str = ""
    n: int = 8
    seed: int = 0
    seeds: Sequence[int] | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    scheduler_config: dict[str, Any] | None = None
    height: int | None = None
    width: int | None = None
    batch_size: int | None = None
    batch_invariant: bool = True
    thread_invariant: bool | None = None

    def seed_list(self) -> list[int]:
        """The seeds to sample, one per image, in order."""
        return list(self.seeds) if self.seeds is not None else [self.seed + i for i in range(self.n)]

    def validate(self) -> None:
        """Check the settings that do not depend on the model.

        Raises
        ------
        GenerationError
            With a message naming the setting, its allowed range and the value given.
        """
        if not isinstance(self.prompt, str):
            raise GenerationError(f"the prompt must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.negative_prompt, str):
            raise GenerationError(f"the negative prompt must be text, got {type(self.negative_prompt).__name__}")
        if self.seeds is None:
            _check_int("the number of images (n)", self.n, 1, MAX_IMAGES)
            _check_int("the seed", self.seed, 0, MAX_SEED)
            _check_int("the last seed (seed + n - 1)", self.seed + self.n - 1, 0, MAX_SEED)
        else:
            seeds = list(self.seeds)
            if not seeds:
                raise GenerationError("the list of seeds is empty: give at least one seed")
            for s in seeds:
                _check_int("each seed", s, 0, MAX_SEED)
            if len(set(seeds)) != len(seeds):
                raise GenerationError("the seeds must be distinct (each names one image)")
            if len(seeds) > MAX_IMAGES:
                raise GenerationError(f"at most {MAX_IMAGES} images per request, got {len(seeds)}")
        if self.steps is not None:
            _check_int("the number of steps", self.steps, 1, MAX_STEPS)
        if self.guidance is not None:
            g = self.guidance
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) \
                    or not 0 <= g <= MAX_GUIDANCE:
                raise GenerationError(f"the guidance scale must be a number between 0 and {MAX_GUIDANCE:g}, got {g}")
        for name, side in (("height", self.height), ("width", self.width)):
            if side is not None:
                _check_int(f"the {name}", side, 1, MAX_SIDE)
        if self.batch_size is not None:
            _check_int("the batch size", self.batch_size, 1, MAX_IMAGES)
        if not isinstance(self.batch_invariant, bool):
            raise GenerationError(f"batch_invariant must be True or False, got {self.batch_invariant!r}")
        if self.thread_invariant is not None and not isinstance(self.thread_invariant, bool):
            raise GenerationError(f"thread_invariant must be True, False or None, got {self.thread_invariant!r}")
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or not self.scheduler.strip()):
            raise GenerationError("the scheduler must be a diffusers scheduler class name, e.g. DDIMScheduler")


def _check_int(what: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenerationError(f"{what} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise GenerationError(f"{what} must be between {lo} and {hi}, got {value}")


@dataclass
class GeneratedImage:
    """One generated image, its provenance, and its PNG bytes (which carry the provenance)."""

    index: int  # position in the request, 0-based
    seed: int
    image: Image.Image
    provenance: dict[str, Any]
    png: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        """sha256 of the PNG bytes."""
        return hashlib.sha256(self.png).hexdigest()

    @property
    def filename(self) -> str:
        return seed_filename(self.seed)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the PNG to ``path`` (a file, or a folder to put :attr:`filename` in), atomically."""
        target = Path(path)
        if target.is_dir():
            target = target / self.filename
        write_atomic(target, self.png)
        return target


def seed_filename(seed: int) -> str:
    """The file name of a seed's image, e.g. ``seed_00000003.png``."""
    return f"seed_{seed:08d}.png"


# ------------------------------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float | None
    height: int
    width: int
    batch_size: int
    batch_invariant: bool
    thread_invariant: bool  # CPU convolutions without oneDNN (False on a GPU: nothing to turn off)
    scheduler: Any  # a fresh scheduler to use, or None for the model's own
    call_params: frozenset[str]


def _plan(model: LoadedModel, request: GenerationRequest) -> _Plan:
    """Validate ``request`` against ``model`` and fill in the model's defaults (no sampling).

    Raises
    ------
    GenerationError
        For any setting out of range or not supported by this model.
    """
    request.validate()
    pipe = model.pipeline
    if pipe is None:
        raise GenerationError("this model has been released; load it again")
    params = frozenset(inspect.signature(pipe.__call__).parameters)
    if "generator" not in params or "num_images_per_prompt" not in params:
        raise GenerationError(f"{type(pipe).__name__} cannot be seeded per image, so its images could not be "
                              "reproduced; pick another model")
    if request.negative_prompt and "negative_prompt" not in params:
        raise GenerationError(f"{type(pipe).__name__} takes no negative prompt; leave it empty")
    native = model.native_size
    height = request.height or native
    width = request.width or native
    if model.fixed_size and (height, width) != (native, native):
        raise GenerationError(f"this model only makes {native}x{native} images, got {width}x{height}")
    if height % model.size_step or width % model.size_step:
        raise GenerationError(f"height and width must be multiples of {model.size_step} pixels for this model "
                              f"(native {native}), got {width}x{height}")
    seeds = request.seed_list()
    guidance = model.default_guidance if request.guidance is None else float(request.guidance)
    if guidance is not None and "guidance_scale" not in params:
        guidance = None
    return _Plan(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seeds=seeds,
        steps=model.default_steps if request.steps is None else request.steps,
        guidance=guidance,
        height=height,
        width=width,
        batch_size=min(_batch_size(model, request), len(seeds)),
        batch_invariant=request.batch_invariant,
        thread_invariant=_thread_invariant(model, request),
        scheduler=_scheduler(model, request),
        call_params=params,
    )


_onednn_lock = threading.Lock()
_onednn_off = 0  # samplings running now that need oneDNN off
_onednn_before = True  # the switch as the first of them found it


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """oneDNN off while any thread-invariant sampling runs. The switch is global to the process (not per thread),
    so it is counted: the first sampling turns it off, the last one to end turns it back on, and one ending never
    turns it on under another that is still running. (``torch.backends.mkldnn.flags`` would restore it at once
    and warn about TF32 on every call.)"""
    import torch

    global _onednn_off, _onednn_before
    with _onednn_lock:
        if _onednn_off == 0:
            _onednn_before = bool(torch.backends.mkldnn.enabled)
            torch.backends.mkldnn.enabled = False
        _onednn_off += 1
    try:
        yield
    finally:
        with _onednn_lock:
            _onednn_off -= 1
            if _onednn_off == 0:
                torch.backends.mkldnn.enabled = _onednn_before


def _thread_invariant(model: LoadedModel, request: GenerationRequest) -> bool:
    wanted = request.batch_invariant if request.thread_invariant is None else request.thread_invariant
    return bool(wanted) and model.device == "cpu"


def _batch_size(model: LoadedModel, request: GenerationRequest) -> int:
    if request.batch_size is not None:
        return request.batch_size
    return 1 if model.device == "cpu" else GPU_BATCH_SIZE


def scheduler_names(model: LoadedModel) -> list[str]:
    """Class names of the diffusers schedulers that can replace this model's scheduler.

    A scheduler qualifies when diffusers lists it as compatible with the model's own, its libraries are
    installed, and it can turn what the model predicts (its ``prediction_type``) into a sample: PNDM and Euler
    ancestral, for example, cannot sample the demo model, which predicts the clean image (``"sample"``).
    """
    return sorted(c.__name__ for c in _compatible_classes(model)
                  if _prediction_problem(c, model.base_scheduler.config) is None)


def _compatible_classes(model: LoadedModel) -> list[type]:
    base = model.base_scheduler
    return [c for c in {type(base), *getattr(base, "compatibles", [])} if isinstance(c, type)]


#: What each diffusers ``prediction_type`` means, for error messages.
_PREDICTIONS = {"epsilon": "the noise", "sample": "the clean image, x0", "v_prediction": "v (velocity)",
                "flow_prediction": "the flow"}


def _prediction_problem(cls: type, config: Any) -> str | None:
    """Why a ``cls`` scheduler built from ``config`` cannot sample the model's predictions, or ``None``.

    Two reasons count: the scheduler does not handle the model's ``prediction_type``, or it needs a library
    that is not installed.

    diffusers schedulers check ``prediction_type`` only inside ``step``, mid-sampling; one step on a 2x2 dummy
    with a fresh scheduler (its own generator, so no global random state is used) finds out up front. Any
    other failure is left to the real run, which reports it in full.
    """
    import torch

    try:
        scheduler = cls.from_config(dict(config))
        scheduler.set_timesteps(10)  # PNDM's Runge-Kutta warm-up needs more than a couple of steps
        t = scheduler.timesteps[0]
        x = torch.zeros(1, 1, 2, 2)
        kwargs = {"generator": torch.Generator("cpu").manual_seed(0)} \
            if "generator" in inspect.signature(scheduler.step).parameters else {}
        scheduler.step(scheduler.scale_model_input(x, t), t, x, **kwargs)
    except ImportError as exc:  # e.g. DPMSolverSDE without torchsde
        return f"{cls.__name__} needs a library that is not installed ({_first_line(exc)})"
    except Exception as exc:  # noqa: BLE001 - only a prediction-type refusal is an answer here
        if "prediction type" not in str(exc).lower().replace("_", " "):
            return None
        kind = config.get("prediction_type") if hasattr(config, "get") else None
        means = f" ({_PREDICTIONS[kind]})" if kind in _PREDICTIONS else ""
        return (f"the model predicts {kind!r}{means}, which {cls.__name__} does not support "
                f"(diffusers: {_first_line(exc)})")
    return None


def scheduler_config_from_record(cls: type, config: Any) -> dict[str, Any]:
    """A recorded scheduler config, ready for ``cls.from_config``, with its non-finite floats restored exactly.

    A tagged ``{"__float__": "-inf"}`` becomes its float wherever it stands (see :mod:`inspector.provenance`).
    Records written before the tag hold the bare strings ``"inf"``, ``"-inf"`` or ``"nan"``: those become
    floats only in a field that ``cls`` declares as a float (by its default or type hint), so a text field
    that happens to read "nan" stays text.
    """
    from inspector.provenance import json_restore, legacy_float

    restored = json_restore(dict(config))
    floats = _float_fields(cls)
    for key, value in restored.items():
        number = legacy_float(value) if key in floats else None
        if number is not None:
            restored[key] = number
    return restored


def _float_fields(cls: type) -> set[str]:
    """Names of the constructor arguments of ``cls`` that take a float (``float`` or ``float | None``)."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return set()
    floats = {"float", "float|None", "None|float", "Optional[float]", "typing.Optional[float]"}
    out = set()
    for name, param in params.items():
        hint = param.annotation
        text = (hint if isinstance(hint, str) else getattr(hint, "__name__", None) if isinstance(hint, type)
                else str(hint)) or ""
        if (isinstance(param.default, float) and not isinstance(param.default, bool)) \
                or text.replace(" ", "") in floats:
            out.add(name)
    return out


def _scheduler(model: LoadedModel, request: GenerationRequest) -> Any:
    """A fresh scheduler for the request, or ``None`` to keep the model's own."""
    if request.scheduler is None and request.scheduler_config is None:
        return None
    import diffusers

    base = model.base_scheduler
    if request.scheduler is None:
        cls = type(base)
    else:
        wanted = request.scheduler.strip().lower().removesuffix("scheduler")
        names = {c.__name__.lower().removesuffix("scheduler"): c.__name__ for c in _compatible_classes(model)}
        if wanted not in names:
            known = {n.lower().removesuffix("scheduler") for n in dir(diffusers) if n.endswith("Scheduler")}
            why = "is not compatible with this model" if wanted in known else "is not a diffusers scheduler"
            raise GenerationError(f"scheduler {request.scheduler!r} {why}; choose one of: "
                                  f"{', '.join(scheduler_names(model))}")
        cls = getattr(diffusers, names[wanted])
    if request.scheduler_config is not None:
        config, whose = scheduler_config_from_record(cls, request.scheduler_config), "the given config"
    else:
        config, whose = dict(base.config), "the model's scheduler config"
    problem = _prediction_problem(cls, config)
    if problem is not None:
        raise GenerationError(f"scheduler {cls.__name__} cannot sample this model: {problem}; choose one of: "
                              f"{', '.join(scheduler_names(model))}")
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise GenerationError(f"cannot build scheduler {cls.__name__} from {whose}: {_first_line(exc)}") from exc


# ------------------------------------------------------------------------------------------------- sampling


class _Interrupted(Exception):
    """Raised from inside the pipeline to abandon a batch at once (cancel, or a failing progress callback)."""


def generate(
    model: LoadedModel,
    request: GenerationRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[GeneratedImage]:
    """Sample the request's images, yielding each as soon as its batch is done, in seed order.

    Parameters
    ----------
    model
        From :func:`inspector.generation.load_model`.
    request
        The prompt and settings; validated here, before anything runs.
    progress
        Called with a :class:`inspector.progress.Progress` (stage "sampling") after every denoising step.
    cancel
        Checked after every step and before every batch; when set, the running batch is discarded and the
        iterator ends (images already yielded stay valid).

    Returns
    -------
    Iterator[GeneratedImage]
        Lazily sampled; nothing runs until the first ``next``.

    Raises
    ------
    GenerationError
        At call time for settings out of range; while iterating, when sampling fails
        (:class:`GenerationOutOfMemory` when the device runs out of memory).
    """
    settings = _plan(model, request)
    return _run(model, settings, progress, cancel)


def _run(model: LoadedModel, p: _Plan, progress: ProgressCallback | None,
         cancel: CancelToken | None) -> Iterator[GeneratedImage]:
    import torch

    from inspector.provenance import library_versions, png_bytes

    versions = library_versions()
    threads = torch.get_num_threads()
    n = len(p.seeds)
    clock = _Clock(n)
    for start in range(0, n, p.batch_size):
        if cancel is not None and cancel.is_set():
            return
        seeds = p.seeds[start:start + p.batch_size]
        batch = _sample_batch(model, p, seeds, clock, progress, cancel)
        if batch is None:
            return
        images, scheduler, nsfw, invariant = batch
        for offset, (seed, image) in enumerate(zip(seeds, images, strict=True)):
            record = _provenance(model, p, seed, image, scheduler, versions, threads, seeds, offset,
                                 nsfw[offset] if nsfw else None, invariant)
            clock.images_done += 1
            yield GeneratedImage(index=start + offset, seed=seed, image=image, provenance=record,
                                 png=png_bytes(image, record))
    if progress is not None:
        progress(Progress(SAMPLING, done=n, total=n, step=clock.steps, steps=clock.steps, fraction=1.0, eta_s=0.0))


@dataclass
class _Clock:
    """Counts finished work for the ETA: image-steps done, over the whole request."""

    n: int
    images_done: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)

    def event(self, step: int, batch: int) -> Progress:
        """The progress event after ``step`` of the running batch of ``batch`` images."""
        return Progress(SAMPLING, done=self.images_done, total=self.n, step=step, steps=self.steps,
                        fraction=sampling_fraction(self.images_done, self.n, step, self.steps, batch),
                        eta_s=self.eta(step, batch))

    def eta(self, step: int, batch: int) -> float | None:
        done = self.images_done * self.steps + step * batch
        if done <= 0 or self.steps <= 0:
            return None
        left = self.n * self.steps - done
        return max(0.0, (time.monotonic() - self.started) / done * left)


def _sample_batch(model: LoadedModel, p: _Plan, seeds: list[int], clock: _Clock,
                  progress: ProgressCallback | None, cancel: CancelToken | None):
    """One pipeline call; ``(images, scheduler, nsfw flags, batch invariant)``, or ``None`` when cancelled."""
    import torch

    from inspector.generation.invariance import per_image_calls

    failure: list[BaseException] = []

    def on_step_end(pipe: Any, i: int, t: Any, tensors: dict) -> dict:
        clock.steps = len(pipe.scheduler.timesteps) or p.steps
        if progress is not None:
            try:
                progress(clock.event(i + 1, len(seeds)))
            except BaseException as exc:  # re-raised as itself below, not as a sampling failure
                failure.append(exc)
        if failure or (cancel is not None and cancel.is_set()):
            pipe._interrupt = True  # diffusers' convention; raising also skips decoding the abandoned batch
            raise _Interrupted
        return tensors

    kwargs: dict[str, Any] = {
        "prompt": p.prompt,
        "num_images_per_prompt": len(seeds),
        "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
        "num_inference_steps": p.steps,
        "output_type": "pil",
    }
    if p.negative_prompt:
        kwargs["negative_prompt"] = p.negative_prompt
    if p.guidance is not None:
        kwargs["guidance_scale"] = p.guidance
    if "height" in p.call_params and "width" in p.call_params:
        kwargs["height"], kwargs["width"] = p.height, p.width
    if "callback_on_step_end" in p.call_params:
        kwargs["callback_on_step_end"] = on_step_end

    with model.lock:
        pipe = model.pipeline
        if pipe is None:
            raise GenerationError("this model has been released; load it again")
        own = pipe.scheduler
        if p.scheduler is not None:
            pipe.scheduler = p.scheduler
        scheduler = pipe.scheduler
        invariance = per_image_calls(pipe, len(seeds)) if p.batch_invariant else contextlib.nullcontext()
        # oneDNN's CPU convolutions depend on the thread count; PyTorch's own do not (module docstring).
        convolutions = _without_onednn() if p.thread_invariant else contextlib.nullcontext()
        try:
            with invariance as state, convolutions:
                result = pipe(**kwargs)
        except _Interrupted:
            if failure:
                raise failure[0] from None
            return None
        except getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError) as exc:  # torch < 2.5: cuda's
            raise _out_of_memory(model, exc) from exc
        except (ValueError, TypeError) as exc:
            if _raised_in_scheduler(exc):
                raise _scheduler_failure(scheduler, p.steps, exc) from exc
            raise GenerationError(f"the model refused these settings: {_first_line(exc)}") from exc
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise _out_of_memory(model, exc) from exc
            if _raised_in_scheduler(exc):
                raise _scheduler_failure(scheduler, p.steps, exc) from exc
            raise GenerationError(f"sampling failed on {model.device} ({model.dtype}): {_first_line(exc)}") from exc
        finally:
            pipe._interrupt = False
            if p.scheduler is not None:
                pipe.scheduler = own
    if "callback_on_step_end" not in p.call_params:
        clock.steps = p.steps
        if progress is not None:
            progress(clock.event(p.steps, len(seeds)))
    images = getattr(result, "images", None)
    if images is None and isinstance(result, tuple):
        images = result[0]
    if not isinstance(images, list) or len(images) != len(seeds):
        raise GenerationError(f"{type(pipe).__name__} did not return {len(seeds)} images; "
                              "is it a text-to-image model?")
    images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    nsfw = getattr(result, "nsfw_content_detected", None)
    invariant = len(seeds) == 1 or (state is not None and state.held and state.calls > 0)
    return images, scheduler, list(nsfw) if isinstance(nsfw, (list, tuple)) else None, invariant


def _raised_in_scheduler(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside a diffusers scheduler (its config or its step), not the networks."""
    deepest: Path | None = None  # the innermost diffusers frame: torch's own frames may lie below it
    tb = exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if "diffusers" in path.parts:
            deepest = path
        tb = tb.tb_next
    return deepest is not None and deepest.parent.name == "schedulers"


def _scheduler_failure(scheduler: Any, steps: int, exc: BaseException) -> GenerationError:
    # Some schedulers need a minimum number of steps (PNDM's Runge-Kutta warm-up: 4), hence the count.
    return GenerationError(f"the scheduler {type(scheduler).__name__} failed with its config at {steps} steps "
                           f"({type(exc).__name__}: {_first_line(exc)}); pick another scheduler or more steps, "
                           "or fix the config")


def _out_of_memory(model: LoadedModel, exc: BaseException) -> GenerationOutOfMemory:
    if model.device == "cuda":
        import torch

        torch.cuda.empty_cache()
    return GenerationOutOfMemory(
        f"out of memory on {model.device}: lower the batch size or the image size, turn on attention slicing "
        f"or VAE tiling, or use --device cpu ({_first_line(exc)})"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _provenance(model: LoadedModel, p: _Plan, seed: int, image: Any, scheduler: Any, versions: dict[str, str],
                threads: int, batch: list[int], index: int, nsfw: bool | None,
                invariant: bool) -> dict[str, Any]:
    from inspector.provenance import PIXELS_RULE, SCHEMA, json_safe, rgb_sha256

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "prompt": p.prompt,
        "negative_prompt": p.negative_prompt,
        "seed": seed,
        "steps": p.steps,
        "guidance": p.guidance,
        "width": image.width,
        "height": image.height,
        "scheduler": {"class": type(scheduler).__name__, "config": json_safe(dict(scheduler.config))},
        "model": model.identity.as_dict(),
        "device": model.device,
        "dtype": model.dtype,
        "options": dict(model.options),
        "batch_size": len(batch),
        "batch": {"seeds": list(batch), "index": index},  # sampled together; see the module docstring
        # True: the pixels do not depend on the batch (per-image network calls, or a batch of one).
        "batch_invariant": invariant,
        "torch_threads": threads,
        # True: CPU convolutions without oneDNN, so the thread count does not change the pixels either.
        "thread_invariant": p.thread_invariant,
        "noise": NOISE,
        "versions": versions,
        "pixels_sha256": rgb_sha256(image),
        "pixels_sha256_rule": PIXELS_RULE,  # records without it used the size-prefixed hash
    }
    if nsfw is not None:
        record["nsfw_content_detected"] = bool(nsfw)
    return record
