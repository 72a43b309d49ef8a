"""Train the demo model on the demo training set: deterministic, seeded, CPU-friendly.

The recipe aims at what Carlini et al. observed, within a two-core CPU budget: the heavily duplicated
photographs must come back near pixel-exact, while the thousands of distinct procedural images must not.
Choices that make memorization reachable in about an hour and a half on a CPU:
- the UNet predicts the clean image (``prediction_type="sample"``): for a duplicated caption the target is one
  fixed image at every noise level, which is quick to fit;
- an exponential moving average of the weights, and a cosine learning-rate decay;
- 10% caption dropout, so classifier-free guidance has an unconditional embedding.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from inspector.generation.demo_pipeline import DemoPipeline
from inspector.images import canonical

NATIVE_SIZE = 32


@dataclass
class TrainConfig:
    steps: int = 10000
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    min_lr_fraction: float = 0.02
    ema_decay: float = 0.9995
    caption_dropout: float = 0.1
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 1000
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    text_width: int = 64
    default_guidance_scale: float = 2.0
    extra: dict = field(default_factory=dict)


def make_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        clip_sample=True,
        clip_sample_range=1.0,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
    )


def make_pipeline(tokenizer: CLIPTokenizer, cfg: TrainConfig) -> DemoPipeline:
    """A freshly initialised demo pipeline (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_width,
        intermediate_size=cfg.text_width * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=cfg.text_width,
    )
    text_encoder = CLIPTextModel(text_config)
    ch = tuple(cfg.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=ch,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(ch) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(ch) - 1) + ("UpBlock2D",),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return DemoPipeline(
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=make_scheduler(),
        default_guidance_scale=cfg.default_guidance_scale,
    )


def load_pixels(paths: list[Path]) -> torch.Tensor:
    """The training images in the canonical form at native size, as N x 3 x 32 x 32 in [-1, 1]."""
    arr = np.stack([canonical(p, NATIVE_SIZE) for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous() * 2 - 1


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.learning_rate * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * cosine)


STATE_FILE = "train_state.pt"


class TrainingPaused(Exception):
    """A leg of training ended at its time limit after a checkpoint; ``--resume`` goes on from it."""

    def __init__(self, step: int, steps: int, checkpoint: Path):
        super().__init__(f"training paused at step {step} of {steps}: the checkpoint {checkpoint} holds it; run the "
                         "same command with --resume to go on")
        self.step = step
        self.steps = steps
        self.checkpoint = checkpoint


def train(
    pipe: DemoPipeline,
    pixels: torch.Tensor,
    captions: list[str],
    cfg: TrainConfig,
    work_dir: Path,
    log: Callable[[str], None] = print,
    resume: bool = False,
    leg_seconds: float | None = None,
) -> dict:
    """Train ``pipe`` in place; the EMA weights end up in it. Returns the training record (loss curve, time).

    Every ``cfg.checkpoint_every`` steps the whole training state (weights, EMA, optimiser, random generator, loss
    record) is written to ``work_dir / STATE_FILE``. With ``resume`` training goes on from that checkpoint and
    ends with the same weights as an uninterrupted run (same machine, library versions and thread count).
    With ``leg_seconds`` training stops at the first checkpoint after that many seconds of this leg and raises
    :class:`TrainingPaused`.
    """
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(cfg.seed)
    unique = sorted(set(captions)) + [""]
    token_ids = pipe.tokenizer(
        unique, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids
    caption_index = torch.tensor([unique.index(c) for c in captions])
    empty_index = len(unique) - 1

    modules = [pipe.unet, pipe.text_encoder]
    params = [p for m in modules for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    scheduler = pipe.scheduler
    alphas = scheduler.alphas_cumprod
    for m in modules:
        m.train()

    record: dict = {"loss": [], "config": asdict(cfg), "legs": []}
    first_step = 0
    running = 0.0
    state_path = Path(work_dir) / STATE_FILE
    if resume and state_path.is_file():
        first_step, running, record = _load_state(state_path, cfg, params, ema, opt, gen)
        log(f"resuming from the checkpoint at step {first_step} of {cfg.steps}")
    elif resume:
        log(f"no checkpoint in {work_dir}: training from the start")
    start = time.monotonic()
    leg = {"from_step": first_step}
    record["legs"].append(leg)
    n = pixels.shape[0]
    for step in range(first_step, cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        x0 = pixels[idx]
        cap = caption_index[idx].clone()
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        cap[drop] = empty_index
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        emb = pipe.text_encoder(token_ids[cap]).last_hidden_state
        pred = pipe.unet(xt, t, encoder_hidden_states=emb).sample
        loss = torch.nn.functional.mse_loss(pred, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params, strict=True):
                e.lerp_(p.detach(), 1 - decay)
        running += float(loss.detach())
        if (step + 1) % 50 == 0:
            record["loss"].append((step + 1, running / 50))
            running = 0.0
        elapsed = time.monotonic() - start
        if (step + 1) % 250 == 0:
            done = step + 1 - first_step
            eta = elapsed / done * (cfg.steps - step - 1)
            log(f"step {step + 1}/{cfg.steps} loss {record['loss'][-1][1]:.4f} lr {lr_at(step, cfg):.2e} "
                f"{elapsed / done:.3f} s/step, {elapsed / 60:.1f} min this leg, eta {eta / 60:.1f} min")
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            leg.update({"to_step": step + 1, "seconds": round(elapsed, 1)})
            _save_state(state_path, step + 1, running, record, cfg, params, ema, opt, gen)
            if leg_seconds is not None and elapsed >= leg_seconds:
                raise TrainingPaused(step + 1, cfg.steps, state_path)
    leg.update({"to_step": cfg.steps, "seconds": round(time.monotonic() - start, 1)})
    record["wall_seconds"] = sum(lg.get("seconds", 0.0) for lg in record["legs"])
    record["steps_done"] = cfg.steps
    with torch.no_grad():
        for e, p in zip(ema, params, strict=True):
            p.copy_(e)
    for m in modules:
        m.eval()
    return record


def _save_state(path: Path, step: int, running: float, record: dict, cfg: TrainConfig, params, ema, opt,
                gen: torch.Generator) -> None:
    """The whole training state, written atomically (a crash while saving keeps the previous checkpoint)."""
    from inspector.fileio import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step, "running": running, "record": json.dumps(record),
        "config": json.dumps(asdict(cfg), sort_keys=True),
        "params": [p.detach().clone() for p in params], "ema": ema, "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
    }
    write_atomic(path, lambda stream: torch.save(state, stream))


def _load_state(path: Path, cfg: TrainConfig, params, ema, opt, gen: torch.Generator) -> tuple[int, float, dict]:
    state = torch.load(path, weights_only=False)
    if state["config"] != json.dumps(asdict(cfg), sort_keys=True):
        raise ValueError(f"the checkpoint {path} was written with other training settings: remove it (or its "
                         "folder) to start again, or resume with the settings it was written with")
    with torch.no_grad():
        for p, saved in zip(params, state["params"], strict=True):
            p.copy_(saved)
        for e, saved in zip(ema, state["ema"], strict=True):
            e.copy_(saved)
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"]), float(state["running"]), json.loads(state["record"])
