"""Wen et al. (ICLR 2024): a cheap memorization score from the text-conditional noise prediction.

d = || eps(x_t, prompt) - eps(x_t, "") ||_2, averaged over the first sampling steps and over seeds. Memorized
prompts steer the model hard from the very first steps, so d is large for them. The gradient of d with respect to
each prompt token's embedding shows which words trigger it.

Works for pipelines with classifier-free guidance and a CLIP text encoder: the demo pipeline and Stable Diffusion
1.x / 2.x style pipelines (UNet + VAE). torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Fraction of the sampling steps, from the start, over which d is averaged.
WEN_FIRST_FRACTION = 0.2


class WenUnsupported(ValueError):
    """The pipeline has no text-conditional UNet with classifier-free guidance that we know how to drive."""


@dataclass
class WenResult:
    score: float  # mean ||eps_cond - eps_uncond||_2 over seeds and the first steps
    per_seed: list[float]
    steps_used: int
    #: (word, gradient norm of d with respect to the word's token embeddings), per prompt word, when asked for
    tokens: list[tuple[str, float]] | None = None


def _encode(pipe, prompt: str, negative: str):
    import torch

    from inspector.generation.demo_pipeline import DemoPipeline

    device = pipe._execution_device
    if isinstance(pipe, DemoPipeline):
        return pipe.encode_prompt([prompt], device), pipe.encode_prompt([negative], device).detach()
    if hasattr(pipe, "encode_prompt") and hasattr(pipe, "vae") and not hasattr(pipe, "text_encoder_2"):
        cond, uncond = pipe.encode_prompt(prompt, device, 1, True, negative)
        return cond, uncond.detach() if isinstance(uncond, torch.Tensor) else uncond
    raise WenUnsupported(
        f"the Wen score is not available for {type(pipe).__name__}: it needs a single CLIP text encoder and a "
        "UNet with classifier-free guidance (the demo, Stable Diffusion 1.x / 2.x)"
    )


def _latent_shape(pipe, n: int, size: int | None) -> tuple[int, ...]:
    from inspector.generation.demo_pipeline import DemoPipeline

    if isinstance(pipe, DemoPipeline):
        s = pipe.native_size
        return (n, pipe.unet.config.in_channels, s, s)
    factor = getattr(pipe, "vae_scale_factor", 8)
    s = size or pipe.unet.config.sample_size * factor
    return (n, pipe.unet.config.in_channels, s // factor, s // factor)


def _to_epsilon(scheduler, output, latents, t):
    """Convert a model output to a noise prediction, whatever the scheduler's prediction type."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return output
    ab = scheduler.alphas_cumprod.to(latents.device)[int(t)].to(latents.dtype)
    if kind == "sample":
        return (latents - ab.sqrt() * output) / (1 - ab).sqrt()
    if kind == "v_prediction":
        return ab.sqrt() * output + (1 - ab).sqrt() * latents
    raise WenUnsupported(f"unknown prediction_type {kind!r}")


def wen_score(
    pipe,
    prompt: str,
    seeds: Sequence[int] = (0, 1, 2, 3),
    num_inference_steps: int = 25,
    first_fraction: float = WEN_FIRST_FRACTION,
    guidance_scale: float | None = None,
    negative_prompt: str = "",
    size: int | None = None,
    attribute_tokens: bool = False,
) -> WenResult:
    """Wen et al.'s score of ``prompt`` on ``pipe`` (higher = more likely memorized).

    The latents follow the guided sampling trajectory, so the score is measured where real sampling goes.
    With ``attribute_tokens`` the gradient norm of d per prompt word is returned too (see :func:`_word_scores`).
    """
    import torch

    if not seeds:
        raise ValueError("wen_score needs at least one seed")
    if not 0 < first_fraction <= 1:
        raise ValueError(f"first_fraction must be in (0, 1], got {first_fraction}")
    guidance = guidance_scale
    if guidance is None:
        guidance = float(getattr(pipe.config, "default_guidance_scale", 7.5))
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps, device=pipe._execution_device)
    first = scheduler.timesteps[: max(1, round(num_inference_steps * first_fraction))]
    captured = {}
    hook = None
    if attribute_tokens:
        def keep(_module, _inp, out):
            if "emb" not in captured:  # the prompt's own tokens (the negative prompt is encoded second)
                out.retain_grad()
                captured["emb"] = out
        hook = pipe.text_encoder.get_input_embeddings().register_forward_hook(keep)
    try:
        with torch.enable_grad() if attribute_tokens else torch.no_grad():
            cond, uncond = _encode(pipe, prompt, negative_prompt)
            if hook is not None:
                hook.remove()
                hook = None
            dtype = pipe.unet.dtype
            n = len(seeds)
            gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
            from diffusers.utils.torch_utils import randn_tensor

            latents = randn_tensor(_latent_shape(pipe, n, size), generator=gens, device=torch.device("cpu"),
                                   dtype=torch.float32).to(pipe._execution_device, dtype) * scheduler.init_noise_sigma
            cond_n = cond.to(dtype).expand(n, -1, -1)
            uncond_n = uncond.to(dtype).expand(n, -1, -1)
            per_seed = torch.zeros(n, dtype=torch.float64)
            total = None
            for t in first:
                x = scheduler.scale_model_input(latents, t)
                out_c = pipe.unet(x, t, encoder_hidden_states=cond_n).sample
                with torch.no_grad():
                    out_u = pipe.unet(x, t, encoder_hidden_states=uncond_n).sample
                eps_c = _to_epsilon(scheduler, out_c, latents, t)
                eps_u = _to_epsilon(scheduler, out_u, latents, t)
                d = (eps_c - eps_u).flatten(1).float().norm(dim=1)
                per_seed += d.detach().double().cpu()
                total = d.sum() if total is None else total + d.sum()
                with torch.no_grad():
                    guided = out_u + guidance * (out_c.detach() - out_u)
                    latents = scheduler.step(guided, t, latents).prev_sample
            per_seed /= len(first)
            tokens = None
            if attribute_tokens:
                total.backward()
                tokens = _word_scores(pipe, prompt, captured["emb"].grad[0])
    finally:
        if hook is not None:
            hook.remove()
    return WenResult(score=float(per_seed.mean()), per_seed=per_seed.tolist(), steps_used=len(first),
                     tokens=tokens)


def _word_scores(pipe, prompt: str, grad) -> list[tuple[str, float]]:
    """Per prompt word: the norm of the gradient of d with respect to all of the word's token embeddings together,
    i.e. sqrt(sum over its pieces of each piece's squared gradient norm), >= 0.

    Sub-word pieces (CLIP BPE marks a word's last piece with ``</w>``) are merged back into the word as written
    in the prompt, so "Michetti" is reported, never its fragments "mic" / "hetti"; a one-piece word keeps its
    token's norm. The beginning / end markers and padding are dropped; words cut off by the tokenizer's limit
    have no embedding, hence no score, and are left out (:mod:`inspector.vocabulary` names them).
    """
    from inspector.vocabulary import tokenizer_words

    norms = grad.float().norm(dim=-1).tolist()
    words, _ = tokenizer_words(pipe.tokenizer, prompt)
    out = []
    for word in words:
        seen = [p for p in word.positions[: word.visible_pieces] if p < len(norms)]
        if seen:
            out.append((word.name, float(sum(norms[p] ** 2 for p in seen) ** 0.5)))
    return out
