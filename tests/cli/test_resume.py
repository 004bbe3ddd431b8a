"""Kill and resume: the installed `neurocvae-train`, killed mid-run and started again with the
same command, ends exactly where an uninterrupted run ends; SIGTERM and SIGUSR1 leave a
checkpoint behind; the run folder is named by the SLURM job id under SLURM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.cli.conftest import TRAIN_COMMAND, overrides, write_sets

pytestmark = pytest.mark.slow

# 12 training backgrounds in batches of 2: 6 batches per epoch, checkpoints every 4 batches and
# at each epoch's end. 48³ inputs make a batch take long enough (≈ 0.1 s) to kill it mid-way.
RESUMABLE = ["data.preprocessing.shape=[48,48,48]", "arch.channels=[8,16]", "data.batch_size=2",
             "trainer.max_epochs=3", "checkpoint.every_n_batches=4",
             "callbacks.early_stopping.patience=null"]
BATCHES_PER_EPOCH = 6
SAVE_POINTS = {4, 6, 8, 12, 16, 18}  # batches_seen of every last.ckpt (every 4, epoch ends)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """Volumes of 44×48×44 voxels, cropped to 48³."""
    return write_sets(tmp_path_factory.mktemp("sets"), (44, 48, 44))


def command(sets, run_dir: Path, *extra: str) -> list[str]:
    return [str(TRAIN_COMMAND), *overrides(sets, None, *RESUMABLE, *extra),
            f"hydra.run.dir={run_dir}"]


def logged_steps(run_dir: Path) -> list[int]:
    """Steps of the training rows in metrics.csv so far."""
    try:
        rows = pd.read_csv(run_dir / "logs" / "metrics.csv")
        return rows.dropna(subset=["train/loss_step"])["step"].astype(int).tolist()
    except (FileNotFoundError, ValueError, KeyError):  # not written yet, or being written
        return []


def start_and_wait_for_step(args: list[str], run_dir: Path, step: int,
                            **popen: object) -> subprocess.Popen:
    """Start training; return once the row of batch `step` is in metrics.csv."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               **popen)
    deadline = time.monotonic() + 300
    while max(logged_steps(run_dir), default=-1) < step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training did not reach the step in 300 s"
        time.sleep(0.005)
    return process


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_state(a: dict, b: dict) -> None:
    assert a["batches_seen"] == b["batches_seen"] and a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=1e-5, atol=1e-6, msg=key)
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for k, state in opt_a["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(value, opt_b["state"][k][name], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(sets, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = subprocess.run(command(sets, run_dir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize(("kill_after", "resumed_at"), [
    (4, 4),   # mid-epoch: after the checkpoint at batch 4, rows logged after it
    (6, 6),   # early in epoch 1: from the checkpoint at epoch 0's end
    (9, 8),   # mid-epoch 1: the loader resumes epoch 1's order, not epoch 0's
])
def test_a_killed_run_started_again_ends_like_an_uninterrupted_one(sets, tmp_path, uninterrupted,
                                                                   kill_after, resumed_at):
    run_dir = tmp_path / "run"
    process = start_and_wait_for_step(command(sets, run_dir), run_dir, kill_after)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    # On an idle machine the kill lands before the next save point; on a loaded one training
    # may pass it first. Either way the run must resume exactly.
    left = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert left["batches_seen"] >= resumed_at and left["batches_seen"] in SAVE_POINTS

    again = subprocess.run(command(sets, run_dir), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout

    for name in ("last.ckpt", "best.ckpt"):
        same_state(checkpoint(run_dir / "checkpoints" / name),
                   checkpoint(uninterrupted / "checkpoints" / name))
    resumed = pd.read_csv(run_dir / "logs" / "metrics.csv")
    whole = pd.read_csv(uninterrupted / "logs" / "metrics.csv")
    assert list(resumed.columns) == list(whole.columns)
    assert resumed[["epoch", "step"]].equals(whole[["epoch", "step"]])
    pd.testing.assert_frame_equal(resumed, whole, rtol=1e-5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_run_sent_a_signal_writes_a_checkpoint_before_it_exits(sets, tmp_path, uninterrupted,
                                                                 signum):
    run_dir = tmp_path / "run"
    args = command(sets, run_dir, "checkpoint.every_n_batches=null")  # epoch ends only
    process = start_and_wait_for_step(args, run_dir, 2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert f"stopped by {signal.Signals(signum).name}" in stdout + stderr
    left = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert left["batches_seen"] >= 3  # the batch reached when the signal landed (load-dependent)

    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    same_state(checkpoint(run_dir / "checkpoints" / "last.ckpt"),
               checkpoint(uninterrupted / "checkpoints" / "last.ckpt"))


def test_under_slurm_the_job_id_names_the_run_and_sigusr1_requeues_it(sets, tmp_path,
                                                                       uninterrupted):
    """A plain sbatch job (`--signal=SIGUSR1@90 --requeue`): SIGUSR1 before the time limit
    finishes the batch, writes last.ckpt and calls `scontrol requeue <job id>`; the requeued
    job (same id, same command) finds its run folder and ends like an uninterrupted run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\n")
    scontrol.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "neurocvae", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
    args = [str(TRAIN_COMMAND), *overrides(sets, None, *RESUMABLE)]
    run_dir = tmp_path / "outputs" / "train" / "4242"
    process = start_and_wait_for_step(args, run_dir, 2, env=env, cwd=tmp_path)
    process.send_signal(signal.SIGUSR1)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGUSR1, stderr[-3000:]
    assert "requeued SLURM job 4242" in stdout
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert not list(run_dir.glob("hpc_ckpt_*"))  # Lightning's own requeue stayed off

    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in again.stdout
    same_state(checkpoint(run_dir / "checkpoints" / "last.ckpt"),
               checkpoint(uninterrupted / "checkpoints" / "last.ckpt"))


def test_a_ddp_run_sent_sigterm_stops_both_ranks_and_resumes_exactly(sets, tmp_path):
    """Two gloo processes: SIGTERM to the launching one stops both at the same batch (no hang),
    writes last.ckpt, and the same command again ends like an uninterrupted DDP run (each
    rank's loader position and draws are restored)."""
    ddp = ("trainer=ddp_cpu", "checkpoint.every_n_batches=null")
    whole = tmp_path / "whole"
    done = subprocess.run(command(sets, whole, *ddp), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "run"
    process = start_and_wait_for_step(command(sets, run_dir, *ddp), run_dir, 0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    left = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert left["batches_seen"] >= 1  # where the signal landed depends on the machine's load
    assert "stopped by SIGTERM" in stdout + stderr

    again = subprocess.run(command(sets, run_dir, *ddp), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    same_state(checkpoint(run_dir / "checkpoints" / "last.ckpt"),
               checkpoint(whole / "checkpoints" / "last.ckpt"))
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "logs" / "metrics.csv"),
                                  pd.read_csv(whole / "logs" / "metrics.csv"), rtol=1e-5)
