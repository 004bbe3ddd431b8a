"""`neurocvae-encode`: codes and maps of new scans from a trained `neurocvae-train` model."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from neurocvae.checks import require_number
from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.contrastive.trained import TrainedModel, write_encoding
from neurocvae.errors import InputError

log = logging.getLogger(__name__)


@reports_input_errors
def encode(cfg: DictConfig) -> pd.DataFrame | None:
    """The whole command; returns the codes it wrote (None when it only exports)."""
    require_number("batch_size", cfg.batch_size, at_least=1)
    require_number("num_workers", cfg.num_workers, at_least=0)
    if cfg.scans is None and cfg.export is None:
        raise InputError("nothing to do: give scans=<table or folder> (with out_dir=…), "
                         "export=<file.onnx>, or both")
    if cfg.scans is not None and cfg.out_dir is None:
        raise InputError("scans=… needs out_dir=<folder> for latents.csv and the maps")
    model = TrainedModel.load(cfg.run, checkpoint=cfg.checkpoint, device=cfg.device,
                              batch_size=int(cfg.batch_size))
    model.reader.show_progress = True
    model.reader.num_workers = int(cfg.num_workers)
    if cfg.export is not None:
        log.info("encoders exported to %s", model.export(cfg.export))
    if cfg.scans is None:
        return None
    return write_encoding(model, str(cfg.scans), Path(cfg.out_dir), maps=list(cfg.maps),
                          native=bool(cfg.native))


@hydra.main(config_path=str(config_dir()), config_name="encode", version_base="1.3")
def main(cfg: DictConfig) -> None:
    encode(cfg)


if __name__ == "__main__":
    main()
