"""How well the shared correction K of a run matches what the planted truth says it should be.

    .venv/bin/python experiments/correction_oracle.py RUN [RUN …]

RUN: a `neurocvae-train` run folder trained with `arch.shared_correction=true` on a synthetic
cohort with healthy twins (e.g. a benchmark's `runs/<arm>/seed0`). Over the training targets,
Δz = μ_z(x) − μ_z(twin) (the shared encoder's mean before the correction) is what the target's
pattern moves the shared code by; the oracle K regresses Δz on the salient means μ_s(x). For
each active salient dimension: the norms of the run's and the oracle's loadings and their cosine;
then the mean ‖Δz − K μ_s‖² over the targets with no correction, the run's K and the oracle's.
Prints one markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurocvae.contrastive.build import load_module
from neurocvae.evaluation.decoded import twin_input
from neurocvae.evaluation.evaluate import find_cohort, run_config, run_datamodule


@torch.no_grad()
def shifts_and_codes(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Δz [n, Z] and μ_s [n, S] of the run's training targets, and its K [Z, S]."""
    datamodule = run_datamodule(run_config(run))
    module = load_module(run / "checkpoints" / "best.ckpt").eval()
    nets = module.nets
    if nets.correction is None:
        raise SystemExit(f"{run}: trained without arch.shared_correction=true")
    cohort = find_cohort(datamodule.splits["train"]["target"]["path"])
    truth = pd.read_csv(cohort.ground_truth).set_index("subject_id")
    root = Path(cohort.ground_truth).parent
    shifts, salient = [], []
    for batch in datamodule.input_batches("train", "target"):
        twins = torch.stack([torch.from_numpy(twin_input(
            datamodule, str(root / truth.loc[subject, "twin_path"])))[None].float()
            for subject in batch["subject_id"]])
        shifts.append((nets.shared_encoder(batch["image"])[0]
                       - nets.shared_encoder(twins)[0]).numpy())
        salient.append(nets.salient_encoder(batch["image"])[0].numpy())
    return np.concatenate(shifts), np.concatenate(salient), nets.correction.weight.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    header = ["run", "salient dim", "‖K‖ run", "‖K‖ oracle", "cosine", "shift: none",
              "run's K", "oracle K"]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for run in args.runs:
        shift, salient, correction = shifts_and_codes(run)
        active = np.flatnonzero(salient.var(0) > 0.01)
        codes = salient[:, active]
        oracle = np.linalg.lstsq(codes, shift, rcond=None)[0].T  # [Z, k]
        fitted = correction[:, active]
        residual = {name: float(((shift - codes @ k.T) ** 2).sum(1).mean())
                    for name, k in (("none", 0 * fitted), ("run", fitted), ("oracle", oracle))}
        for j, dim in enumerate(active):
            norms = np.linalg.norm(fitted[:, j]), np.linalg.norm(oracle[:, j])
            cosine = fitted[:, j] @ oracle[:, j] / max(norms[0] * norms[1], 1e-12)
            shifts = [f"{residual[k]:.3f}" if j == 0 else "" for k in ("none", "run", "oracle")]
            cells = [str(run), str(dim), f"{norms[0]:.3f}", f"{norms[1]:.3f}", f"{cosine:.3f}",
                     *shifts]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
