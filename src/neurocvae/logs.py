"""The loggers of a training run (conf/logger/): the CSV log, always written, which a resumed run
continues where its checkpoint left off; W&B (`logger=wandb`), whose run a resumed run
continues; TensorBoard (`logger=tensorboard`)."""

from __future__ import annotations

import csv
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from neurocvae.errors import InputError
from neurocvae.files import write_text_atomically


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics.csv and its columns: new rows are appended to it."""
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """`<save_dir>/<name>/metrics.csv` and `hparams.yaml`, flushed at every logged step (so a
    killed run loses no row). A run resumed into the same folder continues the same file from
    the batch its checkpoint holds (`rewind`)."""

    def __init__(self, save_dir: str | Path, name: str = "logs") -> None:
        super().__init__(save_dir, name=name, version="", flush_logs_every_n_steps=1)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def rewind(self, batches: int) -> None:
        """Drop the rows of batches ≥ `batches` (logged after the checkpoint a run resumes
        from; the resumed run logs them again). A kill meanwhile leaves the old file whole."""
        path = Path(self.experiment.metrics_file_path)
        if path.is_file():
            rows = pd.read_csv(path)
            write_text_atomically(path, rows[rows["step"] < batches].to_csv(index=False))


class RewindLogsOnResume(pl.Callback):
    """Rewinds the CSV log to the checkpoint's batch when a run resumes."""

    def __init__(self, logger: ResumableCSVLogger) -> None:
        self.logger = logger

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path:
            self.logger.rewind(pl_module.batches_seen)


WANDB_ID_FILE = "wandb_id"
WANDB_MODES = ("offline", "online", "disabled")
LOGGERS = ("csv", "wandb", "tensorboard")


def check_loggers(settings: Mapping[str, Any] | None) -> None:
    """Refuse an unknown logger, a W&B mode W&B does not have, and TensorBoard without its
    package, before any work is done."""
    settings = settings or {}
    unknown = sorted(set(settings) - set(LOGGERS))
    if unknown:
        raise InputError(f"logger.{unknown[0]}: unknown logger; expected some of {LOGGERS} "
                         "(e.g. logger=[wandb,tensorboard])")
    if settings.get("wandb") and settings["wandb"].get("mode") not in WANDB_MODES:
        raise InputError(f"logger.wandb.mode={settings['wandb'].get('mode')}: expected one of "
                         f"{WANDB_MODES}")
    if settings.get("tensorboard") is not None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise InputError("logger=tensorboard needs the tensorboard package: "
                             'pip install "neurocvae[tensorboard]"') from None


def wandb_logger(settings: Mapping[str, Any], out_dir: Path, *, name: str,
                 group: str | None = None, config: Mapping[str, Any] | None = None
                 ) -> WandbLogger:
    """A W&B run in `<out_dir>/wandb` (`settings`: `wandb` in conf/logger/wandb.yaml). Its id
    is read from `<out_dir>/wandb_id`, or made and written there (rank 0), so a resumed run
    logs into the same W&B run."""
    id_file = out_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else ""
    if not run_id:
        run_id = secrets.token_hex(6)
        if rank_zero_only.rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(id_file, run_id + "\n")
    return WandbLogger(project=settings["project"], entity=settings.get("entity"),
                       group=settings.get("group") or group, tags=list(settings.get("tags") or []),
                       name=name, id=run_id, save_dir=str(out_dir), mode=settings["mode"],
                       config=dict(config or {}),
                       log_model=bool(settings.get("log_checkpoints", False)))


@contextmanager
def run_loggers(cfg: Any, out_dir: Path, *, multirun: bool = False,
                reconstructions: bool = True
                ) -> Iterator[tuple[list[Logger], list[pl.Callback]]]:
    """The loggers of a training run and the callbacks they need: the CSV log; with
    `logger=tensorboard` TensorBoard's; with `logger=wandb` the W&B run, started here on rank 0
    so that a bad setting fails before training, and finished on the way out (a later run in
    the same process, such as the next job of a multirun, then starts its own), with its
    reconstruction pictures when the run has `reconstructions` and `log_images` asks."""
    csv = ResumableCSVLogger(out_dir)
    loggers: list[Logger] = [csv]
    callbacks: list[pl.Callback] = [RewindLogsOnResume(csv)]
    chosen = cfg.get("logger") or {}
    if chosen.get("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out_dir, version="", default_hp_metric=False,
                                         **chosen.tensorboard))
    settings, w = chosen.get("wandb"), None
    if settings:
        import wandb

        w = wandb_logger(settings, out_dir,
                         name="/".join(out_dir.parts[-2:]) if multirun else out_dir.name,
                         group=str(cfg.run_id) if multirun else None,
                         config=OmegaConf.to_container(cfg, resolve=True))
        if rank_zero_only.rank == 0:
            try:
                w.experiment  # noqa: B018 (starts the W&B run)
            except wandb.errors.Error as error:
                raise InputError(f"logger=wandb (mode={settings['mode']}): "
                                 f"{str(error).rstrip('.')}. Log in (`wandb login` or "
                                 "WANDB_API_KEY) or use logger.wandb.mode=offline"
                                 ) from error
        loggers.append(w)
        if reconstructions and settings.get("log_images"):
            callbacks.append(LogReconstructions())
    try:
        yield loggers, callbacks
    finally:
        if w is not None and rank_zero_only.rank == 0:
            w.experiment.finish()


def middle_slices(volume: torch.Tensor) -> np.ndarray:
    """[X, Y, Z] → one [H, W] picture of the three middle slices side by side, in [0, 1]."""
    v = volume.detach().float().cpu().numpy()
    x, y, z = (n // 2 for n in v.shape)
    slices = [np.rot90(v[x]), np.rot90(v[:, y]), np.rot90(v[:, :, z])]
    height = max(s.shape[0] for s in slices)
    padded = [np.pad(s, ((0, height - s.shape[0]), (0, 0))) for s in slices]
    picture = np.concatenate(padded, axis=1)
    low, high = picture.min(), picture.max()
    return (picture - low) / (high - low) if high > low else np.zeros_like(picture)


class LogReconstructions(pl.Callback):
    """Each validation epoch, the first validation target and its reconstruction (middle
    slices) to the W&B loggers, under `val/reconstruction`. Only with
    `logger.wandb.log_images=true`: these are pictures of a subject's brain."""

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if batch_idx or trainer.sanity_checking or not trainer.is_global_zero:
            return
        image = batch["target"]["image"][:1]
        with torch.no_grad():
            reconstruction = pl_module.forward_pass(image, batch["background"]["image"][:1],
                                                    draws=None).reconstruction[0]
        pictures = [middle_slices(image[0, 0]), middle_slices(reconstruction[0])]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/reconstruction", pictures,
                                 step=pl_module.batches_seen - 1,  # the epoch's last batch
                                 caption=["input", "reconstruction"])
