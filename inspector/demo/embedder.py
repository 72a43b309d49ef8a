"""The demo's image embedder: a tiny CLIP vision tower trained here to tell one image from another.

Likeness means one particular subject (this cat), not a category (any colourful squares). Copy-detection
embedders (SSCD, used by Somepalli et al. 2023) learn exactly that with instance discrimination: two strong
augmentations of the same training image (random resized crops, flips, colour jitter, blur, noise) are a positive
pair, every other image in the batch a negative (SimCLR's NT-Xent loss). The result is saved in the transformers
``CLIPVisionModelWithProjection`` format, so the index loads it through the same code as any CLIP model
(:mod:`inspector.training_index.semantic`), with nothing to download.

Deterministic: seeded data order and augmentations, deterministic torch kernels, a fixed number of steps;
training checkpoints every few hundred steps and resumes from the last checkpoint after an interruption.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.fileio import write_atomic
from inspector.training_index.semantic import LIKENESS_FILE

#: Side of the embedder's input in pixels: the demo model's native size, the demo index's comparison size.
INPUT_SIZE = 32
#: Side the training views are cut from (the demo training images are stored at 64 px).
SOURCE_SIZE = 64
#: Pixel normalisation written to preprocessor_config.json and used in training.
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
#: The k tried for the likeness score (training images, duplicates counted, that must look alike:
#: semantic.likeness_score); calibration keeps the one that best separates held-out likeness from novel images.
LIKENESS_KS = (1, 2, 4, 8, 16)


@dataclass
class EmbedderConfig:
    """The recipe: architecture, optimisation and augmentation strengths."""

    steps: int = 600
    batch_size: int = 128  # images per step; each gives two views
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    min_lr_fraction: float = 0.02
    temperature: float = 0.1
    hidden_size: int = 96
    intermediate_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    patch_size: int = 8
    projection_dim: int = 64
    crop_scale: tuple[float, float] = (0.2, 1.0)  # area fraction of a random resized crop
    held_out_fraction: float = 0.1  # unique images never trained on, for calibration
    seed: int = 0
    # One thread: on a shared two-core machine a second thread mostly waits for the other (measured 2-4x slower).
    threads: int = 1
    checkpoint_every: int = 100


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass
class DemoImages:
    """The unique demo training images (duplicates stored once) and what each one is."""

    pixels: np.ndarray  # N x 64 x 64 x 3 uint8, as stored
    sources: list[str]
    subjects: list[str]  # "memorized:<name>", "likeness:chelsea" or "procedural"
    copies: np.ndarray  # how many training files hold each image (duplicates counted)


def demo_images(training: Path) -> DemoImages:
    """Read the demo training folder (PNG + JSON sidecars), keeping one copy of each distinct file."""
    from PIL import Image

    seen: dict[str, int] = {}
    pixels, sources, subjects, copies = [], [], [], []
    for png in sorted(Path(training).glob("*.png")):
        data = png.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            copies[seen[digest]] += 1
            continue
        seen[digest] = len(pixels)
        meta = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        with Image.open(png) as im:
            arr = np.asarray(im.convert("RGB").resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.BICUBIC))
        pixels.append(arr)
        sources.append(meta["source"])
        subjects.append(_subject(meta))
        copies.append(1)
    if not pixels:
        raise FileNotFoundError(f"no demo training images in {training}: run inspector demo build first")
    return DemoImages(np.stack(pixels), sources, subjects, np.asarray(copies, dtype=np.int64))


def _subject(meta: dict) -> str:
    """What a training image shows: the benchmark world says so in its sidecars; the demo's sources tell."""
    kind = meta.get("benchmark_kind")
    if kind is not None:
        return {"duplicated": "memorized:", "likeness": "likeness:"}.get(kind, "procedural") + (
            meta["subject"] if kind != "novel" else "")
    source = meta["source"]
    if source.startswith("procedural"):
        return "procedural"
    if "random crop" in source:
        return "likeness:" + source.split()[0].removeprefix("skimage.data.")
    return "memorized:" + source.removeprefix("skimage.data.")


def split_held_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training ids, held-out ids) of ``n`` images: a seeded random ``fraction`` is held out for calibration."""
    order = np.random.default_rng(seed + 1).permutation(n)
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


# --- augmentations (batched, on tensors, drawn from one torch.Generator) -------------------------------------------


def augment(x: Any, gen: Any, crop_scale: tuple[float, float] = (0.2, 1.0), out: int = INPUT_SIZE) -> Any:
    """Strong random views of a batch: B x 3 x S x S floats in [0, 1] in, B x 3 x out x out in [0, 1] out.

    Random resized crop (area ``crop_scale``, aspect 3/4-4/3) with a horizontal flip half the time, colour jitter
    (brightness, contrast, saturation, hue) 80% of the time, greyscale 10%, Gaussian blur 40% and pixel noise 30%:
    the changes a generation of the same subject goes through (another framing, another tint, a softer image).
    """
    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def u(lo: float, hi: float, shape: tuple[int, ...] = (b,)) -> Any:
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    area = u(*crop_scale)
    ratio = torch.exp(u(math.log(3 / 4), math.log(4 / 3)))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (u(0, 1) * (1 - w) + w / 2) * 2 - 1  # crop centre in [-1, 1] coordinates
    cy = (u(0, 1) * (1 - h) + h / 2) * 2 - 1
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (b, 3, out, out), align_corners=False)
    # From 64 px to 32 px, bilinear sampling of a whole-image view averages 2 x 2 pixels: no aliasing.
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    jitter = (torch.rand(b, generator=gen) < 0.8).float().view(b, 1, 1, 1)
    bright = u(0.7, 1.3).view(b, 1, 1, 1)
    contrast = u(0.7, 1.3).view(b, 1, 1, 1)
    sat = u(0.7, 1.3).view(b, 1, 1, 1)
    hue = u(-0.05, 0.05) * 2 * math.pi
    z = y * bright
    z = (z - z.mean(dim=(1, 2, 3), keepdim=True)) * contrast + z.mean(dim=(1, 2, 3), keepdim=True)
    g = (0.299 * z[:, 0] + 0.587 * z[:, 1] + 0.114 * z[:, 2]).unsqueeze(1)
    z = (z - g) * sat + g
    z = _rotate_hue(z, hue)
    y = jitter * z + (1 - jitter) * y
    to_grey = (torch.rand(b, generator=gen) < 0.1).float().view(b, 1, 1, 1)
    grey = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]).unsqueeze(1).expand_as(y)
    y = to_grey * grey + (1 - to_grey) * y

    sigma = u(0.1, 1.2)
    blur = torch.rand(b, generator=gen) < 0.4
    if bool(blur.any()):
        y = torch.where(blur.view(b, 1, 1, 1), _gaussian_blur(y, sigma), y)
    noisy = (torch.rand(b, generator=gen) < 0.3).float().view(b, 1, 1, 1)
    y = y + noisy * u(0.0, 0.04).view(b, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    return y.clamp(0.0, 1.0)


def _rotate_hue(x: Any, angle: Any) -> Any:
    """Rotate the chroma of B x 3 x H x W RGB by ``angle`` radians per image, in YIQ space."""
    import torch

    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = from_yiq @ rot @ to_yiq  # B x 3 x 3
    return torch.einsum("bij,bjhw->bihw", m, x)


def _gaussian_blur(x: Any, sigma: Any, radius: int = 2) -> Any:
    """Separable Gaussian blur with one sigma (pixels) per image."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # B x K
    k = k.repeat_interleave(c, dim=0)  # B*C x K
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


# --- the model ----------------------------------------------------------------------------------------------------


def make_model(cfg: EmbedderConfig) -> Any:
    """A freshly initialised ``CLIPVisionModelWithProjection`` (seeded by ``cfg.seed``)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(cfg.seed)
    config = CLIPVisionConfig(
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size, projection_dim=cfg.projection_dim,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        image_size=INPUT_SIZE, patch_size=cfg.patch_size, hidden_act="gelu",
    )
    return CLIPVisionModelWithProjection(config)


def normalise(x: Any) -> Any:
    """[0, 1] pixels to the model's input, as preprocessor_config.json says."""
    import torch

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def nt_xent(z1: Any, z2: Any, temperature: float) -> Any:
    """SimCLR's loss: each view must pick its partner out of the 2B - 1 other views (cosine / temperature)."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    n = z1.shape[0]
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)


def lr_at(step: int, cfg: EmbedderConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction)
                                * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# --- training -----------------------------------------------------------------------------------------------------


def train_embedder(pixels: np.ndarray, cfg: EmbedderConfig, work_dir: Path,
                   log: Callable[[str], None] = print) -> tuple[Any, dict]:
    """Train on N x 64 x 64 x 3 uint8 images; return the model (eval mode) and its training record.

    Resumes from ``work_dir/checkpoint.pt`` when one with the same config exists; the result is the same as an
    uninterrupted run (the generator state, optimizer state and loss history are checkpointed).
    """
    import torch

    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    data = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
    model = make_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    record: dict[str, Any] = {"config": asdict(cfg), "loss": [], "images": int(len(pixels)),
                              "wall_seconds": 0.0, "steps_done": 0}
    start_step = 0
    work_dir = Path(work_dir)
    checkpoint = work_dir / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        if state["config"] == json.dumps(asdict(cfg), sort_keys=True):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            record = json.loads(state["record"])
            start_step = int(state["step"])
            log(f"resuming the embedder from step {start_step}")
        else:
            log("ignoring an embedder checkpoint made with another recipe")
    model.train()
    n = data.shape[0]
    began = time.monotonic()
    spent_before = float(record["wall_seconds"])
    running = 0.0
    for step in range(start_step, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        idx = torch.randperm(n, generator=gen)[: cfg.batch_size]
        batch = data[idx]
        v1 = augment(batch, gen, cfg.crop_scale)
        v2 = augment(batch, gen, cfg.crop_scale)
        emb = model(pixel_values=normalise(torch.cat([v1, v2]))).image_embeds
        loss = nt_xent(emb[: len(idx)], emb[len(idx):], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += float(loss.detach())
        if (step + 1) % 50 == 0:
            record["loss"].append([step + 1, running / 50])
            running = 0.0
        done = step + 1
        if done % 250 == 0 or done == cfg.steps:
            elapsed = spent_before + time.monotonic() - began
            last = record["loss"][-1][1] if record["loss"] else float("nan")
            log(f"embedder step {done}/{cfg.steps} loss {last:.4f} lr {lr_at(step, cfg):.2e} "
                f"{elapsed / 60:.1f} min")
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            record["wall_seconds"] = spent_before + time.monotonic() - began
            record["steps_done"] = done
            _save_checkpoint(checkpoint, model, opt, gen, done, cfg, record)
    record["wall_seconds"] = spent_before + time.monotonic() - began
    record["steps_done"] = cfg.steps
    model.eval()
    return model, record


def _save_checkpoint(path: Path, model: Any, opt: Any, gen: Any, step: int, cfg: EmbedderConfig,
                     record: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
             "step": step, "config": json.dumps(asdict(cfg), sort_keys=True), "record": json.dumps(record)}
    write_atomic(path, lambda stream: torch.save(state, stream))  # a crash while saving keeps the previous one


def save_embedder(model: Any, folder: Path) -> Path:
    """Write the model as a transformers CLIP vision folder: config.json, model.safetensors and
    preprocessor_config.json (mean, std and size, as :mod:`inspector.training_index.semantic` reads them)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    pre = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": INPUT_SIZE},
           "do_center_crop": True, "crop_size": {"height": INPUT_SIZE, "width": INPUT_SIZE}, "do_rescale": True,
           "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(MEAN), "image_std": list(STD),
           "resample": 3}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=1) + "\n", encoding="utf-8")
    return folder


# --- calibration ---------------------------------------------------------------------------------------------------


def calibrate(folder: Path, images: DemoImages, held_ids: np.ndarray, log: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """The likeness rule of the embedder in ``folder`` (its k and threshold), from held-out images it never
    trained on.

    Each held-out image plays a generation against every other training image (leave one out), scored as the
    index scores generations (:func:`inspector.training_index.semantic.likeness_score`, duplicates counted):
    held-out crops of the likeness subject (the cat) are positives, new views of a subject that training shows
    many times; held-out procedural images are negatives, new members of a category. For each k in
    :data:`LIKENESS_KS` the margin is the positives' 5th percentile minus the negatives' 99th; the k with the
    widest margin is kept (the smaller on a tie), and its threshold is the midpoint of the two percentiles when
    they are apart, otherwise the score that best separates them (largest true minus false positive rate).
    The embedder is loaded through :class:`SemanticModel`, exactly as an index build loads it.
    """
    from inspector.training_index.semantic import SemanticModel, likeness_score

    model = SemanticModel.load(folder)
    emb = model.embed(canonical_inputs(images.pixels, model.input_size))
    counts = images.copies
    scores: dict[int, dict[str, list[float]]] = {k: {"positive": [], "negative": []} for k in LIKENESS_KS}
    for i in (int(i) for i in held_ids):
        if images.subjects[i] == "procedural":
            kind = "negative"
        elif images.subjects[i].startswith("likeness:"):
            kind = "positive"
        else:
            continue  # a memorized photograph: its duplicates are not held out
        sims = emb @ emb[i]
        others = np.arange(len(sims)) != i
        for k in LIKENESS_KS:
            scores[k][kind].append(likeness_score(sims[others], counts[others], k))
    per_k = {k: {"positive_p5": float(np.percentile(v["positive"], 5)),
                 "negative_p99": float(np.percentile(v["negative"], 99))} for k, v in scores.items()}
    k = max(LIKENESS_KS, key=lambda kk: (round(per_k[kk]["positive_p5"] - per_k[kk]["negative_p99"], 4), -kk))
    pos, neg = np.asarray(scores[k]["positive"]), np.asarray(scores[k]["negative"])
    threshold, rule = _threshold(pos, neg)
    result = {
        "threshold": round(float(threshold), 4),
        "k": int(k),
        "score": f"cosine similarity s such that {k} training images (duplicates counted) are at least s "
                 "similar",
        "rule": rule,
        "held_out": {
            "positives": int(len(pos)), "negatives": int(len(neg)),
            "positive_scores_p5_p50": [round(float(np.percentile(pos, q)), 4) for q in (5, 50)],
            "negative_scores_p50_p99": [round(float(np.percentile(neg, q)), 4) for q in (50, 99)],
            "true_positive_rate": round(float(np.mean(pos > threshold)), 4),
            "false_positive_rate": round(float(np.mean(neg > threshold)), 4),
            "definition": "leave-one-out scores of held-out images against all other demo training images: "
                          "positives are held-out crops of the likeness subject, negatives held-out procedural "
                          "images",
        },
        "margin_by_k": {str(kk): round(v["positive_p5"] - v["negative_p99"], 4) for kk, v in per_k.items()},
    }
    rates = result["held_out"]
    log(f"likeness: k {k}, threshold {result['threshold']}: held-out likeness {rates['true_positive_rate']:.0%} "
        f"above it, held-out novel {rates['false_positive_rate']:.0%}")
    return result


def _threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, str]:
    high_neg, low_pos = float(np.percentile(neg, 99)), float(np.percentile(pos, 5))
    if high_neg < low_pos:
        return (high_neg + low_pos) / 2, "midpoint of the negatives' 99th and the positives' 5th percentile"
    candidates = np.unique(np.concatenate([pos, neg]))
    best = max(candidates, key=lambda t: (np.mean(pos > t) - np.mean(neg > t), t))
    return float(best), "largest true minus false positive rate (the percentiles overlap)"


def canonical_inputs(pixels: np.ndarray, size: int) -> np.ndarray:
    """N x S x S x 3 uint8 images reduced to the embedder's input as the index reduces them (bicubic)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BICUBIC,
                                                           reducing_gap=None)) for p in pixels])


# --- the whole step -----------------------------------------------------------------------------------------------


def build_embedder(demo: Path, cfg: EmbedderConfig | None = None, work_dir: Path | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Train the demo embedder on ``demo/training``, calibrate its likeness threshold on the held-out images, and
    write it to ``demo/embedder`` with its training record. Returns the embedder folder.

    ``work_dir`` keeps the checkpoints (default: ``demo.work/embedder`` beside ``demo``); it is removed when the
    embedder is written, and a run interrupted before that resumes from it.
    """
    cfg = cfg or EmbedderConfig()
    demo = Path(demo)
    work = Path(work_dir) if work_dir is not None else demo.parent / (demo.name + ".work") / "embedder"
    images = demo_images(demo / "training")
    train_ids, held_ids = split_held_out(len(images.pixels), cfg.held_out_fraction, cfg.seed)
    log(f"training the image embedder on {len(train_ids)} unique images ({len(held_ids)} held out) for "
        f"{cfg.steps} steps of {cfg.batch_size}")
    model, record = train_embedder(images.pixels[train_ids], cfg, work, log=log)
    folder = save_embedder(model, demo / "embedder")
    calibration = calibrate(folder, images, held_ids, log=log)
    (folder / LIKENESS_FILE).write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    record.update({
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "held_out_images": int(len(held_ids)),
        "weights_bytes": int((folder / "model.safetensors").stat().st_size),
        "likeness": {k: calibration[k] for k in ("threshold", "k")},
    })
    from inspector.demo.build import library_versions

    record["versions"] = library_versions()
    (folder / "training_record.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    log(f"image embedder written to {folder}")
    return folder
