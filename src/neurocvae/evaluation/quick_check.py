"""Training with its quick check: `fit`, then how well each latent space of the best model
separates the target groups of the training and validation splits (`separation.json`)."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from neurocvae.contrastive.latents import encode_split
from neurocvae.contrastive.training import Fitted, fit
from neurocvae.evaluation.scores import SPACES, separation
from neurocvae.files import write_json

log = logging.getLogger(__name__)


def quick_check(fitted: Fitted) -> dict[str, Any]:
    """Write and return `separation.json`: the checkpoint and its monitored validation score,
    and per split the silhouette and k-means ARI of the true groups among the targets' codes
    in each space."""
    summary: dict[str, Any] = {"checkpoint": fitted.checkpoint, "monitor": fitted.monitor,
                               "best_score": fitted.best_score, "spaces": {}}
    for split in ("train", "val"):
        codes = encode_split(fitted.module, fitted.datamodule, split, role="target")
        summary["spaces"][split] = separation(codes)
    write_json(fitted.out_dir / "separation.json", summary)
    val = summary["spaces"]["val"]
    for space in SPACES:
        if space in val:
            log.info("validation targets (n=%d), %s space: silhouette %.3f, k-means ARI %.3f",
                     val["n"], space, val[space]["silhouette"], val[space]["kmeans_ari"])
    return summary


def fit_and_check(cfg: DictConfig) -> dict[str, Any]:
    """`fit` the run of `cfg` (conf/train.yaml), then `quick_check` it; returns what
    separation.json holds ({} on every DDP rank but the first)."""
    fitted = fit(cfg)
    return quick_check(fitted) if fitted else {}
