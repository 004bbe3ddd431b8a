"""`neurocvae-ukbb-manifest`: a manifest (and excluded.csv) from UK Biobank fields and images."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.data.cohort import read_manifest
from neurocvae.data.ukbb import build_ukbb_manifest
from neurocvae.errors import InputError

log = logging.getLogger(__name__)


@reports_input_errors
def ukbb_manifest(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise InputError(f"{out} exists: set overwrite=true to replace it")
    manifest, excluded = build_ukbb_manifest(Path(cfg.phenotypes), Path(cfg.imaging_root),
                                             image=cfg.image)
    if manifest.empty:
        raise InputError(f"no participant qualifies; reasons: "
                         f"{excluded['reason'].value_counts().to_dict()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out, index=False)
    excluded.to_csv(out.with_name("excluded.csv"), index=False)
    read_manifest(out)  # what was written is a valid cohort table
    counts = manifest["group"].value_counts().to_dict()
    log.info("manifest: %d scans %s → %s", len(manifest), counts, out)
    log.info("excluded: %d %s → %s", len(excluded), excluded["reason"].value_counts().to_dict(),
             out.with_name("excluded.csv"))
    return out


@hydra.main(config_path=str(config_dir()), config_name="ukbb_manifest", version_base="1.3")
def main(cfg: DictConfig) -> None:
    ukbb_manifest(cfg)


if __name__ == "__main__":
    main()
