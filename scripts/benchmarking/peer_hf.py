"""Benchmark worker for the peer: transformers' `XCLIPModel` in PyTorch (started by scripts/benchmark.py).

The HF code path used, the closest to the X-CLIP recipe: the modules of `XCLIPModel.forward` minus the
text tower, i.e. `vision_model` -> `visual_projection` -> `mit` for the video embedding, and
`prompts_visual_layernorm` / `prompts_visual_projection` / `prompts_generator` for the prompts, against
class-text embeddings computed once with `get_text_features` (official FIX_TEXT; `XCLIPModel.forward`
itself would re-encode every class text at every step). The lines are those of `XCLIPModel.forward`
(transformers 5.x), with the model's own attention implementation (`sdpa` by default).

Training: the same uint8 batch normalised on the device, logits under bf16 autocast on CUDA (float32
otherwise, unless --dtype bfloat16), soft-target cross-entropy with label smoothing 0.1 (timm's, as the
official code), `torch.optim.AdamW` with the official four parameter groups (10x lr for the X-CLIP modules,
no weight decay on 1-D tensors, biases and position embeddings); text tower and logit scale frozen.
`--remat` maps to HF's gradient checkpointing. Inference runs under `torch.inference_mode`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch
import transformers

from scripts.benchmarking import protocol

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
NEW_MODULES = ("message_", "mit.", "prompts_")
TEXT_MODULES = ("text_model.", "text_projection.", "logit_scale")


def video_logits(model: Any, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
  """`XCLIPModel.forward` with the class-text embeddings given instead of recomputed (B, K)."""
  batch, frames, channels, height, width = pixel_values.shape
  vision = model.vision_model(pixel_values=pixel_values.reshape(-1, channels, height, width))
  video = model.visual_projection(vision.pooler_output)
  video = model.mit(video.view(batch, frames, -1)).pooler_output
  patches = model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :]) @ model.prompts_visual_projection
  patches = patches.view(batch, frames, -1, video.shape[-1]).mean(dim=1)
  text = text_embeds.unsqueeze(0).expand(batch, -1, -1)
  text = text + model.prompts_generator(text, patches)
  video = video / video.norm(p=2, dim=-1, keepdim=True)
  text = text / text.norm(p=2, dim=-1, keepdim=True)
  return model.logit_scale.exp() * torch.einsum("bd,bkd->bk", video, text)


def parameter_groups(model: Any, lr: float, weight_decay: float, new_module_lr_multiplier: float
                     ) -> list[dict[str, Any]]:
  """Official X-CLIP groups: (CLIP | X-CLIP modules) x (decay | no decay); frozen parameters left out."""
  groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
  for name, param in model.named_parameters():
    if not param.requires_grad:
      continue
    new = any(key in name for key in NEW_MODULES)
    decay = param.ndim >= 2 and "bias" not in name and "position" not in name
    groups.setdefault((new, decay), []).append(param)
  return [{"params": params, "lr": lr * (new_module_lr_multiplier if new else 1.0),
           "weight_decay": weight_decay if decay else 0.0} for (new, decay), params in groups.items()]


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
  classes = logits.shape[-1]
  targets = torch.full_like(logits, smoothing / classes, dtype=torch.float32)
  targets.scatter_(1, labels[:, None], 1.0 - smoothing + smoothing / classes)
  return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class PeerRunner(protocol.Runner):
  def __init__(self, spec: dict[str, Any]):
    self.on_cuda = torch.cuda.is_available()
    self.torch_device = torch.device("cuda" if self.on_cuda else "cpu")
    self.device = (f"1 x {torch.cuda.get_device_name()} (cuda)" if self.on_cuda
                   else f"cpu, {torch.get_num_threads()} threads")
    self.memory_kind = "device" if self.on_cuda else "rss"
    model = transformers.XCLIPModel.from_pretrained(spec["weights"], dtype=torch.float32,
                                                    attn_implementation=spec["peer_attention"])
    self.model = model.to(self.torch_device)
    inputs = np.load(pathlib.Path(spec["workdir"]) / protocol.INPUTS_FILE)
    self.videos = torch.from_numpy(inputs["videos"]).to(self.torch_device)
    self.labels = torch.from_numpy(inputs["labels"].astype(np.int64)).to(self.torch_device)
    tokens = torch.from_numpy(inputs["tokens"].astype(np.int64)).to(self.torch_device)
    self.mean = torch.tensor(MEAN, device=self.torch_device)
    self.inv_std = 1.0 / torch.tensor(STD, device=self.torch_device)
    self.dtype = spec["dtype"] if spec["dtype"] != "auto" else ("bfloat16" if self.on_cuda else "float32")
    self.autocast_dtype = torch.bfloat16 if self.dtype == "bfloat16" else None
    self.train_text = spec["train_text"] and spec["row"] == "train"
    self.accum = spec["accum"] if spec["row"] == "train" else 1
    if self.train_text:
      self.tokens = tokens
      self.text = None
    else:
      with torch.no_grad():  # not inference_mode: the training step's autograd graph uses these tensors
        self.text = model.get_text_features(input_ids=tokens).pooler_output
    if spec["row"] == "train":
      model.train()
      for name, param in model.named_parameters():
        param.requires_grad_(self.train_text or not name.startswith(TEXT_MODULES))
      if spec["remat"]:
        model.gradient_checkpointing_enable()
      # fused=True: torch's fastest AdamW on both CPU and CUDA (the default is a per-tensor loop on CPU).
      recipe = protocol.official_recipe()
      groups = parameter_groups(model, recipe.lr, recipe.weight_decay, recipe.new_module_lr_multiplier)
      self.optimizer = torch.optim.AdamW(groups, betas=(recipe.b1, recipe.b2), eps=recipe.eps, fused=True)
      self._run = self.train_step
    else:
      model.eval()
      self._run = self.infer_step

  def normalized(self, videos: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, T, 3, H, W), ImageNet statistics, as our device_ops.normalize."""
    return ((videos.float() - self.mean) * self.inv_std).permute(0, 1, 4, 2, 3)

  def autocast(self):
    return torch.autocast(self.torch_device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

  def text_features(self) -> torch.Tensor:
    if self.train_text:
      return self.model.get_text_features(input_ids=self.tokens).pooler_output
    return self.text

  def train_step(self) -> torch.Tensor:
    self.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=self.torch_device)
    for videos, labels in zip(self.videos.chunk(self.accum), self.labels.chunk(self.accum), strict=True):
      with self.autocast():
        logits = video_logits(self.model, self.normalized(videos), self.text_features())
      loss = soft_cross_entropy(logits, labels) / self.accum
      loss.backward()
      total += loss.detach()
    self.optimizer.step()
    return total

  def infer_step(self) -> torch.Tensor:
    with torch.inference_mode(), self.autocast():
      return video_logits(self.model, self.normalized(self.videos), self.text).float()

  def step(self) -> torch.Tensor:
    return self._run()

  def sync(self, result: torch.Tensor) -> None:
    if self.on_cuda:
      torch.cuda.synchronize()

  def check_value(self, result: torch.Tensor) -> list:
    return result.detach().double().cpu().reshape(-1).tolist()

  def peak_memory_bytes(self) -> int | None:
    return torch.cuda.max_memory_allocated() if self.on_cuda else protocol.peak_rss_bytes()


if __name__ == "__main__":
  protocol.serve(PeerRunner)
