"""`neurocvae-eval`: evaluate a `neurocvae-train` run folder or a multirun sweep folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.errors import InputError
from neurocvae.evaluation.evaluate import evaluate_run, evaluate_sweep, is_run, sweep_runs

log = logging.getLogger(__name__)


@reports_input_errors
def evaluate(cfg: DictConfig) -> Any:
    """The whole command: metrics.json of a run, or the comparison table of a sweep."""
    run = Path(cfg.run)
    if not run.is_dir():
        raise InputError(f"run={run}: no such folder")
    options = {"checkpoint": cfg.checkpoint, "split": cfg.split,
               "baselines": tuple(cfg.baselines), "examples": cfg.examples,
               "embedding": cfg.embedding, "wandb": cfg.wandb}
    if is_run(run) or not sweep_runs(run):
        metrics = evaluate_run(run, cfg.out_dir, **options)
        log.info("report: %s (and report.html)", Path(cfg.out_dir or run / "eval") / "report.md")
        return metrics
    table = evaluate_sweep(run, cfg.out_dir, **options)
    log.info("comparison of %d runs: %s (and comparison.html)", len(table),
             Path(cfg.out_dir or run) / "comparison.md")
    return table


@hydra.main(config_path=str(config_dir()), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
