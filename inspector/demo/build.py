"""``inspector demo build``: rebuild resources/demo (training set, model, prompts, report) deterministically."""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

from inspector.demo import world
from inspector.demo.tokenizer import save_tokenizer, write_known_words
from inspector.demo.train import TrainConfig, load_pixels, make_pipeline, train

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def library_versions() -> dict[str, str]:
    """What trained the demo world, for its build record."""
    from inspector.provenance import PIXEL_LIBRARIES
    from inspector.provenance import library_versions as versions

    return versions((*PIXEL_LIBRARIES, "numpy", "pillow"))


def build(out: Path, cfg: TrainConfig | None = None, log=print) -> Path:
    """Write the whole demo world into ``out`` and return it: training set, model, image embedder (its own step:
    :func:`inspector.demo.embedder.build_embedder`), prompts and report. Takes about two hours on two CPU cores."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log(f"writing the training set to {out / 'training'}")
    pairs = world.build_training_set(out / "training", seed=cfg.seed)
    captions = [c for _, c in pairs]
    (out / "prompts.json").write_text(json.dumps(world.PROMPTS, indent=2) + "\n", encoding="utf-8")
    work = out.parent / (out.name + ".work")
    tokenizer = save_tokenizer(work / "tokenizer", captions)
    pipe = make_pipeline(tokenizer, cfg)
    pixels = load_pixels([p for p, _ in pairs])
    log(f"training on {len(pairs)} images for {cfg.steps} steps of {cfg.batch_size}")
    record = train(pipe, pixels, captions, cfg, work, log=log)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    write_known_words(model_dir / "tokenizer", captions)  # save_pretrained writes the tokenizer's own files only
    record.update(
        {
            "seed": cfg.seed,
            "images": len(pairs),
            "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
            "text_encoder_parameters": sum(p.numel() for p in pipe.text_encoder.parameters()),
            "versions": library_versions(),
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {cfg.threads} threads",
            "build_seconds": time.time() - started,
        }
    )
    (out / "training_record.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    from inspector.demo.embedder import EmbedderConfig, build_embedder

    build_embedder(out, EmbedderConfig(seed=cfg.seed), log=log)
    from inspector.demo.report import write_report

    write_report(out)
    shutil.rmtree(work, ignore_errors=True)
    log(f"demo world written to {out}")
    return out


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else RESOURCES / "demo"
    build(target)
