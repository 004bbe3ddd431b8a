"""The CSV log (always written), which a resumed run continues where its checkpoint left off."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only


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
        from; the resumed run logs them again)."""
        path = Path(self.experiment.metrics_file_path)
        if path.is_file():
            rows = pd.read_csv(path)
            rows[rows["step"] < batches].to_csv(path, index=False)


class RewindLogsOnResume(pl.Callback):
    """Rewinds the CSV log to the checkpoint's batch when a run resumes."""

    def __init__(self, logger: ResumableCSVLogger) -> None:
        self.logger = logger

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path:
            self.logger.rewind(pl_module.batches_seen)
