"""SFCN training survives a cluster: the installed `neurocvae-brainage`, stopped by SIGTERM and
then killed with SIGKILL, started again each time with the same command, ends exactly where an
uninterrupted run ends (weights, optimiser, batch counter, curves and predictions)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from neurocvae.synthetic.renderer import generate_cohort
from tests.cli.test_brainage_cli import FAST, command
from tests.cli.test_resume import checkpoint, same_state, start_and_wait_for_step
from tests.conftest import counts, synth_recipe

pytestmark = pytest.mark.slow

# 24 training controls in batches of 4: 6 batches per epoch, last.ckpt every 4 batches.
RESUMABLE = ["trainer.max_epochs=3", "checkpoint.every_n_batches=4", "data.batch_size=4",
             "data.split_fractions={train:0.5,val:0.25,test:0.25}", "correction.min_subjects=5"]


def test_a_stopped_then_killed_training_ends_like_an_uninterrupted_one(tmp_path):
    cohort = generate_cohort(synth_recipe(*counts(HC=48, MDD=4, diabetes=4, dual=4), "twins=false"),
                             tmp_path / "cohort", workers=2)

    def args(out_dir: Path) -> list[str]:
        return [command(), *FAST, *RESUMABLE, f"data.manifest={cohort / 'manifest.csv'}",
                f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={out_dir}",
                "selection.mode=all"]

    whole, run = tmp_path / "whole", tmp_path / "run"
    done = subprocess.run(args(whole), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    process = start_and_wait_for_step(args(run), run, 2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout + stderr
    assert checkpoint(run / "checkpoints" / "last.ckpt")["batches_seen"] >= 3
    assert not (run / "brainage.csv").exists()

    process = start_and_wait_for_step(args(run), run, 8)  # resumed, then killed in epoch 1
    process.send_signal(signal.SIGKILL)
    process.communicate()
    again = subprocess.run(args(run), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout + again.stderr

    for name in ("last.ckpt", "best.ckpt"):
        same_state(checkpoint(run / "checkpoints" / name),
                   checkpoint(whole / "checkpoints" / name))
    pd.testing.assert_frame_equal(pd.read_csv(run / "logs" / "metrics.csv"),
                                  pd.read_csv(whole / "logs" / "metrics.csv"), rtol=1e-5)
    pd.testing.assert_frame_equal(pd.read_csv(run / "brainage.csv"),
                                  pd.read_csv(whole / "brainage.csv"), rtol=1e-5)
