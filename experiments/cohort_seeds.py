"""The quick preset's default model and baselines on cohorts rendered with other seeds: is a
result a property of the method, or of one cohort (e.g. one unusual test scan)?

    OMP_NUM_THREADS=1 .venv/bin/python experiments/cohort_seeds.py OUT [COHORT_SEED …]

For each cohort seed (default 0 1 2 3) it runs `neurocvae-benchmark preset=quick only=[cvae]
seeds=[0]` with the cohort rendered from that seed into OUT/cohort<seed> (two at a time;
finished runs are kept), then writes experiments/results/cohort_seeds.md: the test-split
headline of each cohort, the model beside PCA and cPCA.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from neurocvae.evaluation.report import markdown_table

RESULT = Path(__file__).parent / "results" / "cohort_seeds.md"
COLUMNS = ["ari_s", "tau_s_severity", "r2_age_s", "r2_head_s", "auroc_z", "ve", "gain",
           "map_peak_mm"]


def run(out: Path, seed: int) -> pd.DataFrame:
    cohort = (f'cohort=["grid=ci","seed={seed}","groups.HC.count=200","groups.MDD.count=100",'
              '"groups.diabetes.count=100","groups.dual.count=0"]')
    subprocess.run([sys.executable, "-m", "neurocvae.cli.benchmark", f"out_dir={out}", cohort,
                    "only=[cvae]", "seeds=[0]"], check=True, capture_output=True)
    table = pd.read_csv(out / "results.csv")
    table = table[(table["arm"] != "cvae") | (table["seed"] == 0)]
    return table.assign(cohort=seed)


def main(out: Path, seeds: list[int]) -> None:
    with ThreadPoolExecutor(2) as pool:
        tables = list(pool.map(lambda s: run(out / f"cohort{s}", s), seeds))
    rows = pd.concat(tables)[["cohort", "arm", *COLUMNS]]
    lines = [
        "# The default model on quick cohorts rendered with other seeds", "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python experiments/cohort_seeds.py OUT "
        f"{' '.join(map(str, seeds))}` (2 CPU cores). The quick preset's cohort (4 mm, 200 "
        "patients with pattern A or B, 200 controls) rendered with each seed; the default model "
        "at training seed 0; PCA (10 components) and cPCA fitted on the training split; test "
        "split. Columns as in `benchmark_quick_default.md`.", "",
        markdown_table(rows), ""]
    RESULT.write_text("\n".join(lines))
    print(RESULT)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(s) for s in sys.argv[2:]] or [0, 1, 2, 3])
