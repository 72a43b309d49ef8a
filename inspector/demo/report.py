"""The demo build's training report: a loss-curve picture and a short markdown page beside the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from inspector.heatmap import font
from inspector.metrics import EXTRACTION_THRESHOLD


def loss_curve(points: list[tuple[int, float]], width: int = 640, height: int = 320) -> Image.Image:
    """A line plot of the training loss (log scale) against the step."""
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    f = font(12)
    left, right, top, bottom = 60, width - 15, 25, height - 35
    d.text((left, 5), "training loss (mean squared error, log scale) by step", fill="black", font=f)
    d.rectangle((left, top, right, bottom), outline="black")
    if not points:
        return im
    steps = [s for s, _ in points]
    losses = [max(v, 1e-8) for _, v in points]
    lo, hi = math.log10(min(losses)), math.log10(max(losses))
    if hi - lo < 1e-6:
        hi = lo + 1
    x_max = max(steps)

    def xy(step: int, loss: float) -> tuple[float, float]:
        x = left + (right - left) * step / x_max
        y = bottom - (bottom - top) * (math.log10(loss) - lo) / (hi - lo)
        return x, y

    d.line([xy(s, v) for s, v in zip(steps, losses, strict=True)], fill=(31, 119, 180), width=2)
    for k in range(5):
        v = 10 ** (lo + (hi - lo) * k / 4)
        _, y = xy(1, v)
        d.line((left - 4, y, left, y), fill="black")
        d.text((4, y - 7), f"{v:.4f}", fill="black", font=f)
    for k in range(5):
        s = int(x_max * k / 4)
        x, _ = xy(s, losses[0])
        d.line((x, bottom, x, bottom + 4), fill="black")
        d.text((x - 12, bottom + 8), str(s), fill="black", font=f)
    return im


def write_report(demo: Path) -> None:
    """Write loss_curve.png and TRAINING.md into ``demo`` from its training_record.json."""
    demo = Path(demo)
    record = json.loads((demo / "training_record.json").read_text(encoding="utf-8"))
    loss_curve([tuple(p) for p in record["loss"]]).save(demo / "loss_curve.png")
    cfg = record["config"]
    versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
    lines = [
        "# Demo model: training report",
        "",
        "Written by `inspector demo build` (deterministic: same seed, same code, same library versions and thread",
        "count give the same weights).",
        "",
        f"- training images: {record.get('images')} files (duplicates included), seed {record.get('seed')}",
        f"- steps: {record.get('steps_done')} of batch {cfg['batch_size']}, AdamW lr {cfg['learning_rate']} with "
        f"{cfg['warmup_steps']} warm-up steps and cosine decay, EMA {cfg['ema_decay']}, caption dropout "
        f"{cfg['caption_dropout']}",
        f"- UNet parameters: {record.get('unet_parameters'):,}; text encoder parameters: "
        f"{record.get('text_encoder_parameters'):,}",
        f"- wall time: {record.get('wall_seconds', 0) / 60:.1f} min of training, "
        f"{record.get('build_seconds', 0) / 60:.1f} min in all, on {record.get('machine')}",
        f"- versions: {versions}",
        f"- final loss (mean of the last 50 steps): {record['loss'][-1][1]:.5f}" if record["loss"] else "",
        "",
        "![loss curve](loss_curve.png)",
        "",
    ]
    if (demo / "evaluation.json").exists():
        ev = json.loads((demo / "evaluation.json").read_text(encoding="utf-8"))
        lines += ["## What the model does with each demo prompt", "", _evaluation_table(ev), ""]
    if (demo / "embedder" / "training_record.json").exists():
        lines += _embedder_section(demo)
    (demo / "TRAINING.md").write_text("\n".join(lines), encoding="utf-8")


def _embedder_section(demo: Path) -> list[str]:
    """The image embedder's recipe, cost, calibration and the verdicts the app suggests with it."""
    from inspector.demo.embedder import INPUT_SIZE

    record = json.loads((demo / "embedder" / "training_record.json").read_text(encoding="utf-8"))
    likeness = json.loads((demo / "embedder" / "likeness.json").read_text(encoding="utf-8"))
    cfg = record["config"]
    held = likeness["held_out"]
    size = sum(f.stat().st_size for f in (demo / "embedder").iterdir() if f.is_file())
    lines = [
        "## Image embedder (the likeness signal)",
        "",
        "`embedder/` is a CLIP vision tower (`CLIPVisionModelWithProjection`, loaded by the same code as any CLIP "
        "model) trained by `inspector demo build --embedder-only` to tell one image from another: SimCLR's "
        "NT-Xent loss on two strong augmentations of each image (random resized crops, flips, colour jitter, "
        "blur, noise), the recipe of copy-detection embedders such as SSCD.",
        "",
        f"- architecture: {cfg['num_hidden_layers']} layers, width {cfg['hidden_size']}, {cfg['patch_size']} px "
        f"patches on {INPUT_SIZE} px images, {cfg['projection_dim']}-value embedding; {record['parameters']:,} parameters, "
        f"{size / 1e6:.1f} MB on disk",
        f"- training: {record['images']} unique images ({record['held_out_images']} more held out), "
        f"{record['steps_done']} steps of {cfg['batch_size']} images (two views each), AdamW lr "
        f"{cfg['learning_rate']}, temperature {cfg['temperature']}, seed {cfg['seed']}, {cfg['threads']} thread; "
        f"{record['wall_seconds'] / 60:.1f} min on a shared two-core CPU",
        f"- final loss (mean of the last 50 steps): {record['loss'][-1][1]:.3f}" if record["loss"] else "",
        f"- likeness threshold {likeness['threshold']} on the score \"{likeness['score']}\", calibrated on "
        f"held-out images ({likeness['rule']}): {held['true_positive_rate']:.0%} of {held['positives']} held-out "
        f"crops of the cat above it, {held['false_positive_rate']:.0%} of {held['negatives']} held-out "
        "procedural images",
        "",
    ]
    if (demo / "suggestions.json").exists():
        ev = json.loads((demo / "suggestions.json").read_text(encoding="utf-8"))
        lines += [f"Suggested verdicts with the demo index (seeds 0-{ev['seeds'] - 1}, the app's own path):", "",
                  "| prompt | kind | memorized | likeness? | novel | likeness scores (min-max) |",
                  "|---|---|---|---|---|---|"]
        for r in ev["prompts"]:
            scores = [v for v in r["likeness_scores"] if v is not None]
            span = f"{min(scores):.3f}-{max(scores):.3f}" if scores else "-"
            lines.append(f"| {r['prompt']} | {r['kind']} | {r['memorized']} | {r['likeness?']} | {r['novel']} | "
                         f"{span} |")
        lines.append("")
    return lines


def _evaluation_table(ev: dict) -> str:
    rows = [f"| prompt | kind | seeds | within {EXTRACTION_THRESHOLD:g} of its training image | nearest shows the "
            "subject | median tiled l2 |",
            "|---|---|---|---|---|---|"]
    for r in ev["prompts"]:
        rows.append(
            f"| {r['prompt']} | {r['kind']} | {r['seeds']} | {r['within_threshold']} | "
            f"{r.get('nearest_is_subject', '-')} | {r['median_tiled_l2']:.3f} |"
        )
    rows.append("")
    rows.append(f"Sampling {ev['timing']['images']} images x {ev['timing']['steps']} steps took "
                f"{ev['timing']['seconds']:.2f} s on this CPU.")
    return "\n".join(rows)
