"""Batch-invariant sampling: run a pipeline's networks image by image inside a batch.

CPU and GPU kernels (oneDNN convolutions, BLAS matrix products, cuDNN) choose their blocking by the shape of
their input, so the same image computed in a batch of 4 and alone differs by float rounding (about 1e-6), which
after rounding to 8 bits can flip a pixel by one level. For evidence an image must depend on its seed alone.

:func:`per_image_calls` makes that hold by construction. While a pipeline call runs, the denoiser (``unet`` or
``transformer``) and the image decoder (``vae.decode``) are called once per image of the batch, each time with
exactly the rows that image has when it is sampled alone: with classifier-free guidance the pipeline stacks
``[uncond_1 .. uncond_n, cond_1 .. cond_n]``, so image ``i`` gets rows ``i`` and ``n + i``, the same pair (same
values, same shape) that a batch of one passes in one call. Every kernel then sees the shapes and values of the
batch-of-one computation, and the outputs are put back in the pipeline's order. Everything else the pipeline
does between network calls (guidance, the scheduler step) is element-wise, hence the same in any batch.

What it costs: the speed a bigger batch gains from bigger matrix products (about 10-40% on two CPU cores for the
demo model; more on a GPU). Turn it off (``GenerationRequest(batch_invariant=False)``) for throughput; provenance
then records the batch, and reproducing an image replays the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

#: Pipeline attributes whose ``forward`` is split per image (the denoiser of UNet and DiT pipelines).
DENOISERS = ("unet", "transformer")
#: Pipeline attributes whose ``decode`` is split per image (latent decoders).
DECODERS = ("vae", "vqvae", "movq")


@dataclass
class InvarianceState:
    """Set while a pipeline call runs; ``held`` turns False if any network call could not be split per image
    (its batch was not a multiple of the number of images), so the record never claims what did not happen."""

    images: int
    held: bool = True
    calls: int = 0


@contextlib.contextmanager
def per_image_calls(pipe: Any, images: int) -> Iterator[InvarianceState]:
    """Within the ``with`` block, the pipeline's denoiser and decoder compute image by image.

    Parameters
    ----------
    pipe
        A diffusers pipeline (or any object with ``unet``/``transformer`` modules and a ``vae``).
    images
        The number of images the next pipeline call samples (its ``num_images_per_prompt`` for one prompt).

    Yields
    ------
    InvarianceState
        Read ``held`` after the call: True when every network call was split per image.
    """
    state = InvarianceState(images)
    patched: list[tuple[Any, str, Any]] = []
    try:
        for name in DENOISERS:
            module = getattr(pipe, name, None)
            if module is not None and callable(getattr(module, "forward", None)):
                patched.append(_patch(module, "forward", state))
        for name in DECODERS:
            module = getattr(pipe, name, None)
            if module is not None and callable(getattr(module, "decode", None)):
                patched.append(_patch(module, "decode", state))
        yield state
    finally:
        for obj, attr, saved in reversed(patched):
            if saved is _ABSENT:
                obj.__dict__.pop(attr, None)
            else:
                obj.__dict__[attr] = saved


_ABSENT = object()


def _patch(obj: Any, attr: str, state: InvarianceState) -> tuple[Any, str, Any]:
    """Shadow ``obj.attr`` with a per-image version (an instance attribute, removed again on exit)."""
    saved = obj.__dict__.get(attr, _ABSENT)
    original = getattr(obj, attr)  # bound; may itself be a hook that accelerate put on the instance
    obj.__dict__[attr] = _split(original, state)
    return obj, attr, saved


def _split(call: Callable[..., Any], state: InvarianceState) -> Callable[..., Any]:
    def per_image(*args: Any, **kwargs: Any) -> Any:
        import torch

        rows = _batch_rows(args, kwargs)
        n = state.images
        if rows is None or rows % n:
            state.held = False  # not a batch this knows how to split: compute it whole, and say so
            return call(*args, **kwargs)
        state.calls += 1
        if n == 1:
            return call(*args, **kwargs)  # already the batch-of-one computation
        per = rows // n
        groups = [[i + j * n for j in range(per)] for i in range(n)]
        outputs = [call(*_take(args, g, rows), **_take(kwargs, g, rows)) for g in groups]
        order = torch.tensor([r for g in groups for r in g]).argsort()
        return _merge(outputs, order)

    return per_image


def _batch_rows(args: tuple, kwargs: dict) -> int | None:
    """Rows in the call's batch: the first dimension of its first tensor argument (the sample/latents)."""
    import torch

    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return None


def _take(value: Any, rows: list[int], total: int) -> Any:
    """The given batch rows of every tensor (and per-image list) in ``value``; everything else unchanged."""
    import torch

    if isinstance(value, torch.Tensor):
        return value[rows] if value.dim() > 0 and value.shape[0] == total else value
    if isinstance(value, dict):
        return {k: _take(v, rows, total) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, torch.Tensor) for v in value):
            return type(value)(_take(v, rows, total) for v in value)
        if len(value) == total:  # one entry per row, e.g. a list of generators
            return type(value)(value[r] for r in rows)
    return value


def _merge(outputs: list[Any], order: Any) -> Any:
    """Concatenate per-image outputs along the batch and put the rows back in the pipeline's order."""
    import torch

    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs)[order]
    if isinstance(first, tuple):
        return type(first)(_merge([o[i] for o in outputs], order) for i in range(len(first)))
    if hasattr(first, "keys"):  # diffusers' BaseOutput (an ordered dict with attributes)
        return type(first)(**{k: _merge([o[k] for o in outputs], order) for k in first.keys()})
    if first is None:
        return None
    raise TypeError(f"cannot merge per-image outputs of type {type(first).__name__}")
