"""The `callbacks` group: early stopping and the model summary by default, none on request, any
Lightning callback added from the command line, and a clear error for an entry without a class.
The run's own checkpoints are always there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ModelSummary

from neurocvae.cli.train import train
from neurocvae.contrastive.training import callbacks
from neurocvae.errors import InputError
from neurocvae.runs import LastCheckpoint
from tests.cli.conftest import overrides
from tests.conftest import compose_config


def chosen(sets, *extra: str) -> list:
    return callbacks(compose_config("train", overrides(sets, None, *extra)), Path("run"))


def kinds(sets, *extra: str) -> list[type]:
    return [type(callback) for callback in chosen(sets, *extra)]


def test_the_default_stops_early_on_the_monitor_and_summarises_the_model(sets):
    found = chosen(sets, "monitor=val/loss", "callbacks.early_stopping.patience=5")
    assert [type(c) for c in found] == [ModelCheckpoint, LastCheckpoint, EarlyStopping,
                                        ModelSummary]
    best, stopping = found[0], found[2]
    assert best.monitor == stopping.monitor == "val/loss" and stopping.patience == 5


@pytest.mark.parametrize("extra", [["callbacks=none"], ["callbacks.early_stopping.patience=null"],
                                   ["early_stopping.patience=null"]])  # the former name
def test_no_early_stopping_keeps_the_run_s_own_checkpoints(sets, extra):
    found = kinds(sets, *extra)
    assert found[:2] == [ModelCheckpoint, LastCheckpoint] and EarlyStopping not in found


def test_an_experiment_s_patience_reaches_early_stopping(sets):
    (stopping,) = [c for c in chosen(sets, "experiment=m0_baseline")
                   if isinstance(c, EarlyStopping)]
    assert stopping.patience == 7


def test_an_entry_without_a_class_is_named(sets):
    with pytest.raises(InputError, match=r"callbacks.lr_monitor .* has no _target_"):
        chosen(sets, "+callbacks.lr_monitor.logging_interval=step")


def test_a_callback_added_on_the_command_line_runs_with_the_training(sets, tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config("train", overrides(
        sets, run_dir, "callbacks=none",
        "+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor")))
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert any(column.startswith("lr-Adam") for column in metrics)
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}
