"""`neurocvae-train`: train a contrastive model on a target and a background set.

Writes into `out_dir`: `checkpoints/last.ckpt` (every epoch) and `checkpoints/best.ckpt` (best
`early_stopping.monitor`), `logs/metrics.csv`, `separation.json` (how well each latent space of
the best model separates the target groups), and for deterministic latents `density/` (the
ex-post Gaussian mixtures for sampling). Started again with the same `out_dir` it resumes from
`last.ckpt`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from neurocvae.cli import reports_input_errors
from neurocvae.config import config_dir
from neurocvae.contrastive.build import build_module, load_module
from neurocvae.contrastive.density import fit_densities
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.errors import InputError
from neurocvae.evaluation.latents import encode_split
from neurocvae.evaluation.scores import SPACES, separation
from neurocvae.logs import ResumableCSVLogger

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """The checkpoint `trainer.fit` starts from, per `ckpt_path`."""
    folder = Path(cfg.out_dir) / "checkpoints"
    if cfg.ckpt_path == "last":
        last = folder / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        return None
    if cfg.ckpt_path is None:
        if folder.is_dir() and any(folder.glob("*.ckpt")):
            raise InputError(f"{folder} holds checkpoints of an earlier run and ckpt_path=null: "
                             "use ckpt_path=last to resume it, or another out_dir / run_id")
        return None
    if not Path(cfg.ckpt_path).is_file():
        raise InputError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint")
    return str(cfg.ckpt_path)


def check_settings(cfg: DictConfig) -> None:
    """Refuse contradictory settings before any work is done."""
    if cfg.discriminator is None and cfg.gamma.value != 0:
        raise InputError(f"gamma.value={cfg.gamma.value} needs a discriminator "
                         "(discriminator=null drops the TC term): set gamma.value=0")
    if str(cfg.trainer.get("precision")) in ("16-mixed", "16"):
        raise InputError(f"trainer.precision={cfg.trainer.precision}: float16 needs loss "
                         "scaling, which this manual optimisation does not do; use bf16-mixed")
    if cfg.data.batch_size < 2:
        raise InputError(f"data.batch_size={cfg.data.batch_size}: the discriminator's product "
                         "sample needs at least 2 targets per step (4 or more is better)")
    if "val" not in cfg.data.split_fractions:
        raise InputError(f"data.split_fractions {dict(cfg.data.split_fractions)} needs a 'val' "
                         f"split: early stopping and the best checkpoint watch "
                         f"{cfg.early_stopping.monitor}")


def callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    monitor = cfg.early_stopping.monitor
    chosen = [ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor=monitor,
                              mode="min"),
              ModelCheckpoint(dirpath=out_dir / "checkpoints", save_top_k=0, save_last=True)]
    if cfg.early_stopping.patience:
        chosen.append(EarlyStopping(monitor, patience=cfg.early_stopping.patience))
    return chosen


@reports_input_errors
def train(cfg: DictConfig) -> dict[str, Any]:
    """The whole command; returns what separation.json holds."""
    check_settings(cfg)
    out_dir = Path(cfg.out_dir)
    resume = checkpoint_to_resume(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule: ContrastiveDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.image_shape)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks(cfg, out_dir),
        logger=ResumableCSVLogger(out_dir))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    best = trainer.checkpoint_callback.best_model_path or None
    module = load_module(best) if best else module.eval()
    summary = {"checkpoint": best, "spaces": {}}
    for split in ("train", "val"):
        codes = encode_split(module, datamodule, split, role="target")
        summary["spaces"][split] = separation(codes)
    if not module.stochastic:
        fit_densities(module, datamodule, out_dir / "density", seed=cfg.seed)
    (out_dir / "separation.json").write_text(json.dumps(summary, indent=1) + "\n")
    val = summary["spaces"]["val"]
    for space in SPACES:
        if space in val:
            log.info("validation targets (n=%d), %s space: silhouette %.3f, k-means ARI %.3f",
                     val["n"], space, val[space]["silhouette"], val[space]["kmeans_ari"])
    log.info("run folder: %s", out_dir)
    return summary


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    train(cfg)


if __name__ == "__main__":
    main()
