"""``inspector demo build --benchmark``: the benchmark world's model, built like the demo's, resumable in legs.

What is shipped (in ``benchmark/`` of the checkout): the model, the image embedder, ``prompts.json`` (every prompt
with its answer by construction), ``world.json`` (seed and pixel digest of the training set) and the training
record. The training images are not shipped: :func:`ensure_training_set` writes them again from the seed (seconds)
and checks their pixel digest against ``world.json``.

Training checkpoints its whole state every 250 steps into ``benchmark.work/`` beside the output; ``--resume`` goes
on from the last checkpoint and ends with the same weights as an uninterrupted run, so the build can run in the
background in legs (``--leg-minutes``).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from inspector.demo import benchmark_world as bw
from inspector.demo.build import library_versions
from inspector.demo.train import TrainConfig, load_pixels, make_pipeline, train

#: Where the benchmark world lives in a checkout (not inside the package: the app does not need it).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "benchmark"
WORLD_FILE = "world.json"


def benchmark_config(seed: int = 0) -> TrainConfig:
    """The benchmark's training recipe: the demo's, for 5000 steps (about an hour on two CPU cores)."""
    return TrainConfig(steps=5000, seed=seed, checkpoint_every=250)


def ensure_training_set(out: Path, seed: int | None = None, log: Callable[[str], None] = print) -> Path:
    """``out/training``, written from the seed when missing, and checked against ``out/world.json`` when that
    exists (a different pixel digest means a different world: the evaluation would be meaningless)."""
    out = Path(out)
    world_file = out / WORLD_FILE
    recorded = json.loads(world_file.read_text(encoding="utf-8")) if world_file.is_file() else None
    if seed is None:
        seed = recorded["seed"] if recorded else 0
    training = out / "training"
    if recorded is not None and recorded["seed"] != seed:
        raise ValueError(f"{world_file} was built with seed {recorded['seed']}, not {seed}")
    if recorded is not None and training.is_dir() and len(list(training.glob("*.png"))) == recorded["images"]:
        return training
    log(f"writing the benchmark training set to {training} (seed {seed})")
    # Written beside, checked, then put in place: a folder with other pixels never stays where it would be used.
    partial = out / "training.partial"
    shutil.rmtree(partial, ignore_errors=True)
    bw.build_training_set(partial, seed=seed)
    digest = bw.pixel_digest(partial)
    if recorded is not None and digest != recorded["pixel_digest"]:
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError(f"the training set written again in {training} differs from the one the benchmark model "
                         f"was trained on ({WORLD_FILE} says {recorded['pixel_digest'][:12]}, now "
                         f"{digest[:12]}): another scikit-image or Pillow version draws other pixels")
    shutil.rmtree(training, ignore_errors=True)
    partial.rename(training)
    pairs = bw.read_training_set(training)
    if recorded is None:
        world = {"seed": seed, "images": len(pairs), "unique_captions": len({c for _, c in pairs}),
                 "pixel_digest": digest, "copies": list(bw.COPIES), "subjects_per_count": bw.SUBJECTS_PER_COUNT,
                 "likeness_crops": bw.LIKENESS_CROPS, "novel_per_kind": bw.NOVEL_PER_KIND}
        world_file.write_text(json.dumps(world, indent=1) + "\n", encoding="utf-8")
    return training


def build_benchmark(out: Path | None = None, cfg: TrainConfig | None = None, *, resume: bool = False,
                    leg_minutes: float | None = None, log: Callable[[str], None] = print) -> Path:
    """Build the benchmark world into ``out`` and return it. Raises :class:`inspector.demo.train.TrainingPaused`
    when ``leg_minutes`` ran out (run again with ``resume``)."""
    from inspector.demo.embedder import EmbedderConfig, build_embedder
    from inspector.demo.tokenizer import save_tokenizer, write_known_words

    out = Path(out or DEFAULT_DIR)
    cfg = cfg or benchmark_config()
    out.mkdir(parents=True, exist_ok=True)
    work = out.parent / (out.name + ".work")
    if not resume:
        (out / WORLD_FILE).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    training = ensure_training_set(out, cfg.seed, log=log)
    pairs = bw.read_training_set(training)
    captions = [c for _, c in pairs]
    (out / "prompts.json").write_text(json.dumps(bw.prompts(cfg.seed), indent=1) + "\n", encoding="utf-8")
    tokenizer = save_tokenizer(work / "tokenizer", captions)
    pipe = make_pipeline(tokenizer, cfg)
    pixels = load_pixels([p for p, _ in pairs])
    log(f"training the benchmark model on {len(pairs)} images for {cfg.steps} steps of {cfg.batch_size}")
    record = train(pipe, pixels, captions, cfg, work, log=log, resume=resume,
                   leg_seconds=None if leg_minutes is None else leg_minutes * 60)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    write_known_words(model_dir / "tokenizer", captions)
    embed_started = time.monotonic()
    build_embedder(out, EmbedderConfig(seed=cfg.seed), work_dir=work / "embedder", log=log)
    record.update({
        "seed": cfg.seed,
        "images": len(pairs),
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "text_encoder_parameters": sum(p.numel() for p in pipe.text_encoder.parameters()),
        "weights_bytes": sum(f.stat().st_size for f in (out / "model").rglob("*.safetensors"))
        + sum(f.stat().st_size for f in (out / "embedder").rglob("*.safetensors")),
        "embedder_seconds": round(time.monotonic() - embed_started, 1),
        "versions": library_versions(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {cfg.threads} threads",
    })
    record["this_leg_seconds"] = round(time.monotonic() - started, 1)
    (out / "training_record.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    log(f"benchmark world written to {out}")
    return out
