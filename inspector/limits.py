"""How many generations one prompt may ask for, in one place: the window's N field, the ``--n`` of ``generate``,
``inspect``, ``scan`` and ``gui --screenshot``, and the generation engine check these numbers and no others."""

from __future__ import annotations

#: Generations of one prompt (and images of one generation request): Carlini et al. used 500 per prompt; a
#: scan streams its images to disk, so this bounds time, not memory.
MAX_IMAGES = 10_000

#: Generations of one prompt in the window, which keeps every one in memory with its four neighbours' compared
#: pixels (about 2 MB each at Stable Diffusion's 512 px): 500, the paper's number, is about 1 GB.
MAX_WINDOW_IMAGES = 500

