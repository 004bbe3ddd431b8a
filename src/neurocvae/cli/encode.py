"""`neurocvae-encode`: codes and maps of new scans from a trained `neurocvae-train` model."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from neurocvae.checks import require_number
from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.contrastive.trained import TrainedModel, write_encoding


@reports_input_errors
def encode(cfg: DictConfig) -> pd.DataFrame:
    """The whole command; returns the codes it wrote."""
    require_number("batch_size", cfg.batch_size, at_least=1)
    model = TrainedModel.load(cfg.run, checkpoint=cfg.checkpoint, device=cfg.device,
                              batch_size=int(cfg.batch_size))
    model.show_progress = True
    return write_encoding(model, str(cfg.scans), Path(cfg.out_dir), maps=list(cfg.maps),
                          native=bool(cfg.native))


@hydra.main(config_path=str(config_dir()), config_name="encode", version_base="1.3")
def main(cfg: DictConfig) -> None:
    encode(cfg)


if __name__ == "__main__":
    main()
