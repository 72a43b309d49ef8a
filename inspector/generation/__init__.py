"""The generation engine: load a local diffusers model, sample seeded images, regenerate them from provenance.

Typical use (from a worker thread; nothing here touches Qt)::

    from inspector.generation import GenerationRequest, generate, load_model

    model = load_model("demo")                       # or a folder, a .safetensors file, a cached Hub id
    cancel = threading.Event()
    for image in generate(model, GenerationRequest("a red fox", n=16, seed=0), progress=report, cancel=cancel):
        image.save(out_dir)                          # PNG named by seed, provenance inside

Importing this package is cheap: torch and diffusers load on the first call that needs them.
"""

from __future__ import annotations

from inspector.generation.loading import (
    LoadedModel,
    ModelIdentity,
    ModelLoadError,
    find_in_hub_cache,
    load_model,
    resolve_device,
    resolve_dtype,
)
from inspector.generation.reproduction import (
    ReproduceError,
    ReproduceResult,
    load_recorded_model,
    reproduce,
    request_from_provenance,
)
from inspector.generation.sampling import (
    CancelToken,
    GeneratedImage,
    GenerationError,
    GenerationOutOfMemory,
    GenerationRequest,
    ProgressCallback,
    generate,
    scheduler_names,
    seed_filename,
)

__all__ = [
    "CancelToken",
    "GeneratedImage",
    "GenerationError",
    "GenerationOutOfMemory",
    "GenerationRequest",
    "LoadedModel",
    "ModelIdentity",
    "ModelLoadError",
    "ProgressCallback",
    "ReproduceError",
    "ReproduceResult",
    "find_in_hub_cache",
    "generate",
    "load_model",
    "load_recorded_model",
    "reproduce",
    "request_from_provenance",
    "resolve_device",
    "resolve_dtype",
    "scheduler_names",
    "seed_filename",
]
