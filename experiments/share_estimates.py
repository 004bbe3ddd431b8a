"""Ways of estimating the pattern share K, judged against the one the planted twins give.

    .venv/bin/python experiments/share_estimates.py [--split val|test] RUN [RUN …]

RUN: a `neurocvae-train` run folder of the default model (`arch.pattern_share=true`) on a
synthetic cohort with healthy twins, e.g. a benchmark's `runs/cvae/seed0`. Its trained encoders
are used as they are; only K [k, Z] (k the salient axes the linear start kept) is estimated
again, from the training split:

- the run's: the run's own K;
- coarse (L1): each salient axis's `linear.sparsest_completion` (least L1 norm) on the salient
  projection's coarse grid, read on the shared projection's grid (`linear.salient_patterns`);
- coarse (L0.5): the completion of least L0.5 quasi-norm, which favours a more compact
  pattern than L1;
- coarse + detail: each pattern also with its detail finer than the coarse grid, fitted to the
  training targets outside the backgrounds' top principal axes where the pattern exceeds a share
  of its peak (`linear.pattern_detail`; `initialise.share_detail`), or to the targets as they
  are;
- targets' regression: the training targets' shared codes on their salient codes;
- contrastive regression: the same with the backgrounds' covariances subtracted,
  (C_t,ss − C_b,ss)⁻¹ (C_t,sz − C_b,sz), which would remove healthy variation the salient codes
  follow if the backgrounds varied along the salient axes;
- the planted pattern: each training target less its planted healthy twin, regressed on the
  salient codes, read by the shared projection; on the salient grid, read as the coarse
  patterns are (what a perfect completion could give);
- twins (oracle): the training targets' μ_z(x) − μ_z(twin) on their salient codes (the shared
  encoder's convolutions included). The planted twins are never shown to a model.

Prints, per run, the salient codes' mean and variance on the training targets and backgrounds,
and per estimate the norm of each row of K and its cosine with the oracle's and, on `--split`
(val, the default, to choose; test to report), the shared-space AUROC (targets' μ_z − μ_s·K
against backgrounds' μ_z, as `neurocvae-eval`'s auroc_z) and the targets' mean squared
distance from their twins' shared codes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurocvae.contrastive import linear
from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.nets import coarse_pool
from neurocvae.evaluation.decoded import twin_batch
from neurocvae.evaluation.evaluate import find_cohort, run_config, run_datamodule
from neurocvae.evaluation.metrics import group_auroc


@torch.no_grad()
def split_codes(module, datamodule, cohort, truth: pd.DataFrame, split: str
                ) -> dict[str, np.ndarray]:
    """Plain shared code means (no share taken off), salient code means and, for targets, the
    twins' shared code means and each target less its twin (the planted pattern) on the salient
    and the shared projection's grids, on `split`."""
    nets = module.nets
    strides = (nets.projection_stride, nets.shared_encoder.linear.stride)
    out: dict[str, list] = {key: [] for key in ("z_t", "s_t", "z_twin", "z_b", "s_b",
                                                 "planted_coarse", "planted_fine")}
    for role, suffix in (("target", "t"), ("background", "b")):
        for batch in datamodule.input_batches(split, role):
            out[f"z_{suffix}"].append(module.nets.code_means(batch["image"], "background")[0])
            out[f"s_{suffix}"].append(module.nets.code_means(batch["image"], "target")[1])
            if role == "target":
                twins = twin_batch(datamodule, [str(cohort.root / truth.loc[s, "twin_path"])
                                                for s in batch["subject_id"]])
                out["z_twin"].append(module.nets.code_means(twins, "background")[0])
                for name, stride in zip(("planted_coarse", "planted_fine"), strides,
                                        strict=True):
                    out[name].append(coarse_pool(batch["image"] - twins, stride).flatten(1))
    return {key: torch.cat(parts).double().numpy() for key, parts in out.items()}


def covariance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - a.mean(0)).T @ (b - b.mean(0)) / len(a)


def estimates(module, datamodule, train: dict[str, np.ndarray], kept: np.ndarray
              ) -> dict[str, np.ndarray]:
    """Each way's K [k, Z] for the salient axes `kept` (a boolean mask over S)."""
    nets = module.nets
    strides = (nets.projection_stride, nets.shared_encoder.linear.stride)
    background, background_fine, _ = linear.training_volumes(datamodule, "background", strides)
    _, target_fine, _ = linear.training_volumes(datamodule, "target", strides)
    healthy = linear.principal_axes(background, nets.shared_dim)
    salient_weights = nets.salient_encoder.linear.weight[:kept.sum()].double().numpy()
    shared_weights = nets.shared_encoder.linear.weight.double().numpy()
    s_t, s_b = train["s_t"][:, kept], train["s_b"][:, kept]
    rest = linear.healthy_rest(target_fine, background_fine, nets.shared_dim)

    def on_shared_grid(patterns: np.ndarray) -> np.ndarray:
        return linear.regrid(patterns, nets.input_shape, *strides)

    def share(patterns: np.ndarray, support: float | None = None, rows: np.ndarray = rest
              ) -> np.ndarray:
        """K from the coarse `patterns` [k, V] (per unit code), with their finer detail fitted
        to `rows` where each exceeds `support` × its peak."""
        fine = on_shared_grid(patterns)
        if support is not None:
            fine = fine + linear.pattern_detail(fine, rows, s_t, support, nets.input_shape,
                                                strides, 1e-3)
        return fine @ shared_weights.T

    coarse = linear.salient_patterns(salient_weights, healthy)
    planted = {name: np.linalg.lstsq(s_t, train[f"planted_{name}"], rcond=None)[0]
               for name in ("coarse", "fine")}  # the planted pattern per unit code
    return {
        "the run's": nets.pattern_share.double().numpy()[kept],
        "coarse (L1)": share(coarse),
        "coarse (L0.5)": share(linear.salient_patterns(salient_weights, healthy, p=0.5)),
        **{f"coarse + detail where > {support:g} of the peak": share(coarse, support)
           for support in (0.02, 0.05, 0.1, 0.2)},
        "coarse + detail where > 0.05, fitted to the targets not outside the healthy axes":
            share(coarse, 0.05, target_fine - background_fine.mean(0)),
        "targets' regression": np.linalg.solve(covariance(s_t, s_t),
                                               covariance(s_t, train["z_t"])),
        "contrastive regression": np.linalg.solve(
            covariance(s_t, s_t) - covariance(s_b, s_b),
            covariance(s_t, train["z_t"]) - covariance(s_b, train["z_b"])),
        "the planted pattern, on the salient grid": share(planted["coarse"]),
        "the planted pattern": planted["fine"] @ shared_weights.T,
        "twins (oracle)": np.linalg.lstsq(s_t, train["z_t"] - train["z_twin"], rcond=None)[0],
    }


def report(run: Path, split: str) -> str:
    datamodule = run_datamodule(run_config(run))
    module = load_module(run / "checkpoints" / "best.ckpt").eval()
    if module.nets.pattern_share is None:
        raise SystemExit(f"{run}: the run has no pattern share (arch.pattern_share=false)")
    cohort = find_cohort(datamodule.splits["train"]["target"]["path"])
    truth = None if cohort is None else pd.read_csv(cohort.ground_truth).set_index("subject_id")
    if truth is None or "twin_path" not in truth.columns:
        raise SystemExit(f"{run}: its targets do not come from a synthetic cohort with healthy "
                         "twins (neurocvae-synth's ground_truth.csv with a twin_path column)")
    kept = np.linalg.norm(module.nets.pattern_share.numpy(), axis=1) > 0
    train = split_codes(module, datamodule, cohort, truth, "train")
    test = split_codes(module, datamodule, cohort, truth, split)
    found = estimates(module, datamodule, train, kept)
    oracle = found["twins (oracle)"]
    s_t, s_b = train["s_t"][:, kept], train["s_b"][:, kept]
    s_test = test["s_t"][:, kept]
    labels = np.r_[np.ones(len(s_test)), np.zeros(len(test["z_b"]))].astype(bool)

    def fmt(values: np.ndarray) -> str:
        return " / ".join(f"{v:.3f}" for v in values)

    lines = [f"### {run}", "",
             f"Training salient codes: targets mean {fmt(s_t.mean(0))}, variance "
             f"{fmt(s_t.var(0))}; backgrounds mean {fmt(s_b.mean(0))}, variance "
             f"{fmt(s_b.var(0))}. AUROC_z of the twins on {split}: "
             f"{group_auroc(np.r_[test['z_twin'], test['z_b']], labels):.3f}; "
             "with no share taken off: "
             f"{group_auroc(np.r_[test['z_t'], test['z_b']], labels):.3f}.",
             "", "| estimate | ‖K‖ per salient axis | cosine with the twins' | AUROC_z | "
             "distance from twins |", "|---|---|---|---|---|"]
    for name, share in found.items():
        cosines = [row @ o / (np.linalg.norm(row) * np.linalg.norm(o) + 1e-12)
                   for row, o in zip(share, oracle, strict=True)]
        shared = test["z_t"] - s_test @ share
        lines.append(f"| {name} | {fmt(np.linalg.norm(share, axis=1))} | {fmt(cosines)} | "
                     f"{group_auroc(np.r_[shared, test['z_b']], labels):.3f} | "
                     f"{np.mean(np.sum((shared - test['z_twin'])**2, axis=1)):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--split", default="val", help="where the estimates are judged (val: "
                        "choose; test: report)")
    args = parser.parse_args()
    print("\n\n".join(report(run, args.split) for run in args.runs))


if __name__ == "__main__":
    main()
