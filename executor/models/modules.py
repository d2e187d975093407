"""Small torch wrappers shared by the families: each groups a real transformers submodule with its pre/post step
so one block is one module call (the profiler's timing hooks see the whole block)."""

from __future__ import annotations

import torch
from torch import nn


class ImageEmbed(nn.Module):
    """uint8 images (B, H, W, 3) -> normalised pixels -> a vision tower's patch (+position) embeddings."""

    def __init__(self, embeddings: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean.float()) / self.std.float()
        dtype = next(self.embeddings.parameters()).dtype
        return self.embeddings(x.to(dtype))
