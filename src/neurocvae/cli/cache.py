"""`neurocvae-cache`: list the entries of a volume cache, or prune them."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from neurocvae.checks import require_number
from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.data.cache import describe, prune
from neurocvae.errors import InputError

log = logging.getLogger(__name__)


@reports_input_errors
def cache(cfg: DictConfig) -> pd.DataFrame:
    """Prune (if asked), then list the entries that remain; returns the listing."""
    cache_dir = Path(str(cfg.cache_dir))
    if not cache_dir.is_dir():
        raise InputError(f"cache_dir={cache_dir}: no such folder")
    if cfg.unused_days is not None:
        require_number("unused_days", cfg.unused_days, at_least=0)
    if cfg.prune:
        before = describe(cache_dir)["gigabytes"].sum()
        removed = prune(cache_dir, unused_days=cfg.unused_days)
        log.info("removed %d folder(s), %.2f GB freed", len(removed),
                 before - describe(cache_dir)["gigabytes"].sum())
    listing = describe(cache_dir)
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(listing.to_string(index=False, float_format=lambda x: f"{x:.3f}")
              if len(listing) else f"{cache_dir}: no cache entries")
    return listing


@hydra.main(config_path=str(config_dir()), config_name="cache", version_base="1.3")
def main(cfg: DictConfig) -> None:
    cache(cfg)


if __name__ == "__main__":
    main()
