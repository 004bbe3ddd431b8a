"""The cluster configs compose: every point of every named sweep is a valid training config,
the SLURM launcher starts one task per GPU with parameters submitit accepts, the run id names a
requeued job's folder again, and submitit jobs train in their sweep's folder."""

from __future__ import annotations

import itertools
import os
import subprocess

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from neurocvae.config import config_dir, run_id
from tests.cli.conftest import TRAIN_COMMAND, overrides
from tests.conftest import compose_config

SETS = ["data.target=t.csv", "data.background=b.csv"]
SWEEPS = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def sweep_points(name: str) -> list[list[str]]:
    params = compose_with_hydra([f"sweep={name}", *SETS]).hydra.sweeper.params
    axes = [[f"{key}={value}" for value in str(values).split(",")]
            for key, values in params.items()]
    return [list(point) for point in itertools.product(*axes)]


def test_the_named_sweeps_are_all_here():
    assert {"gamma", "beta_schedules", "ablations", "replication"} <= set(SWEEPS)
    assert len(sweep_points("ablations")) == 4 and len(sweep_points("replication")) == 5


@pytest.mark.parametrize("name", SWEEPS)
def test_every_point_of_a_named_sweep_is_a_valid_training_config(name):
    points = sweep_points(name)
    assert len(points) >= 4
    composed = [compose_config("train", [*SETS, *point]) for point in points]
    described = {OmegaConf.to_yaml(cfg) for cfg in composed}
    assert len(described) == len(points)  # every point trains something different
    for cfg in composed:
        assert cfg.discriminator is not None or cfg.gamma.value == 0


def test_the_slurm_launcher_starts_one_task_per_gpu(tmp_path, monkeypatch):
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                              "trainer.num_nodes=2", *SETS])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher.pop("_target_").endswith("submitit_launcher.SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4
    assert launcher["nodes"] == 2 and launcher["max_num_timeout"] > 0
    assert launcher.pop("submitit_folder").endswith("/.submitit/%j")
    srun = tmp_path / "bin" / "srun"  # submitit looks for srun before it takes parameters
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    # what the launcher does with them (hydra_submitit_launcher's BaseSubmititLauncher.launch)
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm",
                                     slurm_max_num_timeout=launcher.pop("max_num_timeout"))
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v
                                  for k, v in launcher.items()})


def test_the_run_id_is_the_slurm_job_id_when_there_is_one(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert run_id()[:2] == "20"  # the start time, e.g. 2026-11-24_10-05-00
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert run_id() == "123"
    assert compose_config("train", SETS).run_id == "123"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "120")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_id() == "120_3"


@pytest.mark.slow
def test_submitit_jobs_train_in_the_sweep_folder_the_launching_process_named(sets, tmp_path):
    """submitit's local executor stands in for SLURM: each point is a pickled submitit job in
    its own process, started seconds after the sweep folder was named. The run id resolver is
    cached, and Hydra copies the cache into the jobs, so they land in that folder (a
    resubmitted job, too)."""
    done = subprocess.run(
        [TRAIN_COMMAND, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
         *overrides(sets, None), "gamma.value=0,1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multirun").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [".submitit", "0", "1"]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert (sweep / job / "logs" / "metrics.csv").is_file()
