"""The loggers. `logger=wandb`: an offline W&B run beside the CSV log, whose id a resumed run
keeps (and whose curves it continues), with subject images only on request and a clear error
when online logging cannot start. `logger=tensorboard`, and several loggers at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from neurocvae.cli.train import train
from tests.cli.conftest import offline_runs, overrides, wandb_records
from tests.conftest import compose_config


def logged_steps(run: Path) -> list[int]:
    (log,) = run.glob("run-*.wandb")
    steps = []
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                     for i in record.history.item}
            steps.append(items.get("trainer/global_step"))
    return [s for s in steps if s is not None]


def run(sets, out_dir: Path, *extra: str, loggers: str = "logger=wandb") -> dict:
    return train(compose_config("train", overrides(sets, out_dir, loggers, *extra)))


def test_a_resumed_offline_run_keeps_its_id_and_continues_its_curves(sets, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline because the config says so
    run(sets, tmp_path)
    run_id = (tmp_path / "wandb_id").read_text().strip()
    (first,) = offline_runs(tmp_path)
    assert first.name.endswith(run_id)
    assert not list(first.rglob("*.png"))  # no pictures of subjects unless asked
    assert logged_steps(first)[:3] == [0, 1, 2]  # one batch per row, as in metrics.csv

    run(sets, tmp_path, "trainer.max_epochs=2")  # the same command, one epoch more: resumes
    assert (tmp_path / "wandb_id").read_text().strip() == run_id
    second = next(r for r in offline_runs(tmp_path) if r != first)
    assert second.name.endswith(run_id)  # `wandb sync` appends it to the same W&B run
    assert min(logged_steps(second)) == 3  # the second epoch's batches, after the first's
    assert pd.read_csv(tmp_path / "logs" / "metrics.csv")["train/loss_step"].notna().sum() == 6


def test_subject_images_only_when_the_flag_asks(sets, tmp_path):
    run(sets, tmp_path, "logger.wandb.log_images=true")
    (offline,) = offline_runs(tmp_path)
    pictures = list(offline.rglob("reconstruction_*.png"))  # one epoch: input, reconstruction
    assert len(pictures) == 2 and {p.parent.name for p in pictures} == {"val"}


def test_online_logging_without_a_key_fails_before_training(sets, tmp_path, monkeypatch,
                                                            capsys):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with pytest.raises(SystemExit) as exit_:
        run(sets, tmp_path / "run", "logger.wandb.mode=online")
    assert exit_.value.code == 2
    assert "logger.wandb.mode=offline" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_several_loggers_at_once_log_the_same_steps(sets, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(sets, tmp_path, loggers="logger=[wandb,tensorboard]")
    csv_steps = pd.read_csv(tmp_path / "logs" / "metrics.csv").dropna(
        subset=["train/loss_step"])["step"].tolist()
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("train/loss_step")] == csv_steps == [0, 1, 2]
    (offline,) = offline_runs(tmp_path)
    assert logged_steps(offline)[:3] == csv_steps


def test_tensorboard_without_its_package_is_refused_before_training(sets, tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails
    with pytest.raises(SystemExit) as exit_:
        run(sets, tmp_path, loggers="logger=tensorboard")
    assert exit_.value.code == 2
    assert 'pip install "neurocvae[tensorboard]"' in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_the_former_wandb_setting_names_still_work(sets):
    old = compose_config("train", overrides(sets, None, "logger=wandb", "logger.mode=disabled",
                                            "logger.tags=[a]"))
    assert old.logger.wandb.mode == "disabled" and list(old.logger.wandb.tags) == ["a"]


def test_checkpoints_and_the_evaluation_go_to_the_same_wandb_run(sets, tmp_path):
    from neurocvae.evaluation.evaluate import evaluate_run

    cfg = compose_config("train", overrides(sets, tmp_path, "logger=wandb",
                                            "logger.wandb.log_checkpoints=true"))
    train(cfg)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # what the command keeps
    (training,) = offline_runs(tmp_path)
    artifacts = [r.artifact for r in wandb_records(next(training.glob("run-*.wandb")))
                 if r.WhichOneof("record_type") == "artifact"]
    assert artifacts and {a.type for a in artifacts} == {"model"}

    evaluate_run(tmp_path, split="val", examples=1)
    evaluation = next(r for r in offline_runs(tmp_path) if r != training)
    assert evaluation.name.endswith((tmp_path / "wandb_id").read_text().strip())
    records = wandb_records(next(evaluation.glob("run-*.wandb")))
    summary = {item.key or "/".join(item.nested_key) for r in records
               if r.WhichOneof("record_type") == "summary" for item in r.summary.update}
    assert {"eval/active_s", "eval/auroc_z", "eval/ve", "eval/split"} <= summary
    media = {p.name.split("_")[0] for p in evaluation.rglob("*.png")}
    assert "embedding" in media and "curves" in media
    assert not list(evaluation.rglob("examples_*.png"))  # a subject's scans: only when asked
