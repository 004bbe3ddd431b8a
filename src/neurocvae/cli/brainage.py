"""`neurocvae-brainage`: the brain-age stage (`neurocvae.brainage.stage.run`) as a command."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from neurocvae.brainage.stage import run
from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir

brainage = reports_input_errors(run)  # InputError → one line on stderr, exit status 2


@hydra.main(config_path=str(config_dir()), config_name="brainage", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    brainage(cfg)


if __name__ == "__main__":
    main()
