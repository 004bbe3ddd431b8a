"""Scans per second that `neurocvae-encode` reads, with and without worker processes.

    .venv/bin/python experiments/bench_encode.py   # writes experiments/results/bench_encode.md

Renders 16 synthetic scans on UK Biobank's 1 mm grid (182×218×182, preprocessed to SFCN's
160×192×160 crop, as a brain-age or 1 mm contrastive run reads them) and, in one run, reads
them as model inputs with `ScanReader.batches` (batch 8) at each `num_workers`, one warm-up
pass, then the best of two timed passes. The batches are checked to be identical.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_data import cohort  # beside this script

from neurocvae.data.scans import ScanReader, scans_table
from neurocvae.data.volumes import Preprocessing
from neurocvae.synthetic.renderer import available_cores

RESULT = Path(__file__).parent / "results" / "bench_encode.md"
WORKERS = (0, 1, 2, 4)
SCANS = 16


def passes(reader: ScanReader, table: pd.DataFrame) -> tuple[float, list[torch.Tensor]]:
    """Scans per second (the better of two passes after a warm-up) and the images read."""
    images = [batch["image"] for batch in reader.batches(table)]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for _batch in reader.batches(table):
            pass
        times.append(time.perf_counter() - start)
    return len(table) / min(times), images


def main() -> None:
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        table = scans_table(cohort("ukbb", SCANS, Path(tmp)))
        preprocessing = Preprocessing(shape=(160, 192, 160), normalise="mean")
        for workers in WORKERS:
            reader = ScanReader(preprocessing=preprocessing, minmax=None, affine=np.eye(4),
                                shape=None, batch_size=8, num_workers=workers)
            speed, images = passes(reader, table)
            reference = reference or images
            same = all(torch.equal(a, b) for a, b in zip(reference, images, strict=True))
            rows.append(f"| {workers} | {speed:.1f} | {same} |")
            print(rows[-1], flush=True)
    text = "\n".join([
        "# Reading new scans: `neurocvae-encode`'s `num_workers`", "",
        f"`python experiments/bench_encode.py` on {platform.processor() or platform.machine()}, "
        f"{available_cores()} cores, {time.strftime('%Y-%m-%d')}: {SCANS} synthetic scans on "
        "UK Biobank's 1 mm grid (182×218×182 `.nii.gz`), read as model inputs (load, RAS, "
        "divide by mean, crop to 160×192×160, float16 rounding), batch 8; the better of two "
        "passes after a warm-up. `same`: the batches equal those read without workers.", "",
        "| num_workers | scans/s | same |", "|---|---|---|", *rows, ""])
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
