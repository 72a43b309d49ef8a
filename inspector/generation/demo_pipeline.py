"""A tiny pixel-space text-to-image diffusion pipeline, following diffusers' text-to-image conventions.

The demo model has no VAE: the UNet works on RGB pixels in [-1, 1] at the model's native size (32 px). Apart
from that it is driven exactly like Stable Diffusion: ``pipe(prompt, negative_prompt=..., generator=[...],
num_inference_steps=..., guidance_scale=..., callback_on_step_end=...)``.

It lives beside the generation engine because the engine loads it (``model_index.json`` names the class
``DemoPipeline``, never a module path, so demo folders saved before the move load unchanged); the code that
builds and trains the demo model is :mod:`inspector.demo`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, SchedulerMixin, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer


class DemoPipeline(DiffusionPipeline):
    """Text-conditional pixel-space diffusion with classifier-free guidance.

    Parameters
    ----------
    unet
        Predicts the model output (see ``scheduler.config.prediction_type``) from noisy RGB pixels.
    text_encoder, tokenizer
        A small CLIP text model and its tokenizer over the demo vocabulary.
    scheduler
        Any diffusers scheduler; the demo ships a DDIM scheduler.
    default_guidance_scale
        The guidance scale the model was tuned for, used when ``guidance_scale`` is not given.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin,
        default_guidance_scale: float = 2.0,
    ):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(default_guidance_scale=float(default_guidance_scale))
        self._interrupt = False

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def native_size(self) -> int:
        return int(self.unet.config.sample_size)

    def encode_prompt(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        """Token embeddings (batch x tokens x width) of the prompts, truncated to the tokenizer's length."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.text_encoder(tokens.input_ids.to(device))
        return out.last_hidden_state

    def model_output(
        self, latents: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        """One UNet call on ``latents`` at timestep ``t``."""
        model_input = self.scheduler.scale_model_input(latents, t)
        return self.unet(model_input, t, encoder_hidden_states=embeddings).sample

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagePipelineOutput | tuple:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("prompt must be a string or a non-empty list of strings")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got {num_images_per_prompt}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        size = self.native_size
        if (height or size) != size or (width or size) != size:
            raise ValueError(f"the demo model only makes {size}x{size} images, got {height}x{width}")
        if negative_prompt is None:
            negatives = [""] * len(prompts)
        elif isinstance(negative_prompt, str):
            negatives = [negative_prompt] * len(prompts)
        else:
            negatives = list(negative_prompt)
            if len(negatives) != len(prompts):
                raise ValueError("negative_prompt must have one entry per prompt")
        guidance = float(self.config.default_guidance_scale if guidance_scale is None else guidance_scale)
        batch = len(prompts) * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images: pass one per image")

        device = self._execution_device
        dtype = self.unet.dtype
        self._interrupt = False
        cond = self.encode_prompt(prompts, device).repeat_interleave(num_images_per_prompt, dim=0)
        use_cfg = guidance != 1.0
        if use_cfg:
            uncond = self.encode_prompt(negatives, device).repeat_interleave(num_images_per_prompt, dim=0)
            embeddings = torch.cat([uncond, cond]).to(dtype)
        else:
            embeddings = cond.to(dtype)

        shape = (batch, self.unet.config.in_channels, size, size)
        if latents is None:
            # randn_tensor draws each image from its own generator, so an image depends on its seed alone.
            latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        step_kwargs: dict[str, Any] = {}
        if "eta" in _step_params(self.scheduler):
            step_kwargs["eta"] = eta
        if "generator" in _step_params(self.scheduler):
            step_kwargs["generator"] = generator

        for i, t in enumerate(timesteps):
            if self._interrupt:
                break
            model_in = torch.cat([latents, latents]) if use_cfg else latents
            out = self.model_output(model_in, t, embeddings)
            if use_cfg:
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + guidance * (out_cond - out_uncond)
            latents = self.scheduler.step(out, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                names = callback_on_step_end_tensor_inputs or ["latents"]
                # locals() inside a comprehension would be the comprehension's own scope (Python < 3.12).
                scope = locals()
                result = callback_on_step_end(self, i, t, {n: scope[n] for n in names}) or {}
                latents = result.get("latents", latents)

        images = (latents.float().clamp(-1, 1) + 1) / 2
        if output_type == "pt":
            result_images: Any = images
        else:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "np":
                result_images = arr
            else:
                result_images = [Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in arr]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result_images,)
        return ImagePipelineOutput(images=result_images)


def _step_params(scheduler: SchedulerMixin) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)
