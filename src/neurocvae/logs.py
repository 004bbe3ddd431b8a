"""A CSV logger that a resumed run appends to (Lightning's deletes the earlier metrics.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics.csv and its columns: new rows are appended to it."""
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """`<save_dir>/<name>/metrics.csv` and `hparams.yaml`; a run resumed into the same folder
    continues the same file. Rows logged after the checkpoint it resumes from appear twice."""

    def __init__(self, save_dir: str | Path, name: str = "logs") -> None:
        super().__init__(save_dir, name=name, version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
