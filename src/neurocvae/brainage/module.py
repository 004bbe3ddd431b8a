"""`BrainAgeModule`: SFCN trained on Gaussian soft age labels, KL loss (docs/science.md §2.2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection, PearsonCorrCoef

from neurocvae.brainage.bins import AgeBins, kl_loss

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def _age_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"mae": MeanAbsoluteError(), "r": PearsonCorrCoef()}, prefix=prefix)


class BrainAgeModule(pl.LightningModule):
    """Predicts age (years) from [B, 1, X, Y, Z] volumes as the expected bin centre.

    `optimizer` and `scheduler` are factories taking the parameters (and the optimiser), as Hydra
    builds them with `_partial_: true`. Logs `train/loss`, `train/mae`, `val/loss`, `val/mae`,
    `val/r` (and `test/…`); ages in years. `channels_last` keeps the network and its inputs in
    the channels-last 3-D layout: the same numbers, 1.3–1.6× faster on a CPU
    (`experiments/bench_sfcn.py`, which also measures a GPU when there is one).
    """

    def __init__(self, net: nn.Module, *, optimizer: OptimizerFactory,
                 scheduler: SchedulerFactory | None = None,
                 bins: AgeBins | Mapping[str, float] | None = None,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.layout)
        self.bins = bins if isinstance(bins, AgeBins) else AgeBins(**(bins or {}))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.save_hyperparameters({"bins": vars(self.bins)})
        self.train_mae = MeanAbsoluteError()
        self.val_metrics = _age_metrics("val/")
        self.test_metrics = _age_metrics("test/")

    def log_probs(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, X, Y, Z] → [B, K] log-probabilities per age bin."""
        return self.net(image.contiguous(memory_format=self.layout))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, X, Y, Z] → [B] predicted age (years)."""
        return self.bins.expected_age(self.log_probs(image))

    def _step(self, batch: dict, stage: str, metrics: MeanAbsoluteError | MetricCollection,
              ) -> torch.Tensor:
        log_probs = self.log_probs(batch["image"])
        loss = kl_loss(log_probs, self.bins.soft_labels(batch["age"]))
        predicted = self.bins.expected_age(log_probs.detach())
        metrics.update(predicted, batch["age"].to(predicted.dtype))
        batch_size = len(batch["age"])
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=batch_size,
                 on_step=stage == "train", on_epoch=True, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train", self.train_mae)
        self.log("train/mae", self.train_mae, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return {"subject_id": list(batch["subject_id"]),
                "brain_age": self(batch["image"]).float().cpu()}

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                 "interval": "epoch"}}
