"""The benchmark stage, `run(cfg)` (`conf/benchmark.yaml` composed): a planted-truth cohort,
named arms × seeds, one comparison table.

Layout of `out_dir`: `cohort/` (the synthetic cohort, `target.csv`, `background.csv`),
`runs/<arm>/seed<k>/` (each a `neurocvae-train` run folder with its `eval/`), `results.csv`
(one row per arm and seed), `benchmark.md` (mean ± SD per arm) and `benchmark.png`; measured on
another split than the test split, each named with it (`eval_val/`, `results_val.csv`, …), so
that neither table replaces the other. Everything finished is kept: started again, the command
picks up where it stopped, on the same cohort and training settings only
(`check_same_recipe`, `check_same_training`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from neurocvae.config import compose_config
from neurocvae.data.cohort import problem_list, read_manifest
from neurocvae.errors import InputError, TrainingDiverged
from neurocvae.evaluation.evaluate import evaluate_run
from neurocvae.evaluation.quick_check import fit_and_check
from neurocvae.evaluation.report import HEADLINE, headline
from neurocvae.evaluation.summary import plot_summary, stability_table, summary_markdown
from neurocvae.synthetic.layout import CohortFolder
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import generate_cohort
from neurocvae.synthetic.strength import recipe_from_config

log = logging.getLogger(__name__)


def make_cohort(cfg: DictConfig, folder: Path) -> tuple[Path, Path]:
    """Render the preset's cohort (unless already there) and split it into target.csv
    (patients) and background.csv (controls) beside its manifest."""
    synth = compose_config("synth", list(cfg.cohort))
    recipe = recipe_from_config(OmegaConf.to_container(synth, resolve=True))
    if CohortFolder(folder).is_cohort():
        check_same_recipe(CohortFolder(folder), recipe)
    else:
        log.info("rendering the cohort: %d subjects on the %s grid", recipe.n_subjects,
                 recipe.grid.name)
        generate_cohort(recipe, folder, overwrite=True)
    manifest = read_manifest(CohortFolder(folder).manifest)
    controls = manifest["group"] == CohortFolder(folder).controls()
    target, background = folder / "target.csv", folder / "background.csv"
    manifest[~controls].to_csv(target, index=False)
    manifest[controls].to_csv(background, index=False)
    return target, background


def check_same_recipe(cohort: CohortFolder, recipe: Recipe) -> None:
    """Refuse a cohort folder rendered from another recipe than the one the cohort overrides
    render now (changed overrides, or changed synthetic defaults under unchanged ones): a
    benchmark started again would otherwise measure the old cohort under the new command."""
    if json.loads(cohort.recipe.read_text())["hash"] == recipe.hash():
        return
    now = json.loads(json.dumps(recipe.to_dict(), default=str))
    raise InputError(f"{cohort.root} holds a cohort rendered from another recipe than the "
                     "cohort overrides give now:\n" + differences(cohort.read_recipe(), now)
                     + "\nChoose another out_dir, or delete the cohort (and the runs trained on "
                     "it) to render it again.")


def check_same_training(run_dir: Path, train_cfg: DictConfig) -> None:
    """Refuse a run folder whose run was trained with other settings than the arm's now (changed
    overrides or defaults): its checkpoints and metrics would stand for the new ones."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return
    there = OmegaConf.to_container(OmegaConf.load(path))
    now = OmegaConf.to_container(train_cfg)
    if there != now:
        raise InputError(f"{run_dir} holds a run trained with other settings than the arm "
                         "has now:\n" + differences(there, now) + "\nChoose another out_dir, "
                         "or delete the run folder to train it again.")


def differences(there: dict[str, Any], now: dict[str, Any]) -> str:
    """The leaves of two nested dicts that differ, one indented line each."""
    there, now = (pd.json_normalize(tree).iloc[0].to_dict() for tree in (there, now))
    return problem_list([f"{key}: {there.get(key, '(absent)')} there, "
                         f"{now.get(key, '(absent)')} now"
                         for key in sorted(there.keys() | now.keys())
                         if there.get(key) != now.get(key)])


def eval_dir(run_dir: Path, split: str) -> Path:
    """Where a run's evaluation on `split` goes: eval/ for the test split, eval_<split>/ else."""
    return run_dir / ("eval" if split == "test" else f"eval_{split}")


def table_names(split: str) -> dict[str, str]:
    """The file names of the benchmark's outputs measured on `split`."""
    suffix = "" if split == "test" else f"_{split}"
    return {"results": f"results{suffix}.csv", "table": f"benchmark{suffix}.md",
            "figure": f"benchmark{suffix}.png"}


def run_folder(out_dir: Path, arm: str, seed: int) -> Path:
    """Where the benchmark in `out_dir` trains and evaluates `arm` at `seed`."""
    return out_dir / "runs" / arm / f"seed{seed}"


def is_trained(run_dir: Path) -> bool:
    """Whether the run in `run_dir` finished training (its quick check is written last)."""
    return (run_dir / "separation.json").is_file()


def run_arm(cfg: DictConfig, arm: str, seed: int, sets: tuple[Path, Path], run_dir: Path,
            baselines: tuple[str, ...]) -> dict[str, Any]:
    """Train (or resume) one arm at one seed and evaluate it; returns its metrics."""
    target, background = sets
    overrides = [*cfg.train, *cfg.arms[arm], f"data.target={target}",
                 f"data.background={background}",
                 f"data.cache_dir={Path(cfg.out_dir).resolve() / 'cache'}", f"seed={seed}",
                 f"out_dir={run_dir}", "ckpt_path=last"]
    train_cfg = compose_config("train", overrides)
    with open_dict(train_cfg):  # replaced whole (an override would merge into train/val)
        train_cfg.data.split_fractions = cfg.split_fractions
    check_same_training(run_dir, train_cfg)
    done = eval_dir(run_dir, cfg.split) / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text())
        if not baselines or "baselines" in metrics:
            return metrics
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(train_cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(cfg.arms[arm])), run_dir / ".hydra" / "overrides.yaml")
    if not is_trained(run_dir):
        fit_and_check(train_cfg)  # errors propagate to the benchmark's own handling
    # pictures for the first seed of each arm (the metrics for every seed)
    return evaluate_run(run_dir, eval_dir(run_dir, cfg.split), split=cfg.split,
                        baselines=baselines, figures=seed == cfg.seeds[0])


def run(cfg: DictConfig) -> pd.DataFrame:
    """The whole stage; returns the per-run results table."""
    began = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    arms = list(cfg.only or cfg.arms)
    unknown = set(arms) - set(cfg.arms)
    if unknown:
        raise InputError(f"only={arms}: unknown arm(s) {sorted(unknown)}; the preset has "
                         f"{list(cfg.arms)}")
    if cfg.split not in cfg.split_fractions:
        raise InputError(f"split={cfg.split}: the preset's splits are "
                         f"{list(cfg.split_fractions)}")
    if cfg.get("tabulate_only", False):
        untrained = [f"{arm} seed {seed}" for seed in cfg.seeds for arm in arms
                     if not is_trained(run_folder(out_dir, arm, seed))]
        if untrained:
            raise InputError(f"tabulate_only=true, and {out_dir / 'runs'} has no finished run of "
                             f"{', '.join(untrained)}: train them (tabulate_only=false, or "
                             "experiments/arms_parallel.sh), or leave them out with only=[…] "
                             "and seeds=[…]")
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = make_cohort(cfg, out_dir / "cohort")
    rows, baseline_rows = [], []
    pending = tuple(cfg.baselines)  # fitted once, with the first run that succeeds
    total = len(arms) * len(cfg.seeds)
    for i, (arm, seed) in enumerate((a, s) for s in cfg.seeds for a in arms):
        run_dir = run_folder(out_dir, arm, seed)
        log.info("[%d/%d] arm %s, seed %d", i + 1, total, arm, seed)
        start = time.perf_counter()
        try:
            metrics = run_arm(cfg, arm, seed, sets, run_dir, pending)
        except TrainingDiverged as error:
            log.warning("arm %s, seed %d diverged: %s", arm, seed, error)
            rows.append({"arm": arm, "seed": seed, "diverged": True})
            continue
        rows.append({"arm": arm, "seed": seed, "diverged": False, **headline(metrics),
                     "seconds": round(time.perf_counter() - start, 1)})
        if not baseline_rows:  # the baselines are the same in every run that has them
            baseline_rows = [{"arm": f"{name} (baseline)", "seed": None, "diverged": False,
                              **headline(m)} for name, m in metrics.get("baselines", {}).items()]
        pending = () if metrics.get("baselines") else pending
    results = pd.DataFrame(baseline_rows + rows)
    if results.empty:  # nothing asked for (e.g. seeds=[]): the cohort alone
        log.info("no runs asked for; the cohort is in %s", out_dir / "cohort")
        return results
    names = table_names(cfg.split)
    results.to_csv(out_dir / names["results"], index=False)
    columns = [c for c in [*HEADLINE, "seconds"] if results[c].notna().any()]
    command = " ".join(["neurocvae-benchmark", *HydraConfig.get().overrides.task]) \
        if HydraConfig.initialized() else f"neurocvae-benchmark preset={cfg.name}"
    minutes = (time.perf_counter() - began) / 60
    latents = {arm: [pd.read_csv(path) for path in (
        eval_dir(run_folder(out_dir, arm, seed), cfg.split) / "latents.csv"
        for seed in cfg.seeds)
        if path.is_file()] for arm in arms}
    (out_dir / names["table"]).write_text(summary_markdown(
        results, columns, cfg, command, minutes, names, stability_table(latents)))
    plot_summary(results, out_dir / names["figure"])
    log.info("benchmark table: %s", out_dir / names["table"])
    return results
