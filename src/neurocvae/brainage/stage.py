"""The brain-age stage, `run(cfg)`: train (or load) SFCN → predict → bias-correct → select.

`cfg` is `conf/brainage.yaml` composed. With `task=full` it writes into `out_dir`:
`brainage.csv` (every scan: split, whether it fitted the network or the correction, predicted
and corrected age, BAG), `lbc.json`, `metrics.json` and the plots, then `target.csv`,
`background.csv` and `selection.json`, and when it trains `checkpoints/` (`best.ckpt`,
`last.ckpt`) and `logs/`; started again on an unfinished training run's folder it resumes from
`last.ckpt`, to the batch. With `task=predict`
it predicts every scan of any table (ages and groups optional) with `weights` and writes
`brainage.csv` (the table plus `brain_age`; with `correction.file`, `corrected_age` and `bag`
where the age is known) and `metrics.json`.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from neurocvae.brainage import plots
from neurocvae.brainage.bins import AgeBins
from neurocvae.brainage.correction import BiasCorrection, agreement, require_controls
from neurocvae.brainage.module import BrainAgeModule
from neurocvae.brainage.precise_bn import PreciseBatchNorm
from neurocvae.brainage.selection import match_background, select_targets, summarise
from neurocvae.brainage.sfcn import load_weights
from neurocvae.checks import check_trainer, require_number
from neurocvae.data.cohort import HEALTHY
from neurocvae.data.datamodules import BrainAgeDataModule, default_splits_file
from neurocvae.errors import InputError
from neurocvae.files import write_json, write_text_atomically
from neurocvae.logs import check_loggers, run_loggers
from neurocvae.runs import (
    LastCheckpoint,
    check_every_n_batches,
    checkpoint_to_resume,
    cluster_plugins,
    fit_or_stop,
)

log = logging.getLogger(__name__)
RESULTS = ("brainage.csv", "lbc.json", "metrics.json", "target.csv", "background.csv")
TASKS = ("full", "predict")


def calibration_controls(split: str, controls: str = HEALTHY) -> str:
    return f"{controls} of the {split!r} split"


def controls_of(table: pd.DataFrame, split: str, controls: str = HEALTHY) -> pd.Series:
    """[N] bool: the healthy controls (group `controls`) of `split`."""
    return (table["group"] == controls) & (table["split"] == split)


def gather_predictions(trainer: pl.Trainer, batches: list[dict[str, Any]]) -> pd.DataFrame:
    """`subject_id` and `brain_age` (years) of every scan predicted by any rank. Under DDP each
    rank predicts its own part of the scans (each scan once: the prediction loader does not
    pad); the parts are gathered on every rank."""
    predicted = pd.DataFrame({
        "subject_id": [s for batch in batches for s in batch["subject_id"]],
        "brain_age": np.concatenate([batch["brain_age"].numpy() for batch in batches])})
    if trainer.world_size > 1:
        parts: list[pd.DataFrame | None] = [None] * trainer.world_size
        torch.distributed.all_gather_object(parts, predicted)
        predicted = pd.concat(parts, ignore_index=True)
    return predicted


def sfcn_module(cfg: DictConfig) -> BrainAgeModule:
    """SFCN (`cfg.net`), from `cfg.weights` when given, with its optimiser and age bins."""
    net = hydra.utils.instantiate(cfg.net)
    if cfg.weights:
        load_weights(net, cfg.weights)
    optim = hydra.utils.instantiate(cfg.optim)
    return BrainAgeModule(net, optimizer=optim.optimizer, scheduler=optim.scheduler,
                          bins=AgeBins(**cfg.bins), channels_last=cfg.channels_last,
                          seed=cfg.seed, net_config=OmegaConf.to_container(cfg.net, resolve=True))


def predict_every_scan(trainer: pl.Trainer, module: BrainAgeModule,
                       datamodule: BrainAgeDataModule, ckpt_path: str | None = None
                       ) -> pd.DataFrame | None:
    """`datamodule.table` (every usable scan) with `brain_age` (years); the throughput goes to
    the log and to `table.attrs["throughput"]`. None on every DDP rank but the first, which
    gets every prediction."""
    start = time.perf_counter()
    predicted = gather_predictions(
        trainer, trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt_path))
    if not trainer.is_global_zero:
        return None
    seconds = time.perf_counter() - start
    throughput = {"scans": len(predicted), "seconds": seconds,
                  "scans_per_second": len(predicted) / seconds, "devices": trainer.world_size}
    log.info("predicted %d scans in %.1f s (%.2f scans/s on %d device(s))", len(predicted),
             seconds, throughput["scans_per_second"], trainer.world_size)
    table = datamodule.table
    unpredicted = set(table["subject_id"]) - set(predicted["subject_id"])
    if unpredicted or not predicted["subject_id"].is_unique:
        raise RuntimeError(f"prediction covered {predicted['subject_id'].nunique()} of "
                           f"{len(table)} scans ({len(predicted)} predictions)")
    table = table.merge(predicted, on="subject_id", validate="one_to_one")
    table.attrs["throughput"] = throughput
    return table


def training_callbacks(cfg: DictConfig, out_dir: Path) -> list[pl.Callback]:
    """`best.ckpt` (lowest `val/mae`: it predicts), `last.ckpt` (resume), early stopping, and
    precise BatchNorm when asked."""
    chosen: list[pl.Callback] = [
        ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor="val/mae",
                        mode="min"),
        LastCheckpoint(out_dir / "checkpoints" / "last.ckpt", cfg.checkpoint.every_n_batches),
        EarlyStopping("val/mae", patience=cfg.early_stopping_patience)]
    if cfg.precise_bn_batches:
        chosen.insert(0, PreciseBatchNorm(cfg.precise_bn_batches))
    return chosen


def fit_sfcn(cfg: DictConfig, module: BrainAgeModule, datamodule: BrainAgeDataModule,
             out_dir: Path) -> pl.Trainer:
    """Train (or resume, from `<out_dir>/checkpoints/last.ckpt`) on the run machinery of the
    contrastive stage: checkpoints every `checkpoint.every_n_batches`, at epoch ends and on
    SIGTERM / SIGUSR1 (then `Stopped`), the chosen loggers, SLURM requeue, DDP."""
    with run_loggers(cfg, out_dir, reconstructions=False) as (loggers, logging_callbacks):
        trainer: pl.Trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[*training_callbacks(cfg, out_dir), *logging_callbacks],
            logger=loggers, plugins=cluster_plugins() or None)
        fit_or_stop(trainer, module, datamodule, checkpoint_to_resume("last", out_dir))
    return trainer


def predict_ages(cfg: DictConfig, datamodule: BrainAgeDataModule,
                 out_dir: Path) -> pd.DataFrame | None:
    """Train or load SFCN, then predict every usable scan: the manifest + split, `sfcn_fit`,
    `brain_age` (years). None on every DDP rank but the first, which gets every prediction."""
    bins = AgeBins(**cfg.bins)
    datamodule.prepare_data()
    datamodule.setup("fit")
    fit_on = cfg.correction.fit_on
    split = datamodule.split_of(datamodule.table["subject_id"])
    require_controls(controls_of(datamodule.table.assign(split=split), fit_on, cfg.controls).sum(),
                     cfg.correction.min_subjects, calibration_controls(fit_on, cfg.controls))
    bins.check(datamodule.table["age"], "scans")
    pl.seed_everything(cfg.seed, workers=True)  # after the cache: building it draws numbers
    module = sfcn_module(cfg)
    if cfg.train:
        bins.check(datamodule.splits["train"]["age"], "training subjects")
        trainer = fit_sfcn(cfg, module, datamodule, out_dir)
    else:
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    best = trainer.checkpoint_callback.best_model_path if cfg.train else None
    table = predict_every_scan(trainer, module, datamodule, best)
    if table is None:
        return None
    fitted = set(datamodule.splits["train"]["subject_id"]) if cfg.train else set()
    return table.assign(split=datamodule.split_of(table["subject_id"]),
                        sfcn_fit=table["subject_id"].isin(fitted))


def load_correction(path: str | Path) -> BiasCorrection:
    """A bias correction saved by an earlier run (`lbc.json`)."""
    try:
        return BiasCorrection.load(path)
    except FileNotFoundError:
        raise InputError(f"correction.file={path}: no such file (an lbc.json that "
                         "neurocvae-brainage wrote)") from None
    except (ValueError, TypeError) as error:
        raise InputError(f"correction.file={path}: not a bias correction written by "
                         f"neurocvae-brainage ({error})") from None


def predict_only(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """`task=predict`: brain age of every scan of `data.manifest` with `weights`, corrected by
    `correction.file` where the age is known; writes `brainage.csv` and `metrics.json`."""
    correction = load_correction(cfg.correction.file) if cfg.correction.file else None
    datamodule: BrainAgeDataModule = hydra.utils.instantiate(cfg.data, labelled=False)
    datamodule.prepare_data()
    datamodule.setup("predict")
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    table = predict_every_scan(trainer, sfcn_module(cfg), datamodule)
    if table is None:
        return {}
    aged = table["age"].notna()
    metrics: dict[str, Any] = {"scans": len(table), "with_age": int(aged.sum()),
                               "throughput": table.attrs["throughput"]}
    if aged.sum() >= 2:
        metrics["raw"] = agreement(table.loc[aged, "brain_age"], table.loc[aged, "age"])
    if correction is not None:
        table = table.assign(corrected_age=correction.corrected_age(table["brain_age"],
                                                                    table["age"]),
                             bag=correction.gap(table["brain_age"], table["age"]))
        metrics["correction"] = vars(correction)
        if aged.sum() >= 2:
            metrics["corrected"] = agreement(table.loc[aged, "corrected_age"],
                                             table.loc[aged, "age"])
    write_text_atomically(out_dir / "brainage.csv", table.to_csv(index=False))
    write_json(out_dir / "metrics.json", metrics)
    log.info("brain age of %d scans (%d with an age) → %s", len(table), aged.sum(),
             out_dir / "brainage.csv")
    return metrics


def correct(table: pd.DataFrame, correction_cfg: DictConfig | dict, controls: str = HEALTHY
            ) -> tuple[pd.DataFrame, BiasCorrection]:
    """Fit the bias correction on the controls (group `controls`) of split `fit_on` that did not
    train the network; add `lbc_fit`, `corrected_age` and `bag` (years) for everybody."""
    split = correction_cfg["fit_on"]
    fit = controls_of(table, split, controls) & ~table["sfcn_fit"]
    correction = BiasCorrection.fit(
        table.loc[fit, "brain_age"], table.loc[fit, "age"], form=correction_cfg["form"],
        min_subjects=correction_cfg["min_subjects"], min_slope=correction_cfg["min_slope"],
        fitted_on=calibration_controls(split, controls))
    return table.assign(lbc_fit=fit,
                        corrected_age=correction.corrected_age(table["brain_age"], table["age"]),
                        bag=correction.gap(table["brain_age"], table["age"])), correction


def measure(table: pd.DataFrame, report_on: str, controls: str = HEALTHY) -> dict[str, Any]:
    """Raw and corrected agreement on held-out controls, against always predicting the mean age
    of the subjects that fitted the network or the correction; mean BAG per group over the scans
    the network did not train on."""
    held_out = table[controls_of(table, report_on, controls) & ~table["sfcn_fit"]
                     & ~table["lbc_fit"]]
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


def select(table: pd.DataFrame, selection_cfg: DictConfig | dict, controls: str = HEALTHY
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Targets and age-matched background (group `controls`) among the scans the network did
    not train on."""
    mode = selection_cfg["mode"]
    candidates = table[~table["sfcn_fit"]]
    thresholds = dict(selection_cfg["thresholds"]) if mode == "bag" else None
    log.info("targets: %s", "every patient" if thresholds is None else "patients with BAG above "
             + ", ".join(f"{t} years ({group})" for group, t in thresholds.items()))
    targets = select_targets(candidates, thresholds, controls)
    if targets.empty:
        groups = sorted(set(candidates["group"]) - {controls})
        raise InputError(f"no patient passes the selection thresholds {thresholds} (patient "
                         f"groups: {groups}; a group without a threshold is left out)")
    background, short = match_background(
        targets, candidates[candidates["group"] == controls],
        bin_years=selection_cfg["bin_years"], fallback_years=selection_cfg["fallback_years"])
    summary = {"mode": mode, "thresholds": thresholds, "short_bins": short,
               **summarise(targets, background, bin_years=selection_cfg["bin_years"])}
    return targets, background, summary


def check_settings(cfg: DictConfig) -> None:
    """Refuse contradictory settings before any work is done."""
    existing = [name for name in RESULTS if (Path(cfg.out_dir) / name).exists()]
    if existing and not cfg.overwrite:
        raise InputError(f"{cfg.out_dir} already holds {existing}: set overwrite=true to replace "
                         "them, or choose another out_dir")
    check_loggers(cfg.get("logger"))
    check_every_n_batches(cfg.checkpoint.every_n_batches)
    if cfg.task not in TASKS:
        raise InputError(f"task={cfg.task!r}: expected one of {TASKS}")
    if cfg.task == "predict":
        if cfg.train:
            raise InputError("task=predict uses weights as they are: set train=false and "
                             "weights=<a weight file>")
        if cfg.data.preprocessing.normalise == "minmax_global":
            raise InputError("task=predict needs a per-scan intensity normalisation "
                             "(data.preprocessing.normalise=mean or zscore_brain): "
                             "minmax_global is fitted on a training split")
    elif cfg.correction.file:
        raise InputError("correction.file applies a saved correction with task=predict; "
                         "task=full fits its own")
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
    if cfg.selection.mode == "bag":
        thresholds = cfg.selection.thresholds
        if not OmegaConf.is_dict(thresholds) or not thresholds:
            raise InputError(f"selection.thresholds={thresholds}: expected years of BAG per "
                             "patient group, e.g. {MDD:4,diabetes:0} (selection.mode=all: "
                             "every patient)")
        for group, years in thresholds.items():
            require_number(f"selection.thresholds.{group}", years, above=-float("inf"),
                           meaning="years of BAG")


def run(cfg: DictConfig) -> dict[str, Any]:
    """The whole stage; returns the measurements written to metrics.json ({} on every DDP rank
    but the first)."""
    check_settings(cfg)
    out_dir = Path(cfg.out_dir)
    if cfg.overwrite:  # a new run starts from nothing old; else an unfinished one resumes
        for name in ("checkpoints", "logs"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.task == "predict":
        return predict_only(cfg, out_dir)
    datamodule: BrainAgeDataModule = hydra.utils.instantiate(cfg.data,
                                                             train_groups=[cfg.controls])
    table = predict_ages(cfg, datamodule, out_dir)
    if table is None:  # another DDP rank: the first one corrects, selects and writes
        return {}
    table, correction = correct(table, cfg.correction, cfg.controls)
    metrics = {"correction": vars(correction),
               **measure(table, cfg.correction.report_on, cfg.controls)}
    correction.save(out_dir / "lbc.json")
    write_text_atomically(out_dir / "brainage.csv", table.to_csv(index=False))
    write_json(out_dir / "metrics.json", metrics)
    unfitted = table[~table["sfcn_fit"]]
    plots.plot_predictions(unfitted, out_dir / "predicted_vs_age.png",
                           title=f"{len(unfitted)} scans the network did not train on")
    plots.plot_bag_by_group(unfitted, out_dir / "bag_by_group.png")
    held = metrics["held_out_controls"]
    log.info("held-out %s (n=%d): MAE raw %.2f y, corrected %.2f y (mean-age MAE %.2f y); "
             "corr(gap, age) raw %.2f, corrected %.2f", cfg.controls, held["raw"]["n"],
             held["raw"]["mae"], held["corrected"]["mae"], held["mean_age_mae"],
             held["raw"]["r_error_age"], held["corrected"]["r_error_age"])
    log.info("mean BAG: %s", {g: round(v["mean"], 2) for g, v in metrics["bag_by_group"].items()})

    try:
        targets, background, summary = select(table, cfg.selection, cfg.controls)
    except InputError as error:
        raise InputError(f"{error}. The predictions, the correction and their metrics are "
                         f"written (brainage.csv, lbc.json, metrics.json in {out_dir})") from None
    selected = [*datamodule.table.columns, "brain_age", "bag"]  # a manifest, plus brain age
    for name, rows in (("target.csv", targets), ("background.csv", background)):
        # the splits the contrastive stage made of an earlier table do not fit this one
        default_splits_file(out_dir / name).unlink(missing_ok=True)
        write_text_atomically(out_dir / name, rows[selected].to_csv(index=False))
    write_json(out_dir / "selection.json", summary)
    plots.plot_age_histograms(targets, background, out_dir / "selection_ages.png",
                              bin_years=cfg.selection.bin_years)
    log.info("selected %d targets %s and %d background controls → %s", len(targets),
             targets["group"].value_counts().to_dict(), len(background), out_dir)
    return metrics
