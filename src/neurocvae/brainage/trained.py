"""A trained brain-age run as one object: predict the age of scans it has never seen, read
exactly as in training, corrected by the run's bias correction where the age is known.

    from neurocvae import BrainAgeModel
    model = BrainAgeModel.load("outputs/brainage")        # a run folder or a checkpoint file
    ages = model.predict("replication/manifest.csv")      # table columns + brain_age (+ bag)

A run folder gives its `checkpoints/best.ckpt` and, when present, its `lbc.json`; a checkpoint
alone carries the network's config, preprocessing and intensity scaling (`correction=` names an
`lbc.json` for it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from torch import nn

from neurocvae.brainage.bins import AgeBins
from neurocvae.brainage.correction import BiasCorrection
from neurocvae.brainage.module import BrainAgeModule
from neurocvae.data.export import ModelInputs, export_onnx
from neurocvae.data.scans import ScanReader, Scans, scans_table
from neurocvae.errors import InputError
from neurocvae.files import read_torch_file, run_checkpoint


def read_sfcn_checkpoint(path: Path) -> dict[str, Any]:
    """The contents of a `neurocvae-brainage` checkpoint (weights only, no pickled code)."""
    state = read_torch_file(path, "no such checkpoint", "checkpoint")
    net = state.get("hyper_parameters", {}).get("net") if isinstance(state, dict) else None
    if not net:
        raise InputError(f"{path}: not a neurocvae-brainage checkpoint that carries its network "
                         "(no stored net config; written by an older neurocvae?)")
    return state


class PredictedAge(nn.Module):
    """Preprocessed volumes [B, 1, X, Y, Z] → predicted age [B] (years); a copy on the CPU."""

    def __init__(self, module: BrainAgeModule, reader: ScanReader) -> None:
        super().__init__()
        self.inputs = ModelInputs(reader.minmax)
        self.module = copy.deepcopy(module).cpu()

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.module(self.inputs(volume))


@dataclass
class BrainAgeModel:
    """A trained SFCN with the way its run read volumes (`ScanReader`) and, when it has one,
    the run's bias correction."""

    module: BrainAgeModule
    reader: ScanReader
    correction: BiasCorrection | None
    checkpoint: Path

    @classmethod
    def load(cls, source: str | Path, *, checkpoint: str = "best",
             correction: str | Path | None = None, device: str | torch.device = "cpu",
             batch_size: int = 8) -> BrainAgeModel:
        """Load a run folder (its `checkpoint`: best, last or a path; its `lbc.json` unless
        `correction` names another) or a checkpoint file (`correction`: an `lbc.json`, or
        none)."""
        source = Path(source)
        if source.is_dir():
            path = run_checkpoint(source, checkpoint)
            if correction is None and (source / "lbc.json").is_file():
                correction = source / "lbc.json"
        else:
            path = source
        state = read_sfcn_checkpoint(path)
        hparams = state["hyper_parameters"]
        module = BrainAgeModule(hydra.utils.instantiate(hparams["net"]), optimizer=None,
                                bins=AgeBins(**hparams["bins"]))
        module.load_state_dict(state["state_dict"])
        module = module.eval().to(device)
        reader = ScanReader.from_state(state.get("BrainAgeDataModule"), path,
                                       batch_size=batch_size)
        return cls(module=module, reader=reader, checkpoint=path,
                   correction=BiasCorrection.load(correction) if correction else None)

    @torch.no_grad()
    def predict(self, scans: Scans) -> pd.DataFrame:
        """One row per scan: the table's columns, `brain_age` (years) and, with a correction
        and a known `age`, `corrected_age` and `bag` (years; NaN where the age is unknown)."""
        table = scans_table(scans)
        ages = [self.module(batch["image"].to(self.module.device)).float().cpu().numpy()
                for batch in self.reader.batches(table, "brain age")]
        table["brain_age"] = np.concatenate(ages)
        if self.correction is not None and "age" in table:
            age = pd.to_numeric(table["age"], errors="coerce").to_numpy(float)
            table["corrected_age"] = self.correction.corrected_age(table["brain_age"], age)
            table["bag"] = self.correction.gap(table["brain_age"], age)
        return table

    def export(self, path: str | Path) -> Path:
        """SFCN as ONNX at `path`: preprocessed volumes (`reader.preprocessing(path)`,
        [B, 1, X, Y, Z]) in, `brain_age` [B] (years, uncorrected) out."""
        return export_onnx(PredictedAge(self.module, self.reader), self.reader.shape,
                           ["brain_age"], path)
