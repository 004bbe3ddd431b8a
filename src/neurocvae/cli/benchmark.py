"""`neurocvae-benchmark`: the benchmark stage (`neurocvae.evaluation.benchmark.run`) as a
command."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.evaluation.benchmark import run

benchmark = reports_input_errors(run)  # InputError → one line on stderr, exit status 2


@hydra.main(config_path=str(config_dir()), config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    benchmark(cfg)


if __name__ == "__main__":
    main()
