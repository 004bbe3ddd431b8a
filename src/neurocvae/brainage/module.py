"""`BrainAgeModule`: SFCN trained on Gaussian soft age labels, KL loss (docs/science.md §2.2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection, PearsonCorrCoef

from neurocvae.brainage.bins import AgeBins, kl_loss
from neurocvae.runs import draw_seed

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def _age_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"mae": MeanAbsoluteError(), "r": PearsonCorrCoef()}, prefix=prefix)


class BrainAgeModule(pl.LightningModule):
    """Predicts age (years) from [B, 1, X, Y, Z] volumes as the expected bin centre.

    `optimizer` and `scheduler` are factories taking the parameters (and the optimiser), as Hydra
    builds them with `_partial_: true`. Logs `train/loss_step` (each batch, the mean over DDP
    ranks), `train/loss_epoch` and `train/mae` (epoch means), `val/loss`, `val/mae`,
    `val/r` (and `test/…`); ages in years. `channels_last` keeps the network and its inputs in
    the channels-last 3-D layout: the same numbers, 1.3–1.6× faster on a CPU
    (`experiments/bench_sfcn.py`, which also measures a GPU when there is one).

    `net_config` (the `net` config `net` was built from) is saved with the hyperparameters, so
    that a checkpoint alone rebuilds the network (`neurocvae.brainage.trained`).

    `batches_seen` counts training batches and travels in checkpoints, with the epoch's running
    sums of the training loss and error; each training batch's random draws (dropout) are
    seeded by `(seed, rank, batches_seen)`. So a run resumed from a mid-epoch checkpoint draws
    and logs what an uninterrupted one does.
    """

    def __init__(self, net: nn.Module, *, optimizer: OptimizerFactory,
                 scheduler: SchedulerFactory | None = None,
                 bins: AgeBins | Mapping[str, float] | None = None,
                 channels_last: bool = True, seed: int = 0,
                 net_config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.seed, self.batches_seen = seed, 0
        self.epoch_sums = torch.zeros(2, dtype=torch.float64)  # loss, |error|: batch means
        self.epoch_batches, self.epoch_of_sums = 0, -1
        self.layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.layout)
        self.bins = bins if isinstance(bins, AgeBins) else AgeBins(**(bins or {}))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.save_hyperparameters({"bins": vars(self.bins), "net": net_config})
        self.val_metrics = _age_metrics("val/")
        self.test_metrics = _age_metrics("test/")

    def log_probs(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, X, Y, Z] → [B, K] log-probabilities per age bin."""
        return self.net(image.contiguous(memory_format=self.layout))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, X, Y, Z] → [B] predicted age (years)."""
        return self.bins.expected_age(self.log_probs(image))

    def loss_of(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The KL loss of a batch and its predicted ages [B] (years, detached)."""
        log_probs = self.log_probs(batch["image"])
        loss = kl_loss(log_probs, self.bins.soft_labels(batch["age"]))
        return loss, self.bins.expected_age(log_probs.detach())

    def _step(self, batch: dict, stage: str, metrics: MetricCollection) -> None:
        loss, predicted = self.loss_of(batch)
        metrics.update(predicted, batch["age"].to(predicted.dtype))
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=len(batch["age"]),
                 on_step=False, on_epoch=True, sync_dist=True)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        torch.manual_seed(draw_seed(self.seed, self.global_rank, self.batches_seen))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, predicted = self.loss_of(batch)
        error = (predicted - batch["age"].to(predicted.dtype)).abs().mean()
        values = self.trainer.strategy.reduce(torch.stack([loss.detach(), error]),
                                              reduce_op="mean")
        if self.epoch_of_sums != self.current_epoch:  # a new epoch (or sums of a past one)
            self.epoch_sums, self.epoch_batches = torch.zeros(2, dtype=torch.float64), 0
            self.epoch_of_sums = self.current_epoch
        self.epoch_sums += values.detach().cpu().double()
        self.epoch_batches += 1
        self.log("train/loss_step", values[0], prog_bar=True, on_step=True, on_epoch=False)
        self.batches_seen += 1
        return loss

    def on_train_epoch_end(self) -> None:
        """The epoch means of the training loss and error, straight to the loggers (so they are
        on disk before the epoch's checkpoint)."""
        if self.epoch_of_sums != self.current_epoch or not self.epoch_batches:
            return
        loss, mae = (self.epoch_sums / self.epoch_batches).tolist()
        for logger in self.loggers:
            logger.log_metrics({"train/loss_epoch": loss, "train/mae": mae,
                                "epoch": self.current_epoch}, step=self.batches_seen - 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["batches_seen"] = self.batches_seen
        checkpoint["epoch_sums"] = {"epoch": self.epoch_of_sums, "batches": self.epoch_batches,
                                    "sums": self.epoch_sums.clone()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = int(checkpoint.get("batches_seen", 0))
        running = checkpoint.get("epoch_sums", {})
        self.epoch_of_sums = running.get("epoch", -1)
        self.epoch_batches = running.get("batches", 0)
        self.epoch_sums = running.get("sums", torch.zeros(2, dtype=torch.float64))

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
