"""The scale effect (issue 13): small generations that copy a full-resolution training image, compared the old
way (the generation upsampled to the index's 256 px first) and the new way (at the generation's own size, the
training image reduced to it), side by side in one run.

An index at the default comparison size (256) is built from a few scikit-image photographs (coffee 600 x 400,
chelsea, astronaut, rocket, immunohistochemistry, camera). Each is turned into "generations" of 32, 64, 256 and
512 px (centre crop, then PIL's bicubic resize) and queried. Both columns come from the same index code: the old
way is a query of the generation already upsampled to 256 px, which is what the index did before. Prints the
nearest tiled l2 (0.15 is the extraction line), the suggestion, the size compared at, and the median query time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from inspector.extraction import suggest_verdict
from inspector.images import as_uint8, canonical, center_crop_square
from inspector.training_index import TrainingIndex, build_index

IMAGES = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry", "camera")


def photograph(name: str) -> np.ndarray:
    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))


def generation(image: np.ndarray, px: int) -> np.ndarray:
    """A copy of ``image`` as a model making ``px`` px images would produce it: centre crop, resize."""
    return np.asarray(center_crop_square(Image.fromarray(image)).resize((px, px), Image.Resampling.BICUBIC))


def timed_query(index: TrainingIndex, image: np.ndarray, repeats: int) -> tuple[list, float]:
    index.query(image)  # warm: candidates decoded and reduced once, as a page of generations would
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = index.query(image)[0]
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 256, 512])
    ap.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    ap.add_argument("--repeats", type=int, default=5, help="queries timed per generation (median)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        training = Path(tmp) / "training"
        training.mkdir()
        for name in IMAGES:
            Image.fromarray(photograph(name)).save(training / f"{name}.png")
        build_index(training, Path(tmp) / "index", workers=1)
        with TrainingIndex.open(Path(tmp) / "index") as index:
            size = index.comparison_size
            print(f"index at {size} px of {len(index)} photographs; generations are copies of one of them")
            print(f"{'image':<22}{'px':>5}  {'old: upsampled to ' + str(size):<30}{'new: compared at its size':<36}"
                  f"{'query ms old/new':>16}")
            for name in args.images:
                image = photograph(name)
                for px in args.sizes:
                    gen = generation(image, px)
                    old_query = as_uint8(canonical(gen, size)) if px < size else gen
                    old, t_old = timed_query(index, old_query, args.repeats)
                    new, t_new = timed_query(index, gen, args.repeats)
                    own = [n for n in new if Path(n.source).stem == name]
                    found = "" if own and own[0].rank == 1 else "  (nearest 1 is another image!)"
                    print(f"{name:<22}{px:>5}  "
                          f"{f'tiled l2 {old[0].tiled_l2:.3f} {suggest_verdict(old).verdict}':<30}"
                          f"{f'tiled l2 {new[0].tiled_l2:.3f} {suggest_verdict(new).verdict} at {new[0].comparison_size} px':<36}"
                          f"{f'{t_old * 1000:.1f}/{t_new * 1000:.1f}':>16}{found}")


if __name__ == "__main__":
    main()
