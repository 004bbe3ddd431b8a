"""The linear start's replication test rank by rank, on the training split of finished runs.

    .venv/bin/python experiments/replication_ranks.py RUN [RUN …] [--permutations N] [--out STEM]

RUN: a `neurocvae-train` run folder of the additive model (its configuration, data and training
split; nothing of the trained model). For each rank of the contrastive axes sought outside the
backgrounds' top principal axes (`neurocvae.contrastive.linear`), over the same 5 × 2 split-
halves as `replicated_components`: the median fitted eigenvalue, the median contrast on the
held-out half (its targets about its own backgrounds' mean), their ratio, the share of fits
whose held-out contrast is positive, the held-out contrast over the leading rank's (the default
keeps the leading ranks where it is positive and at least `REPLICATION`), and the noise floor:
the median fitted eigenvalue of as many ranks again after the salient dimensions, what fitting a
half's noise alone reaches (high where the nuisance has many dimensions). With `--permutations
N`, a label-permutation null for the ratio (tried in place of its fixed threshold, not kept):
the ratio's median and largest value over N permutations of the training scans'
target/background labels, and whether the ratio exceeds every permuted one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.contrastive.linear import (
    REPLICATION,
    outside,
    principal_axes,
    replicated_components,
    split_half_contrasts,
    training_volumes,
)
from neurocvae.contrastive.nets import linear_stride
from neurocvae.evaluation.evaluate import run_config, run_datamodule
from neurocvae.evaluation.report import markdown_table


def ranks(run: Path, splits: int = 5, permutations: int = 0) -> pd.DataFrame:
    cfg = run_config(run)
    datamodule = run_datamodule(cfg)
    stride = linear_stride(cfg.data.preprocessing.shape, cfg.arch.projection_voxels)
    shared_dim, salient_dim = cfg.shared_dim, cfg.salient_dim
    contrast = float(cfg.initialise.contrast)

    scans_read = [training_volumes(datamodule, role, (stride, stride))[0]
                  for role in ("target", "background")]
    target, background = scans_read

    def outside_healthy(target: np.ndarray, background: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Both sets outside the backgrounds' top principal axes, as the linear start sees
        them."""
        centre = background.mean(0)
        healthy = principal_axes(background, shared_dim)
        return outside(target, healthy, centre), outside(background, healthy, centre)

    target, background = outside_healthy(target, background)
    kept = replicated_components(target, background, salient_dim, contrast)
    # twice the ranks, for the floor; the leading ones are those `replicated_components` tests
    fitted, held_out = split_half_contrasts(target, background, 2 * salient_dim, contrast,
                                            splits=splits)
    held_out = held_out[:, :salient_dim]
    median_fitted, median_held_out = np.median(fitted, 0), np.median(held_out, 0)
    floor = float(np.median(median_fitted[salient_dim:]))
    median_fitted = median_fitted[:salient_dim]
    ratio = median_held_out / median_fitted
    table = pd.DataFrame({
        "run": str(run), "rank": np.arange(1, salient_dim + 1), "kept": kept,
        "fitted": median_fitted, "held_out": median_held_out, "ratio": ratio,
        "held_out_positive": (held_out > 0).mean(0),
        "of_leading": median_held_out / median_held_out[0], "floor": floor})
    if permutations:  # from the scans as read, before the backgrounds' axes are taken out
        rng, scans = np.random.default_rng(0), np.concatenate(scans_read)
        null = []
        for _ in range(permutations):
            order = rng.permutation(len(scans))
            permuted = outside_healthy(scans[order[:len(target)]], scans[order[len(target):]])
            fitted, held_out = split_half_contrasts(*permuted, salient_dim, contrast,
                                                    splits=splits)
            null.append(np.median(held_out, 0) / np.median(fitted, 0))
        table["null_median"], table["null_max"] = np.median(null, 0), np.max(null, 0)
        table["exceeds_null"] = ratio > table["null_max"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--permutations", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        default=Path("experiments/results/replication_ranks"))
    args = parser.parse_args()
    table = pd.concat([ranks(run, permutations=args.permutations) for run in args.runs],
                      ignore_index=True)
    text = ["# The linear start's replication test, rank by rank (training split)", "",
            "Command: `" + " ".join(["python experiments/replication_ranks.py",
                                     *map(str, args.runs),
                                     *(["--permutations", str(args.permutations)]
                                       if args.permutations else []),
                                     "--out", str(args.out)]) + "`", "",
            f"`kept`: the salient axes the default keeps (held_out > 0 and of_leading ≥ "
            f"{REPLICATION} for every rank up to it). Medians over 5 × 2 split-halves; "
            "contrasts in the projections' units (coarse grid).", "", markdown_table(table)]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
