"""DDP: the installed `neurocvae-train trainer=ddp_cpu` trains the cVAE with its discriminator
in two real processes (gloo), and a multirun never starts DDP ranks by re-running itself."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.schedules import Cyclical
from neurocvae.errors import InputError
from neurocvae.evaluation.evaluate import run_config, run_datamodule
from neurocvae.runs import check_launch
from tests.cli.conftest import TRAIN_COMMAND, overrides
from tests.conftest import compose_config

# 12 training backgrounds, 2 per step on each of 2 ranks: 3 batches per rank and epoch.
BATCHES_PER_RANK = 3


@pytest.mark.slow
def test_two_cpu_processes_train_the_cvae_and_write_one_checkpoint(sets, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [TRAIN_COMMAND, "trainer=ddp_cpu", *overrides(sets, None, "data.batch_size=2",
                                                      "trainer.max_epochs=2", "beta=cyclical",
                                                      "beta.cycles=2"),
         f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt",
                                                                           "last.ckpt"]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # the schedules' clock counts one rank's batches (the same on every rank)
    assert state["batches_seen"] == 2 * BATCHES_PER_RANK
    assert state["global_step"] == 2 * 2 * BATCHES_PER_RANK  # two optimisers per batch
    assert any(k.startswith("discriminator.") for k in state["state_dict"])

    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    steps = metrics.dropna(subset=["train/loss_step"])
    assert steps["step"].tolist() == list(range(2 * BATCHES_PER_RANK))
    cyclical = Cyclical(value=1.0, cycles=2)
    assert steps["train/beta_step"].tolist() == pytest.approx(
        [cyclical(b, BATCHES_PER_RANK, 2 * BATCHES_PER_RANK) for b in range(6)])
    assert steps["train/tc_step"].notna().all() and steps["train/disc_acc_step"].notna().all()
    epochs = metrics.dropna(subset=["train/loss_epoch"])
    for epoch, row in epochs.set_index("epoch").iterrows():  # epoch means of the synced steps
        assert row["train/loss_epoch"] == pytest.approx(
            steps[steps["epoch"] == epoch]["train/loss_step"].mean(), rel=1e-6)

    # val/rec is synchronised: the mean over both ranks' halves of the validation split, the
    # value one process gets on the whole split with the final weights
    module = load_module(run_dir / "checkpoints" / "last.ckpt")
    whole = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False).validate(
        module, datamodule=run_datamodule(run_config(run_dir)), verbose=False)
    assert metrics["val/rec"].dropna().iloc[-1] == pytest.approx(whole[0]["val/rec"], rel=1e-5)
    assert (run_dir / "separation.json").is_file()


def test_a_multirun_never_starts_ddp_ranks_by_rerunning_itself(monkeypatch):
    local = compose_config("train", ["trainer=ddp_cpu", "data.target=t", "data.background=b"])
    with pytest.raises(InputError, match="every rank would re-run the whole sweep"):
        check_launch(local.trainer, multirun=True)
    check_launch(local.trainer, multirun=False)  # a single run: Lightning starts the ranks
    check_launch(compose_config("train", ["data.target=t", "data.background=b"]).trainer,
                 multirun=True)  # one process per job
    for name, value in {"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "neurocvae"}.items():
        monkeypatch.setenv(name, value)  # SLURM started the ranks (one task per device)
    check_launch(local.trainer, multirun=True)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_gpu_ddp_config_trains_in_bf16(sets, tmp_path):
    gpus = min(torch.cuda.device_count(), 2)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [TRAIN_COMMAND, "trainer=ddp", f"trainer.devices={gpus}",
         *overrides(sets, None, "data.batch_size=2", "trainer.max_epochs=1"),
         f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["batches_seen"] == 2 * BATCHES_PER_RANK // gpus  # 12 backgrounds, 2 per step
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
               if v.is_floating_point())
