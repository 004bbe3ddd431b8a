"""Is the shared space's target-vs-background AUROC disease leakage? Ask the healthy twins.

    .venv/bin/python experiments/twin_leakage.py RUN [RUN …]

RUN: a `neurocvae-train` run folder on a synthetic cohort with healthy twins (e.g. a
benchmark's `runs/cvae/seed0`, or `make demo`'s `outputs/demo/train`). On the held-out split
(test, or val where the run has none, as `neurocvae-eval`), the out-of-fold AUROC of the shared
code means telling targets from backgrounds (as `neurocvae-eval`'s auroc_z), once with the
targets' own scans, once with each target less its salient pattern D([z, s]) − D([z, 0]) (the
model's own reading of its disease), and once with each target replaced by its planted healthy
twin (same subject, no pattern). Twins at 0.5 and scans above it: the shared code carries the
pattern. Prints one markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurocvae.contrastive.build import load_module
from neurocvae.evaluation.decoded import twin_batch
from neurocvae.evaluation.evaluate import choose_split, find_cohort, run_config, run_datamodule
from neurocvae.evaluation.metrics import group_auroc


@torch.no_grad()
def aurocs(run: Path, split: str = "auto") -> tuple[float, float, float]:
    """The shared-space AUROC with the targets' scans, those less their salient pattern, and
    their twins, on `split` (auto: test, or val where the run has no test split, as
    `neurocvae-eval`)."""
    datamodule = run_datamodule(run_config(run))
    split = choose_split(datamodule, split)
    module = load_module(run / "checkpoints" / "best.ckpt").eval()
    cohort = find_cohort(datamodule.splits[split]["target"]["path"])
    truth = None if cohort is None else pd.read_csv(cohort.ground_truth).set_index("subject_id")
    if truth is None or "twin_path" not in truth.columns:
        raise SystemExit(f"{run}: its targets do not come from a synthetic cohort with healthy "
                         "twins (neurocvae-synth's ground_truth.csv with a twin_path column), "
                         "so there is nothing to compare the shared codes with")
    scans, less_pattern, twins, is_target = [], [], [], []
    for role in ("target", "background"):
        for batch in datamodule.input_batches(split, role):
            shared, salient = module.latent_representation(batch["image"], role)
            scans.append(shared.numpy())
            if role == "target":
                pattern = (module.nets.decode(shared, salient) - module.nets.decode(shared))
                less_pattern.append(module.latent_representation(
                    batch["image"] - pattern)[0].numpy())
                images = twin_batch(datamodule, [str(cohort.root / truth.loc[subject, "twin_path"])
                                               for subject in batch["subject_id"]])
                twins.append(module.latent_representation(images)[0].numpy())
            else:
                less_pattern.append(shared.numpy())
                twins.append(shared.numpy())
            is_target += [role == "target"] * len(shared)
    labels = np.array(is_target)
    return tuple(group_auroc(np.concatenate(codes), labels)
                 for codes in (scans, less_pattern, twins))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    print("| run | AUROC_z: scans | targets less their salient pattern | targets' twins |\n"
          "|---|---|---|---|")
    for run in args.runs:
        print(f"| {run} | " + " | ".join(f"{auroc:.3f}" for auroc in aurocs(run)) + " |")


if __name__ == "__main__":
    main()
