"""``inspector generate``: N seeded images of a prompt as PNGs with provenance, or ``--reproduce`` one of them."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from inspector.commands import nonempty, option_words, seed
from inspector.commands.progress import TerminalProgress
from inspector.errors import UserError, check_writable_folder, writing
from inspector.resources import DEMO

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "inspector.manifest/1"

_EPILOG = """\
output:
  DIR/seed_00000000.png, DIR/seed_00000001.png, ...   one PNG per seed, named by its seed; each carries its
                                                      provenance (A1111 'parameters' and 'inspector' JSON chunks)
  DIR/manifest.json                                   file, seed, sha256 and provenance of every image
  Files are written whole (temporary file + rename), and the manifest after each image, so an interrupted run
  leaves only complete files ("complete": false in the manifest).

reproduce:
  inspector generate --reproduce DIR/seed_00000003.png [--model SRC]
  inspector generate --reproduce DIR/manifest.json      (every image it lists)
  regenerates from the recorded provenance (by default with the recorded model) and prints whether the pixels
  match and the largest pixel difference. Exit 0 when all match, 1 when any differs.

examples:
  inspector generate "a photo of a red fox" --n 16 --out foxes
  inspector generate "a castle" --model ~/models/sd15 --steps 30 --guidance 7.5 --device cuda --out castles
  inspector generate "a castle" --model model.safetensors --config ~/models/sd15 --out castles

Exit status: 0 success, 2 bad arguments or a missing/refused model, 1 otherwise (or a reproduce mismatch).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate seeded images of a prompt (PNG + provenance), or reproduce one",
        description="Generate N images of PROMPT, one per seed (seed, seed+1, ...), into DIR with a manifest. "
                    "Models load offline only; pickle weights are refused unless --allow-pickle.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", nargs="?", metavar="PROMPT", help="what to generate (quote it)")
    p.add_argument("--model", metavar="SRC", type=nonempty("a model: demo, a model folder, a .safetensors file or "
                                                         "a cached Hub id"),
                   help="demo (default), a diffusers folder, a .safetensors file, or a Hub id in the local cache")
    p.add_argument("--config", metavar="DIR", help="config folder of a single-file .safetensors checkpoint "
                   "(a diffusers folder of the same architecture); default: the checkpoint's folder")
    p.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    p.add_argument("--seed", type=seed, default=0, help="first seed; image i uses seed + i (default 0)")
    p.add_argument("--steps", type=int, metavar="S", help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, metavar="G", help="guidance scale (default: the model's)")
    p.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    p.add_argument("--scheduler", metavar="NAME",
                   help="a compatible diffusers scheduler, e.g. DDIMScheduler, EulerDiscrete (default: the model's)")
    p.add_argument("--size", metavar="N|WxH", help="image size in pixels (default: the model's native size)")
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="images sampled together (default: 1 on the CPU, 4 on a GPU); the pixels of an image "
                        "do not depend on it")
    p.add_argument("--fast-batches", action="store_true",
                   help="compute each batch in one network call: faster on a GPU, but an image may then differ by "
                        "a level in a few pixels from the same seed sampled alone (reproduce replays the batch)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="auto: cuda, then mps, then cpu (default)")
    p.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto",
                   help="auto: float16 on a GPU, float32 on the CPU (default)")
    p.add_argument("--attention-slicing", action="store_true", help="save memory in attention (slower)")
    p.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles (less memory)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept .ckpt/.bin/.pt/.pth weights, read with torch's weights-only loader "
                        "(refused by default: unpickling can run code)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--overwrite", action="store_true", help="replace the images and manifest already in DIR")
    p.add_argument("--reproduce", type=Path, metavar="PNG",
                   help="regenerate a PNG the inspector wrote (or every image of a manifest.json) and compare")
    p.add_argument("--tolerance", type=int, default=0, metavar="LEVELS",
                   help="--reproduce: largest pixel difference (0-255) still called a match (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.reproduce is not None:
        _quiet_libraries()
        return _reproduce(args)
    from inspector.generation import GenerationError, GenerationRequest

    if args.prompt is None:
        raise UserError("give a PROMPT to generate (or --reproduce PNG)")
    if args.out is None:
        raise UserError("give --out DIR, the folder to write the images and manifest.json into")
    width, height = _parse_size(args.size)
    request = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, n=args.n, seed=args.seed, steps=args.steps,
        guidance=args.guidance, scheduler=args.scheduler, height=height, width=width, batch_size=args.batch_size,
        batch_invariant=not args.fast_batches,
    )
    try:
        request.validate()
    except GenerationError as exc:
        raise UserError(option_words(str(exc))) from None
    out: Path = args.out
    _check_out(out, args.overwrite)
    check_writable_folder(out)  # a read-only or full disk is named now, not after the model loads
    _quiet_libraries()  # imports diffusers (seconds), so after every check that needs no model
    model = _load(args.model or DEMO, args)
    from inspector.generation import generate

    status = TerminalProgress()
    try:
        images = generate(model, request, progress=status)
    except GenerationError as exc:
        raise UserError(option_words(str(exc))) from None
    try:
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror or exc}") from None
    if args.overwrite:
        _clear(out)
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "complete": False,
        "request": asdict(request) | {"seeds": request.seed_list()},
        "model": model.identity.as_dict(),
        "images": [],
    }
    _write_manifest(out, manifest)
    try:
        for image in images:
            image.save(out / image.filename)
            manifest["images"].append({"file": image.filename, "seed": image.seed, "sha256": image.sha256,
                                       "provenance": image.provenance})
            _write_manifest(out, manifest)
            with status.paused():
                print(out / image.filename, flush=True)
    finally:
        status.close()  # the bar leaves the terminal before an error is printed
    manifest["complete"] = True
    _write_manifest(out, manifest)
    print(f"wrote {len(manifest['images'])} images and {MANIFEST} to {out}", file=sys.stderr)
    return 0


def _quiet_libraries() -> None:
    """Library warnings (e.g. "safety checker disabled") are not for the person at the command line."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def _parse_size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m:
        raise UserError(f"--size must be N or WxH in pixels (e.g. 512 or 768x512), got {text!r}")
    w = int(m.group(1))
    return w, int(m.group(2) or w)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and not overwrite and ((out / MANIFEST).exists() or any(out.glob("seed_*.png"))):
        raise UserError(f"{out} already holds generated images: pick a new folder, or pass --overwrite "
                        "to replace them")


def _clear(out: Path) -> None:
    for old in [*out.glob("seed_*.png"), out / MANIFEST]:
        old.unlink(missing_ok=True)


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    from inspector.fileio import write_atomic
    from inspector.provenance import json_safe

    # The provenance's own sanitiser, so a non-finite float is stored as the PNG chunk stores it (tagged).
    text = json.dumps(json_safe(manifest), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(out / MANIFEST, text)


def _load(source: str, args: argparse.Namespace):
    from inspector.generation import load_model

    return load_model(source, device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle,
                      attention_slicing=args.attention_slicing, vae_tiling=args.vae_tiling, config=args.config)


def _reproduce(args: argparse.Namespace) -> int:
    from inspector.generation import ReproduceError, reproduce

    if args.prompt is not None or args.out is not None:
        raise UserError("--reproduce takes no PROMPT and no --out: it regenerates the recorded image")
    path: Path = args.reproduce
    if path.suffix.lower() == ".json":
        entries = _manifest_entries(path)
        base = path.parent
    else:
        entries, base = [path], None
    from inspector.generation import load_recorded_model

    first = entries[0]
    if isinstance(first, dict):
        record = first.get("provenance") if isinstance(first.get("provenance"), dict) else {}
    else:
        record = _read_record(first)
    try:
        # One model for every entry: --model, else the one the first image records.
        model = load_recorded_model(record, args.model, device=args.device,
                                    dtype=None if args.dtype == "auto" else args.dtype,
                                    allow_pickle=args.allow_pickle, config=args.config)
    except ReproduceError as exc:
        raise UserError(str(exc)) from None
    all_match = True
    for entry in entries:
        try:
            result = reproduce(entry, model, base_dir=base, tolerance=args.tolerance)
        except ReproduceError as exc:
            raise UserError(str(exc)) from None
        print(f"{Path(result.reference).name}: {result.summary()}", flush=True)
        all_match &= result.match
    return 0 if all_match else 1


def _read_record(png: Path) -> dict[str, Any]:
    from inspector.provenance import read_provenance

    return read_provenance(png)  # ProvenanceError is a UserError: exit 2 with its message


def _manifest_entries(path: Path) -> list[dict[str, Any]]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable manifest ({exc})") from None
    entries = manifest.get("images") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: lists no images to reproduce")
    return entries
