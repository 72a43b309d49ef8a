"""``inspector compare A B``: the four distances between two image files, and a heatmap sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inspector import metrics
from inspector.commands import print_json
from inspector.errors import UserError, write_failure
from inspector.fileio import write_atomic
from inspector.images import ImageLoadError, as_uint8, canonical, load_image


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="distances and a heatmap between two images",
                       description="Compare two images in the canonical form (centre crop, resize, RGB in [0, 1]) "
                                   "at the smallest of --size and the two images' short sides: images are only "
                                   "ever reduced, never enlarged, to compare.")
    p.add_argument("image_a", type=Path, metavar="IMAGE_A")
    p.add_argument("image_b", type=Path, metavar="IMAGE_B")
    p.add_argument("--size", type=int, default=256,
                   help="largest side of the comparison square in pixels (default 256; the smaller image's short "
                        "side when that is smaller)")
    p.add_argument("--heatmap", type=Path, metavar="OUT.png", help="write a side-by-side picture with heatmaps")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 8 <= args.size <= 4096:
        raise UserError(f"--size must be between 8 and 4096 pixels, got {args.size}")
    if args.heatmap is not None and args.heatmap.suffix.lower() != ".png":
        raise UserError(f"--heatmap must name a .png file, got {args.heatmap}")
    a, b = comparison_arrays(args.image_a, args.image_b, args.size)
    size = int(a.shape[0])
    d = metrics.distances(a, b)
    result = {
        "image_a": str(args.image_a),
        "image_b": str(args.image_b),
        "size": size,  # the side actually compared at
        "requested_size": args.size,
        "l2": d.l2,
        "tiled_l2": d.tiled_l2,
        "ssim": d.ssim,
        # Two images alone have no crowd of neighbours: calibrated l2 against the other image is l2 / (0.5 * l2).
        "calibrated_l2": metrics.calibrated_l2(a, b, [b]) if d.l2 > 0 else 0.0,
        "near_copy": d.tiled_l2 <= metrics.EXTRACTION_THRESHOLD,
        "threshold": metrics.EXTRACTION_THRESHOLD,
    }
    if args.heatmap is not None:
        from inspector.heatmap import comparison_sheet

        # The sheet's heatmaps are computed from a and b, the arrays the numbers above came from.
        sheet = comparison_sheet(a, b, args.image_a.name, args.image_b.name, side=max(192, min(size, 320)))
        try:
            write_atomic(args.heatmap, lambda stream: sheet.save(stream, format="PNG"))
        except OSError as exc:
            raise write_failure(exc, args.heatmap) from None
        result["heatmap"] = str(args.heatmap)
    if args.json:
        print_json(result)
    else:
        print(f"compared at   {size} x {size} px" + (f" (the smaller image's short side; --size {args.size})"
                                                          if size < args.size else ""))
        print(f"l2            {d.l2:.4f}   (0 = identical)")
        print(f"tiled l2      {d.tiled_l2:.4f}   {metrics.describe_tiled_l2(d.tiled_l2)}")
        print(f"SSIM          {d.ssim:.4f}   (1 = identical structure)")
        print(f"calibrated l2 {result['calibrated_l2']:.4f}   (against the other image alone)")
        if args.heatmap is not None:
            print(f"heatmap       {args.heatmap}")
    return 0


def comparison_arrays(image_a: Path, image_b: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images in the canonical form (uint8) at the working size: the smallest of ``size`` and the two
    images' short sides, so neither is enlarged (DESIGN.md, "Distances").

    Raises
    ------
    UserError
        When a file is not a usable image, or an image is smaller than 8 px on its short side.
    """
    try:
        a, b = load_image(image_a), load_image(image_b)
    except ImageLoadError as exc:
        raise UserError(str(exc)) from None
    for path, im in ((image_a, a), (image_b, b)):
        if min(im.size) < 8:
            raise UserError(f"{path}: too small to compare ({im.width}x{im.height} px; the short side must be "
                            "at least 8 px)")
    side = min(size, *a.size, *b.size)
    return as_uint8(canonical(a, side)), as_uint8(canonical(b, side))
