"""`neurocvae-synth`: render the planted-ground-truth synthetic cohort (and its report)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.synthetic.renderer import available_cores, generate_cohort
from neurocvae.synthetic.report import write_cohort_report
from neurocvae.synthetic.strength import recipe_from_config
from neurocvae.synthetic.variance import variance_shares

log = logging.getLogger(__name__)


@reports_input_errors
def synth(cfg: DictConfig) -> None:
    recipe = recipe_from_config(OmegaConf.to_container(cfg, resolve=True))
    workers = cfg.workers or available_cores()
    log.info("rendering %d subjects on the %s grid with %d processes into %s",
             recipe.n_subjects, recipe.grid.name, workers, cfg.out_dir)
    start = time.perf_counter()
    out_dir = generate_cohort(recipe, Path(cfg.out_dir), overwrite=cfg.overwrite, workers=workers)
    log.info("cohort written in %.1f s: %s", time.perf_counter() - start, out_dir / "manifest.csv")
    if cfg.report:
        report = write_cohort_report(out_dir, shares=variance_shares(recipe))
        print(f"Report: {report}")


@hydra.main(config_path=str(config_dir()), config_name="synth", version_base="1.3")
def main(cfg: DictConfig) -> None:
    synth(cfg)


if __name__ == "__main__":
    main()
