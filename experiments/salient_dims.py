"""What each salient dimension of a trained run carries: the planted severities, head size, or
the patterns as they scale with the head.

    .venv/bin/python experiments/salient_dims.py RUN [RUN …]

RUN: an evaluated `neurocvae-benchmark` run folder (`runs/<arm>/seed<n>`, with
`eval/latents.csv`) on a synthetic cohort with planted severities. Over the held-out targets,
each salient dimension whose code means vary at all (variance > 1e-8; `neurocvae-eval`
standardises the codes, so a small dimension weighs as much as a large one in its R²) is
regressed on the planted severities (one column per pattern), on head size (u_head) alone,
and on all of them with each severity × u_head and age. A dimension the severities explain is
the disease; one head size explains is nuisance; one that needs severity × u_head is a pattern
whose appearance changes with the head (patterns planted in scanner space scale with it),
which `neurocvae-eval`'s R²(u_head | salient) also counts. Prints one markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.evaluation.report import markdown_table
from neurocvae.evaluation.scores import severity_columns

VARYING = 1e-8  # variance of a code mean over the held-out targets


def r2(design: np.ndarray, y: np.ndarray) -> float:
    """In-sample R² of the least-squares fit of y [N] on design [N, P] (with a constant)."""
    design = np.hstack([np.ones((len(y), 1)), design])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(1 - residual @ residual / ((y - y.mean()) @ (y - y.mean())))


def dimensions(run: Path) -> list[dict[str, object]]:
    """One row per salient dimension of `run` that varies over the held-out targets."""
    latents = run / "eval" / "latents.csv"
    if not latents.is_file():
        raise SystemExit(f"{latents}: not found (RUN is an evaluated run folder, e.g. a "
                         "benchmark's runs/cvae/seed0)")
    table = pd.read_csv(latents)
    targets = table[table["role"] == "target"]
    severities = severity_columns(targets)
    if not severities or "u_head" not in targets.columns:
        raise SystemExit(f"{run}: its latents.csv has no planted severity_* or u_head columns "
                         "(not a synthetic cohort's run)")
    severity = targets[severities].to_numpy()
    head = targets[["u_head"]].to_numpy()
    everything = np.hstack([severity, head, severity * head, targets[["age"]].to_numpy()])
    rows = []
    for column in [c for c in targets.columns if c.startswith("salient_")]:
        y = targets[column].to_numpy()
        if y.var() > VARYING:
            rows.append({"run": str(run), "dim": column, "var": y.var(),
                         "r2_severities": r2(severity, y), "r2_head": r2(head, y),
                         "r2_all": r2(everything, y)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    rows = [row for run in parser.parse_args().runs for row in dimensions(run)]
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
