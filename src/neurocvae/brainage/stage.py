"""The brain-age stage, `run(cfg)`: train (or load) SFCN → predict → bias-correct → select.

`cfg` is `conf/brainage.yaml` composed. Writes into `out_dir`: `brainage.csv` (every scan:
split, whether it fitted the network or the correction, predicted and corrected age, BAG),
`lbc.json`, `metrics.json`, `target.csv`, `background.csv`, `selection.json`, the plots, and
`checkpoints/` when it trains.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from neurocvae.brainage import plots
from neurocvae.brainage.bins import AgeBins
from neurocvae.brainage.correction import BiasCorrection, agreement, require_controls
from neurocvae.brainage.module import BrainAgeModule
from neurocvae.brainage.selection import match_background, select_targets, summarise
from neurocvae.brainage.sfcn import load_weights
from neurocvae.checks import check_trainer, require_number
from neurocvae.data.cohort import HEALTHY
from neurocvae.data.datamodules import BrainAgeDataModule
from neurocvae.errors import InputError
from neurocvae.files import write_json

log = logging.getLogger(__name__)
RESULTS = ("brainage.csv", "target.csv", "background.csv", "checkpoints", "logs")


def calibration_controls(split: str) -> str:
    return f"{HEALTHY} of the {split!r} split"


def controls_of(table: pd.DataFrame, split: str) -> pd.Series:
    """[N] bool: the healthy controls of `split`."""
    return (table["group"] == HEALTHY) & (table["split"] == split)


def gather_predictions(trainer: pl.Trainer, batches: list[dict[str, Any]]) -> pd.DataFrame:
    """`subject_id` and `brain_age` (years) of every scan predicted by any rank. Under DDP each
    rank predicts its own part of the scans (each scan once: Lightning's unrepeated sampler);
    the parts are gathered on every rank."""
    predicted = pd.DataFrame({
        "subject_id": [s for batch in batches for s in batch["subject_id"]],
        "brain_age": np.concatenate([batch["brain_age"].numpy() for batch in batches])})
    if trainer.world_size > 1:
        parts: list[pd.DataFrame | None] = [None] * trainer.world_size
        torch.distributed.all_gather_object(parts, predicted)
        predicted = pd.concat(parts, ignore_index=True)
    return predicted


def predict_ages(cfg: DictConfig, datamodule: BrainAgeDataModule,
                 out_dir: Path) -> pd.DataFrame | None:
    """Train or load SFCN, then predict every usable scan: the manifest + split, `sfcn_fit`,
    `brain_age` (years). None on every DDP rank but the first, which gets every prediction."""
    bins = AgeBins(**cfg.bins)
    datamodule.prepare_data()
    datamodule.setup("fit")
    table = datamodule.table.assign(split=datamodule.split_of(datamodule.table["subject_id"]))
    fit_on = cfg.correction.fit_on
    require_controls(controls_of(table, fit_on).sum(), cfg.correction.min_subjects,
                     calibration_controls(fit_on))
    net = hydra.utils.instantiate(cfg.net)
    if cfg.weights:
        load_weights(net, cfg.weights)
    optim = hydra.utils.instantiate(cfg.optim)
    module = BrainAgeModule(net, optimizer=optim.optimizer, scheduler=optim.scheduler, bins=bins,
                            channels_last=cfg.channels_last)
    callbacks = []
    if cfg.train:
        bins.check(datamodule.splits["train"]["age"], "training subjects")
        callbacks = [ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best",
                                     monitor="val/mae", mode="min"),
                     EarlyStopping("val/mae", patience=cfg.early_stopping_patience)]
    bins.check(table["age"], "scans")
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=CSVLogger(out_dir, name="logs", version=""))
    if cfg.train:
        trainer.fit(module, datamodule=datamodule)
    best = "best" if cfg.train else None
    predicted = gather_predictions(
        trainer, trainer.predict(module, datamodule=datamodule, ckpt_path=best))
    if not trainer.is_global_zero:
        return None
    unpredicted = set(table["subject_id"]) - set(predicted["subject_id"])
    if unpredicted or not predicted["subject_id"].is_unique:
        raise RuntimeError(f"prediction covered {predicted['subject_id'].nunique()} of "
                           f"{len(table)} scans ({len(predicted)} predictions)")
    fitted = set(datamodule.splits["train"]["subject_id"]) if cfg.train else set()
    return (table.assign(sfcn_fit=table["subject_id"].isin(fitted))
            .merge(predicted, on="subject_id", validate="one_to_one"))


def correct(table: pd.DataFrame, correction_cfg: DictConfig | dict) -> tuple[pd.DataFrame,
                                                                            BiasCorrection]:
    """Fit the bias correction on the controls of split `fit_on` that did not train the network;
    add `lbc_fit`, `corrected_age` and `bag` (years) for everybody."""
    split = correction_cfg["fit_on"]
    fit = controls_of(table, split) & ~table["sfcn_fit"]
    correction = BiasCorrection.fit(
        table.loc[fit, "brain_age"], table.loc[fit, "age"], form=correction_cfg["form"],
        min_subjects=correction_cfg["min_subjects"], min_slope=correction_cfg["min_slope"],
        fitted_on=calibration_controls(split))
    return table.assign(lbc_fit=fit,
                        corrected_age=correction.corrected_age(table["brain_age"], table["age"]),
                        bag=correction.gap(table["brain_age"], table["age"])), correction


def measure(table: pd.DataFrame, report_on: str) -> dict[str, Any]:
    """Raw and corrected agreement on held-out controls, against always predicting the mean age
    of the subjects that fitted the network or the correction; mean BAG per group over the scans
    the network did not train on."""
    held_out = table[controls_of(table, report_on) & ~table["sfcn_fit"] & ~table["lbc_fit"]]
    reference = table.loc[table["sfcn_fit"] | table["lbc_fit"], "age"].mean()
    unfitted = table[~table["sfcn_fit"]]
    return {
        "held_out_controls": {
            "split": report_on,
            "raw": agreement(held_out["brain_age"], held_out["age"]),
            "corrected": agreement(held_out["corrected_age"], held_out["age"]),
            "mean_age_mae": float((held_out["age"] - reference).abs().mean()),
        },
        "bag_by_group": {g: {"n": len(rows), "mean": float(rows["bag"].mean()),
                             "sd": float(rows["bag"].std())}
                         for g, rows in unfitted.groupby("group")},
    }


def select(table: pd.DataFrame, selection_cfg: DictConfig | dict
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Targets and age-matched background among the scans the network did not train on."""
    mode = selection_cfg["mode"]
    candidates = table[~table["sfcn_fit"]]
    thresholds = dict(selection_cfg["thresholds"]) if mode == "bag" else None
    targets = select_targets(candidates, thresholds)
    if targets.empty:
        raise InputError(f"no patient passes the selection thresholds {thresholds}")
    background, short = match_background(
        targets, candidates[candidates["group"] == HEALTHY], bin_years=selection_cfg["bin_years"],
        fallback_years=selection_cfg["fallback_years"])
    summary = {"mode": mode, "thresholds": thresholds, "short_bins": short,
               **summarise(targets, background, bin_years=selection_cfg["bin_years"])}
    return targets, background, summary


def check_settings(cfg: DictConfig) -> None:
    """Refuse contradictory settings before any work is done."""
    existing = [name for name in RESULTS if (Path(cfg.out_dir) / name).exists()]
    if existing and not cfg.overwrite:
        raise InputError(f"{cfg.out_dir} already holds {existing}: set overwrite=true to replace "
                         "them, or choose another out_dir")
    if cfg.train:
        require_number("optim.optimizer.lr", cfg.optim.optimizer.lr, above=0)
        check_trainer(cfg.trainer)
    if not cfg.train and not cfg.weights:
        raise InputError("train=false needs weights=<a weight file> to predict with")
    outputs, bins = cfg.net.get("output_dim"), AgeBins(**cfg.bins).count
    if outputs is not None and outputs != bins:
        raise InputError(f"net.output_dim={outputs} but bins {dict(cfg.bins)} make {bins} bins")
    for name in ("fit_on", "report_on"):
        if cfg.correction[name] not in cfg.data.split_fractions:
            raise InputError(f"correction.{name}={cfg.correction[name]!r} is not a split of "
                             f"data.split_fractions {list(cfg.data.split_fractions)}")
    if cfg.correction.fit_on == "train" and cfg.train:
        raise InputError("correction.fit_on=train: the correction must be fitted on controls "
                         "the network did not train on")
    if cfg.selection.mode not in ("bag", "all"):
        raise InputError(f"selection.mode={cfg.selection.mode!r}: expected 'bag' or 'all'")


def run(cfg: DictConfig) -> dict[str, Any]:
    """The whole stage; returns the measurements written to metrics.json ({} on every DDP rank
    but the first)."""
    check_settings(cfg)
    out_dir = Path(cfg.out_dir)
    for name in ("checkpoints", "logs"):  # overwrite=true: a new run starts from nothing old
        shutil.rmtree(out_dir / name, ignore_errors=True)
    pl.seed_everything(cfg.seed, workers=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule: BrainAgeDataModule = hydra.utils.instantiate(cfg.data)
    table = predict_ages(cfg, datamodule, out_dir)
    if table is None:  # another DDP rank: the first one corrects, selects and writes
        return {}
    table, correction = correct(table, cfg.correction)
    metrics = {"correction": vars(correction), **measure(table, cfg.correction.report_on)}
    targets, background, summary = select(table, cfg.selection)

    correction.save(out_dir / "lbc.json")
    table.to_csv(out_dir / "brainage.csv", index=False)
    selected = [*datamodule.table.columns, "brain_age", "bag"]  # a manifest, plus brain age
    targets[selected].to_csv(out_dir / "target.csv", index=False)
    background[selected].to_csv(out_dir / "background.csv", index=False)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "selection.json", summary)
    unfitted = table[~table["sfcn_fit"]]
    plots.plot_predictions(unfitted, out_dir / "predicted_vs_age.png",
                           title=f"{len(unfitted)} scans the network did not train on")
    plots.plot_bag_by_group(unfitted, out_dir / "bag_by_group.png")
    plots.plot_age_histograms(targets, background, out_dir / "selection_ages.png",
                              bin_years=cfg.selection.bin_years)
    held = metrics["held_out_controls"]
    log.info("held-out %s (n=%d): MAE raw %.2f y, corrected %.2f y (mean-age MAE %.2f y); "
             "corr(gap, age) raw %.2f, corrected %.2f", HEALTHY, held["raw"]["n"],
             held["raw"]["mae"], held["corrected"]["mae"], held["mean_age_mae"],
             held["raw"]["r_error_age"], held["corrected"]["r_error_age"])
    log.info("mean BAG: %s", {g: round(v["mean"], 2) for g, v in metrics["bag_by_group"].items()})
    log.info("selected %d targets %s and %d background controls → %s", len(targets),
             targets["group"].value_counts().to_dict(), len(background), out_dir)
    return metrics
