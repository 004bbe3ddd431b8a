"""The encoders of a trained contrastive model as one graph, for ONNX export
(`neurocvae.data.export`): preprocessed volumes [B, 1, X, Y, Z] → code means `shared` [B, Z]
and `salient` [B, S], each scan read as a target (`ContrastiveNets.code_means`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.contrastive.nets import less_pattern_share
from neurocvae.data.export import ModelInputs
from neurocvae.data.volumes import MinMax

OUTPUTS = ("shared", "salient")


class CodeMeans(nn.Module):
    """Preprocessed volumes [B, 1, X, Y, Z] → (shared [B, Z], salient [B, S]) code means; a
    copy of the encoders on the CPU."""

    def __init__(self, module: ContrastiveModule, minmax: MinMax | None) -> None:
        super().__init__()
        self.inputs = ModelInputs(minmax)
        self.shared_encoder = copy.deepcopy(module.nets.shared_encoder).cpu()
        self.salient_encoder = copy.deepcopy(module.nets.salient_encoder).cpu()
        share = module.nets.pattern_share
        self.register_buffer("pattern_share", None if share is None else share.detach().cpu())

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs(volume)
        salient = self.salient_encoder(x)[0]
        return less_pattern_share(self.shared_encoder(x)[0], salient, self.pattern_share), salient
