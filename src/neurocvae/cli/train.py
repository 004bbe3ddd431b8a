"""`neurocvae-train`: the contrastive training stage with its quick check
(`neurocvae.evaluation.quick_check.fit_and_check`) as a command."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir, with_moved_settings
from neurocvae.evaluation.quick_check import fit_and_check

train = reports_input_errors(fit_and_check)  # InputError → one line on stderr, exit status 2


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    """Returns the best validation score (`monitor`, lower is better): what a hyperparameter
    search (`hparams_search=optuna`) minimises."""
    OmegaConf.resolve(cfg)
    return train(cfg).get("best_score")


def main() -> None:
    """The command line, its moved settings renamed (`neurocvae.config.MOVED_SETTINGS`)."""
    sys.argv[1:] = with_moved_settings("train", sys.argv[1:])
    train_app()


if __name__ == "__main__":
    main()
