"""Evaluate a `neurocvae-train` run folder, or every run of a multirun sweep folder.

A run folder holds `.hydra/config.yaml` (how its data were read), `checkpoints/best.ckpt` and
`logs/metrics.csv`. Evaluation writes into `<run>/eval/` (or `out_dir`): `latents.csv`,
`metrics.json`, the figures, salient-map NIfTIs and `report.md`. Ground truth (a synthetic
cohort's `ground_truth.csv`, found beside the volumes' folder) adds the planted-factor metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import nibabel as nib
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.latents import encode_roles
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.errors import InputError
from neurocvae.evaluation import plots
from neurocvae.evaluation.baselines import baseline_latents, check_baselines, ve_pooling
from neurocvae.evaluation.decoded import decode_split, mean_image
from neurocvae.evaluation.html import write_comparison_html, write_html_report
from neurocvae.evaluation.report import COLUMN_NOTES, headline, markdown_table, write_report
from neurocvae.evaluation.scores import beyond_training, score_latents
from neurocvae.evaluation.wandb_log import log_evaluation
from neurocvae.files import run_checkpoint, write_json, write_text_atomically
from neurocvae.synthetic.layout import CohortFolder

log = logging.getLogger(__name__)

def is_run(folder: Path) -> bool:
    return (folder / ".hydra" / "config.yaml").is_file() and (folder / "checkpoints").is_dir()


def run_config(run_dir: Path) -> DictConfig:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a neurocvae-train run folder (no {path}) nor a "
                         "sweep folder of them")
    cfg = OmegaConf.load(path)
    if not OmegaConf.select(cfg, "data.target") or "arch" not in cfg:
        raise InputError(f"{run_dir} is not a neurocvae-train run folder: {path} has no "
                         "data.target or arch (a run of another command?)")
    return cfg


def run_datamodule(cfg: DictConfig) -> ContrastiveDataModule:
    """The run's DataModule with its splits (the splits file written at training)."""
    data = OmegaConf.merge(cfg.data, {"out_dir": None})  # the run's own ${out_dir}: Hydra's
    datamodule: ContrastiveDataModule = hydra.utils.instantiate(data)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def choose_split(datamodule: ContrastiveDataModule, split: str) -> str:
    """`auto`: the test split when the run has one, else val."""
    if split == "auto":
        split = "test" if "test" in datamodule.splits else "val"
    datamodule.require_split(split)
    return split


def find_cohort(paths: pd.Series) -> CohortFolder | None:
    """The synthetic cohort the volumes come from, when they come from one with its ground
    truth (None for real data)."""
    folders = {CohortFolder.of_volume(p) for p in paths}
    return next((f for f in sorted(folders, key=str) if f.has_truth()), None)


def with_truth(table: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame:
    """Add every ground-truth column the latents table lacks, by subject_id."""
    if truth is None:
        return table
    extra = [c for c in truth.columns if c not in table.columns]
    codes = [c for c in table.columns if c.startswith(("shared_", "salient_"))]
    merged = table.drop(columns=codes).merge(truth[["subject_id", *extra]], on="subject_id",
                                             how="left")
    return pd.concat([merged, table[codes]], axis=1)


def save_salient_maps(maps: dict[str, np.ndarray], affine: np.ndarray, out_dir: Path,
                      centres: dict[str, dict], *, figures: bool = True) -> list[dict[str, Any]]:
    """Write each group's map as NIfTI (and PNG with `figures`); return their peak and each
    planted pattern's distance to it (from its nearest centre)."""
    saved = []
    for group, volume in maps.items():
        nifti = out_dir / f"salient_map_{group}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), nifti)
        peak = np.unravel_index(np.argmax(np.abs(volume)), volume.shape)
        peak_mm = (affine @ np.array([*peak, 1]))[:3]
        carried = {name: c.get("centres_mm", [c["centre_mm"]]) for name, c in centres.items()
                   if group in c["groups"]}
        planted = {name: round(min(float(np.linalg.norm(peak_mm - np.asarray(point)))
                                   for point in points), 1)
                   for name, points in carried.items()}
        png = plots.plot_salient_map(
            nifti, out_dir / f"salient_map_{group}.png", f"{group}: mean D([z,s]) − D([z,0])",
            [point for points in carried.values() for point in points]) if figures else None
        saved.append({"group": group, "nifti": nifti.name, "png": png.name if png else None,
                      "peak_mm": [round(float(v), 1) for v in peak_mm],
                      "peak_value": float(volume[peak]), "planted_distance_mm": planted})
    return saved


def evaluate_run(run_dir: str | Path, out_dir: str | Path | None = None, *,
                 checkpoint: str = "best", split: str = "auto",
                 baselines: tuple[str, ...] = (), examples: int = 3,
                 figures: bool = True, embedding: str = "pca",
                 wandb: bool = True) -> dict[str, Any]:
    """Evaluate one run folder; returns what `metrics.json` holds. `figures=False` skips the
    pictures and `report.html` (metrics, latents, NIfTI maps and `report.md` are still
    written); `embedding` (pca, umap) draws the codes in 2-D; with `wandb`, a run that logged
    to W&B gets the evaluation too (`wandb_log`)."""
    run_dir = Path(run_dir)
    check_baselines(baselines)  # before any work
    plots.check_embedding(embedding)
    cfg = run_config(run_dir)
    ckpt = run_checkpoint(run_dir, checkpoint)
    module = load_module(ckpt)  # before any volume is read
    out_dir = Path(out_dir) if out_dir else run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule = run_datamodule(cfg)
    split = choose_split(datamodule, split)
    targets = datamodule.splits[split]["target"]
    cohort = find_cohort(targets["path"])
    truth_file = cohort.ground_truth if cohort else None
    truth = pd.read_csv(truth_file) if truth_file else None
    log.info("evaluating %s on the %s split (%d targets, %d backgrounds)%s", ckpt, split,
             len(targets), len(datamodule.splits[split]["background"]),
             f", ground truth {truth_file}" if truth_file else "")

    train = encode_roles(module, datamodule, "train")
    test = with_truth(encode_roles(module, datamodule, split), truth)
    test.to_csv(out_dir / "latents.csv", index=False)
    metrics: dict[str, Any] = {"run": str(run_dir), "checkpoint": str(ckpt), "split": split,
                               "ground_truth": str(truth_file) if truth_file else None,
                               **score_latents(test, train),
                               "beyond_training": beyond_training(test, train)}
    twins = {}
    if truth is not None and "twin_path" in truth:
        root = cohort.root
        twins = {row.subject_id: str(root / row.twin_path)
                 for row in truth.itertuples() if isinstance(row.twin_path, str) and row.twin_path}
    pooling = ve_pooling(datamodule)  # the grid of the model's and PCA's variance explained
    decoded = decode_split(module, datamodule, split, reference=mean_image(datamodule),
                           twins=twins, examples=examples, ve_pooling=pooling)
    metrics["decoded"] = decoded.scores() | {"variance_explained_pooling": pooling}
    metrics["salient_maps"] = save_salient_maps(
        decoded.salient_maps, datamodule.grid_affine, out_dir,
        cohort.planted_patterns() if cohort else {}, figures=figures)
    distances = [min(m["planted_distance_mm"].values()) for m in metrics["salient_maps"]
                 if m["planted_distance_mm"]]
    metrics["decoded"]["map_peak_distance_mm"] = max(distances) if distances else None
    if baselines:
        metrics["baselines"] = {
            name: score_latents(with_truth(base_test, truth), base_train) | {"decoded": base_scores}
            for name, (base_train, base_test, base_scores) in baseline_latents(
                datamodule, baselines, split).items()}
    pictures = {}
    if figures:
        pictures = {"embedding": plots.plot_embedding(test, out_dir / "embedding.png",
                                                      embedding)}
        if decoded.examples:
            pictures["examples"] = plots.plot_examples(decoded.examples, out_dir / "examples.png")
        curves = run_dir / "logs" / "metrics.csv"
        if curves.is_file():
            pictures["curves"] = plots.plot_curves(curves, out_dir / "curves.png")
    pictures = {k: v for k, v in pictures.items() if v}
    write_json(out_dir / "metrics.json", metrics)
    write_report(out_dir, metrics, pictures)
    if figures:
        write_html_report(out_dir, test, metrics, embedding=embedding)
    if wandb:
        log_evaluation(cfg, run_dir, out_dir, metrics, pictures)
    return metrics


def sweep_runs(sweep_dir: Path) -> list[Path]:
    """The run folders of a multirun sweep folder, in job order."""
    runs = [p for p in sweep_dir.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit()
                                       else 0, p.name))


def overrides_of(run_dir: Path) -> str:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ""
    wanted = [o for o in OmegaConf.load(path) if not o.split("=")[0].lstrip("+~").startswith(
        ("data.", "hydra.", "out_dir", "run_id", "trainer.enable_progress_bar"))]
    return " ".join(wanted)


def comparison_rows(runs: dict[str, dict[str, Any]], labels: dict[str, str]
                    ) -> pd.DataFrame:
    """One row per run (name, label, headline metrics) plus one per baseline found in them."""
    rows = [{"run": name, "setting": labels.get(name, ""), **headline(m)}
            for name, m in runs.items()]
    first = next(iter(runs.values()), {})
    for name, m in first.get("baselines", {}).items():
        rows.append({"run": f"baseline: {name}", "setting": name, **headline(m)})
    return pd.DataFrame(rows)


def evaluate_sweep(sweep_dir: str | Path, out_dir: str | Path | None = None, **kwargs: Any
                   ) -> pd.DataFrame:
    """Evaluate every run of a sweep folder (into `<run>/eval/`) and write `comparison.csv`
    and `comparison.md` (a row per run: its overrides and headline metrics) into `out_dir`
    (default: the sweep folder). Baselines are computed once, on the first run's data."""
    sweep_dir = Path(sweep_dir)
    runs = sweep_runs(sweep_dir)
    if not runs:
        raise InputError(f"{sweep_dir} holds no run folders (each needs .hydra/config.yaml "
                         "and checkpoints/)")
    baselines = kwargs.pop("baselines", ())
    results = {}
    for i, run in enumerate(runs):
        log.info("run %d/%d: %s", i + 1, len(runs), run)
        results[run.name] = evaluate_run(run, baselines=baselines if i == 0 else (), **kwargs)
    table = comparison_rows(results, {r.name: overrides_of(r) for r in runs})
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "comparison.csv", index=False)
    comparison = f"# Sweep comparison: {sweep_dir}\n\n{markdown_table(table)}\n\n{COLUMN_NOTES}\n"
    write_text_atomically(out_dir / "comparison.md", comparison)
    write_comparison_html(out_dir, comparison,
                          {run.name: run / "eval" / "report.html" for run in runs})
    return table

