"""The encoders of a trained contrastive model as one graph, for ONNX export
(`neurocvae.data.export`): preprocessed volumes [B, 1, X, Y, Z] → code means `shared` [B, Z]
and `salient` [B, S]."""

from __future__ import annotations

import copy

import torch
from torch import nn

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.export import ModelInputs
from neurocvae.data.volumes import MinMax

OUTPUTS = ("shared", "salient")


class CodeMeans(nn.Module):
    """Preprocessed volumes [B, 1, X, Y, Z] → (shared [B, Z], salient [B, S]) code means; a
    copy of the nets without their decoder, on the CPU."""

    def __init__(self, module: ContrastiveModule, minmax: MinMax | None) -> None:
        super().__init__()
        self.inputs = ModelInputs(minmax)
        self.nets = copy.deepcopy(module.nets).cpu()
        self.nets.decoder = None

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.nets.code_means(self.inputs(volume))
