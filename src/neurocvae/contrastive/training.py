"""The contrastive training stage, `fit(cfg)`: a contrastive model on a target and a background
set, `cfg` being `conf/train.yaml` composed.

Writes into `out_dir`: `checkpoints/last.ckpt` (every `checkpoint.every_n_batches` batches, at
each epoch's end, and on SIGTERM / SIGUSR1) and `checkpoints/best.ckpt` (best
`monitor`), `logs/metrics.csv`, and for deterministic latents `density/` (the
ex-post Gaussian mixtures for sampling). Started again with the same `out_dir` it resumes from
`last.ckpt`, to the batch (`neurocvae.runs`). Under DDP, rank 0 writes the files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from neurocvae.checks import check_trainer, require_number
from neurocvae.contrastive.build import build_module, load_module
from neurocvae.contrastive.density import fit_densities
from neurocvae.contrastive.linear import initialise_linear
from neurocvae.contrastive.losses import RECONSTRUCTIONS
from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.contrastive.nets import SHARED_PROJECTIONS, AdditiveDecoder, ContrastiveNets
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.errors import InputError
from neurocvae.logs import check_loggers, run_loggers
from neurocvae.runs import (
    LastCheckpoint,
    check_every_n_batches,
    check_launch,
    checkpoint_to_resume,
    cluster_plugins,
    fit_or_stop,
)

log = logging.getLogger(__name__)


def check_settings(cfg: DictConfig) -> None:
    """Refuse contradictory settings before any work is done."""
    for name in ("beta", "gamma"):
        require_number(f"{name}.value", cfg[name].value, at_least=0)
    for name in ("optimizer", "discriminator_optimizer"):
        require_number(f"{name}.lr", cfg[name].lr, above=0)
    check_trainer(cfg.trainer)
    shape, stages = cfg.data.preprocessing.shape, len(cfg.arch.get("channels", ()))
    if shape is not None and min(shape) < 2 ** stages:
        raise InputError(f"data.preprocessing.shape={list(shape)} is too small for the "
                         f"networks: their {stages} stride-2 stages need at least "
                         f"{2 ** stages} voxels along every axis")
    if cfg.discriminator is None and cfg.gamma.value != 0:
        raise InputError(f"gamma.value={cfg.gamma.value} needs a discriminator "
                         "(discriminator=null drops the TC term): set gamma.value=0")
    if str(cfg.trainer.get("precision")) in ("16-mixed", "16"):
        raise InputError(f"trainer.precision={cfg.trainer.precision}: float16 needs loss "
                         "scaling, which this manual optimisation does not do; use bf16-mixed")
    if cfg.data.batch_size < 2:
        raise InputError(f"data.batch_size={cfg.data.batch_size}: the discriminator's product "
                         "sample needs at least 2 targets per step (4 or more is better)")
    check_every_n_batches(cfg.checkpoint.every_n_batches)
    check_loggers(cfg.get("logger"))
    if cfg.model.get("reconstruction", "fixed") not in RECONSTRUCTIONS:
        raise InputError(f"model.reconstruction={cfg.model.reconstruction}: expected one of "
                         f"{RECONSTRUCTIONS}")
    require_number("initialise.contrast", cfg.get("initialise", {}).get("contrast", 1.0),
                   above=0, meaning="contrastive PCA's weight of the backgrounds' covariance")
    share_detail = cfg.get("initialise", {}).get("share_detail")
    if share_detail is not None:
        require_number("initialise.share_detail", share_detail, above=0,
                       meaning="where a salient pattern's finer detail is fitted: above this "
                       "share of its peak, below 1; null: not at all")
        if share_detail >= 1:
            raise InputError(f"initialise.share_detail={share_detail}: expected a share of the "
                             "pattern's peak below 1 (null: no detail)")
    for switch in ("linear", "outside_detail", "freeze_salient_means"):
        value = cfg.get("initialise", {}).get(switch, True)
        if not isinstance(value, bool):
            raise InputError(f"initialise.{switch}={value}: expected true or false")
    for name in ("linear_voxels", "salient_linear_voxels", "projection_voxels"):
        if cfg.arch.get(name) is not None:
            require_number(f"arch.{name}", cfg.arch[name], at_least=1,
                           meaning="the voxels of a linear path's grid, at most")
    salient_voxels = cfg.arch.get("salient_linear_voxels")
    if salient_voxels is not None and salient_voxels > cfg.arch.linear_voxels:
        raise InputError(f"arch.salient_linear_voxels={salient_voxels} exceeds "
                         f"arch.linear_voxels={cfg.arch.linear_voxels}: the salient images lie "
                         "on the shared images' grid or a coarser one")
    if cfg.arch.get("shared_projection", "coarse") not in SHARED_PROJECTIONS:
        raise InputError(f"arch.shared_projection={cfg.arch.shared_projection}: expected one "
                         f"of {SHARED_PROJECTIONS}")
    if "val" not in cfg.data.split_fractions:
        raise InputError(f"data.split_fractions {dict(cfg.data.split_fractions)} needs a 'val' "
                         f"split: early stopping and the best checkpoint watch "
                         f"{cfg.monitor}")
    chosen_callbacks(cfg.get("callbacks"))


def check_resumable_frozen(checkpoint: str) -> None:
    """Refuse to resume, with the salient code means frozen, a run whose salient mean head has
    trained: it would stay at the values it has reached, neither the run it was nor a frozen
    one."""
    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    head = [value for name, value in state["state_dict"].items()
            if name.startswith("nets.salient_encoder.mu.")]
    if any(value.any() for value in head):
        raise InputError(f"{checkpoint}: this run's salient mean head has trained (it ran with "
                         "initialise.freeze_salient_means=false, or began before that option), "
                         "and with the option true it would stay at its trained values: resume "
                         "it with initialise.freeze_salient_means=false")


def freeze_salient_means(nets: ContrastiveNets) -> None:
    """Keep the salient code means at the linear start's projection: the salient encoder's
    learnt mean head stays at its start (zero); of that encoder only the posterior variances
    train."""
    nets.salient_encoder.mu.requires_grad_(False)


def chosen_callbacks(settings: DictConfig | None) -> list[pl.Callback]:
    """The callbacks of the `callbacks` group, one per entry with a `_target_`; early stopping
    with `patience: null` is left out."""
    chosen = []
    for name, entry in (settings or {}).items():
        if entry is None or ("patience" in entry and entry.patience is None):
            continue
        if "_target_" not in entry:
            raise InputError(f"callbacks.{name} {OmegaConf.to_container(entry)} has no "
                             "_target_ (the callback's class): choose it with callbacks=… or "
                             f"set callbacks.{name}._target_")
        try:
            chosen.append(hydra.utils.instantiate(entry))
        except InstantiationException as error:
            raise InputError(f"callbacks.{name}: {error.__cause__ or error}") from error
    return chosen


def callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    """`best.ckpt` (lowest `monitor`), `last.ckpt`, and the chosen callbacks."""
    return [ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best",
                            monitor=cfg.monitor, mode="min"),
            LastCheckpoint(out_dir / "checkpoints" / "last.ckpt", cfg.checkpoint.every_n_batches),
            *chosen_callbacks(cfg.get("callbacks"))]


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@dataclass
class Fitted:
    """A finished fit: the best model (eval mode), its data, checkpoint and run folder, and the
    best value of the monitored validation metric (`monitor`)."""

    module: ContrastiveModule
    datamodule: ContrastiveDataModule
    checkpoint: str | None
    out_dir: Path
    monitor: str
    best_score: float | None


def fit(cfg: DictConfig) -> Fitted | None:
    """Train (or resume) the run of `cfg`; None on every DDP rank but the first. A SIGTERM or
    SIGUSR1 stops it with `Stopped` after writing `last.ckpt`."""
    check_settings(cfg)
    multirun = is_multirun()
    check_launch(cfg.trainer, multirun)
    out_dir = Path(cfg.out_dir)
    resume = checkpoint_to_resume(cfg.ckpt_path, out_dir)
    chosen = callbacks(cfg, out_dir)
    with run_loggers(cfg, out_dir, multirun=multirun) as (loggers, logging_callbacks):
        try:  # before any data work: the accelerator and devices must exist
            trainer: pl.Trainer = hydra.utils.instantiate(
                cfg.trainer, callbacks=[*chosen, *logging_callbacks], logger=loggers,
                plugins=cluster_plugins() or None)
        except InstantiationException as error:
            if not isinstance(error.__cause__, MisconfigurationException):
                raise
            raise InputError(f"trainer settings (accelerator {cfg.trainer.accelerator}, devices "
                             f"{cfg.trainer.devices}): {error.__cause__}") from error
        datamodule: ContrastiveDataModule = hydra.utils.instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        pl.seed_everything(cfg.seed, workers=True)  # after the cache: building it draws numbers
        module = build_module(cfg, datamodule.image_shape)
        if isinstance(module.nets.decoder, AdditiveDecoder):
            if not resume:
                initialise_linear(module.nets, datamodule, projections=cfg.initialise.linear,
                                  contrast=cfg.initialise.contrast,
                                  outside_detail=cfg.initialise.get("outside_detail", True),
                                  share_detail=cfg.initialise.get("share_detail"))
            if (cfg.initialise.linear and cfg.initialise.get("freeze_salient_means", True)
                    and module.nets.salient_encoder is not None):
                if resume:
                    check_resumable_frozen(resume)
                freeze_salient_means(module.nets)
        fit_or_stop(trainer, module, datamodule, resume)
    if not trainer.is_global_zero:  # the other DDP ranks are done
        return None
    best_checkpoint = next(c for c in chosen if isinstance(c, ModelCheckpoint))
    best = best_checkpoint.best_model_path or None
    score = best_checkpoint.best_model_score
    module = load_module(best) if best else module.eval()
    if not module.stochastic:
        fit_densities(module, datamodule, out_dir / "density", seed=cfg.seed)
    log.info("run folder: %s", out_dir)
    return Fitted(module, datamodule, best, out_dir, cfg.monitor,
                  float(score) if score is not None else None)
