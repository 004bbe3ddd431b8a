"""`neurocvae-ukbb-manifest`: a manifest (and excluded.csv) from UK Biobank fields and images."""

from __future__ import annotations

import logging
import os
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
    out = Path(str(cfg.out))
    if out.exists() and not cfg.overwrite:
        raise InputError(f"{out} exists: set overwrite=true to replace it")
    # absolute image paths: the manifest is read relative to its own folder, not this one
    manifest, excluded = build_ukbb_manifest(Path(str(cfg.phenotypes)).resolve(),
                                             Path(str(cfg.imaging_root)).resolve(),
                                             image=cfg.image)
    if manifest.empty:
        raise InputError(f"no participant qualifies; reasons: "
                         f"{excluded['reason'].value_counts().to_dict()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {out: manifest, out.with_name("excluded.csv"): excluded}
    staged = {path: path.with_name(f".{path.name}.{os.getpid()}") for path in written}
    try:
        for path, table in written.items():
            table.to_csv(staged[path], index=False)
        try:  # a valid cohort table, or nothing is left behind
            read_manifest(staged[out])
        except InputError as error:
            raise InputError(f"{str(error).replace(str(staged[out]), str(out))}\n(nothing "
                             "was written)") from None
        for path, partial in staged.items():
            os.replace(partial, path)
    finally:
        for partial in staged.values():
            partial.unlink(missing_ok=True)
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
