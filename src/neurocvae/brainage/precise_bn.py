"""Precise BatchNorm: running statistics recomputed with the current weights before validation.

BatchNorm's running statistics are an exponential average over the last training batches, each
computed with the weights of its own step. With small batches (8 volumes) and weights that still
move, they can be far from the statistics of the network being evaluated, and validation MAE
jumps from epoch to epoch (`experiments/results/bn_probe.md`). Recomputing them over a pass of
training scans with the weights as they are (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm") removes that noise; the best checkpoint, saved after validation, carries them.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(net: nn.Module) -> list[_BatchNorm]:
    return [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(net: nn.Module, images: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm layer's running mean and variance by their equal-weight average
    over the forward passes of `images` (batches [B, 1, X, Y, Z]); returns how many batches were
    used. The layers' momenta and the network's mode are restored."""
    layers = batchnorm_layers(net)
    if not layers:
        return 0
    momenta, was_training = [layer.momentum for layer in layers], net.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average: every batch weighs the same
    net.train()
    used = 0
    for batch in images:
        net(batch)
        used += 1
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    net.train(was_training)
    return used


class PreciseBatchNorm(pl.Callback):
    """Before each validation epoch (not the sanity check), recompute the BatchNorm statistics
    over up to `batches` batches of the training split, unaugmented, in order (the DataModule's
    `statistics_dataloader`). Under DDP each rank uses its own part and the statistics are
    averaged over the ranks, so every rank validates with the same network."""

    def __init__(self, batches: int = 200) -> None:
        self.batches = batches

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule
                                  ) -> None:
        if trainer.sanity_checking:
            return
        datamodule = trainer.datamodule
        images = (datamodule.on_after_batch_transfer(batch, 0)["image"].to(pl_module.device)
                  for batch in islice(datamodule.statistics_dataloader(), self.batches))
        with trainer.precision_plugin.forward_context():
            recompute_batchnorm(pl_module, images)
        for layer in batchnorm_layers(pl_module):
            for buffer in (layer.running_mean, layer.running_var):
                buffer.copy_(trainer.strategy.reduce(buffer, reduce_op="mean"))
