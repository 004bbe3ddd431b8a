"""`neurocvae-train`: every experiment config runs end to end on tiny volumes (in process), the
command resumes, refuses bad settings, and runs installed, with multirun."""

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from neurocvae.cli import known_settings
from neurocvae.cli.train import train
from neurocvae.config import config_dir
from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.density import sample_mixture
from neurocvae.contrastive.discriminator import DiscriminatorWarning
from tests.cli.conftest import TRAIN_COMMAND, offline_runs, overrides, wandb_records
from tests.conftest import compose_config

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
pytestmark = pytest.mark.filterwarnings(f"ignore::{DiscriminatorWarning.__module__}."
                                        f"{DiscriminatorWarning.__name__}")


def run(sets, out_dir: Path, *extra: str) -> dict:
    return train(compose_config("train", overrides(sets, out_dir, *extra)))


def test_experiment_configs_are_all_here():
    assert {"m0_baseline", "m1_gamma_0.01", "m2_no_discriminator", "m3_cyclical_beta", "m4_rae",
            "no_kl", "aglinskas2022", "mm_cvae", "contrastivevi_w2"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_experiment_trains_and_writes_its_run_folder(sets, tmp_path, experiment):
    cfg = compose_config("train", overrides(sets, tmp_path)
                         + ([f"experiment={experiment}"] if experiment else []))
    summary = train(cfg)
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (tmp_path / "checkpoints").iterdir()}
    metrics = pd.read_csv(tmp_path / "logs" / "metrics.csv")
    assert metrics["train/loss_step"].notna().sum() == 3 and metrics["val/rec"].notna().any()
    assert ("train/tc_step" in metrics) == (cfg.discriminator is not None)
    assert summary["spaces"]["val"]["n"] == 4
    assert json.loads((tmp_path / "separation.json").read_text()) == json.loads(
        json.dumps(summary))
    model = load_module(tmp_path / "checkpoints" / "best.ckpt")
    assert model.stochastic == cfg.arch.stochastic and model.batches_seen == 3
    if not cfg.arch.stochastic:  # RAE: the ex-post mixtures sample codes of the right size
        assert sample_mixture(tmp_path / "density" / "salient.npz", 5).shape == (5, 2)
        assert sample_mixture(tmp_path / "density" / "shared.npz", 5).shape == (5, 3)


def test_the_original_m3_schedule_is_counted_in_epochs(sets, tmp_path):
    run(sets, tmp_path, "experiment=m3_cyclical_beta", "trainer.max_epochs=6")
    betas = pd.read_csv(tmp_path / "logs" / "metrics.csv").dropna(subset=["train/beta_step"])
    by_epoch = betas.groupby("epoch")["train/beta_step"].agg(["min", "max"])
    assert (by_epoch["min"] == by_epoch["max"]).all()
    assert by_epoch["min"].tolist() == pytest.approx([1, 1, 1, 1, 0, 0.1])


def test_running_the_same_command_again_resumes(sets, tmp_path):
    run(sets, tmp_path)
    run(sets, tmp_path, "trainer.max_epochs=2")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["batches_seen"] == 6
    epochs = pd.read_csv(tmp_path / "logs" / "metrics.csv").dropna(subset=["train/loss_step"])
    assert epochs["epoch"].tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(("extra", "message"), [
    (["discriminator=null", "gamma.value=1"], "needs a discriminator"),
    (["trainer.precision=16-mixed"], "use bf16-mixed"),
    (["data.batch_size=1"], "at least 2 targets"),
    (["~data.split_fractions.val"], "needs a 'val' split"),
    (["ckpt_path=nowhere.ckpt"], "no such checkpoint"),
    (["checkpoint.every_n_batches=0"], "a whole number ≥ 1"),
    (["logger=wandb", "logger.wandb.mode=cloud"], "expected one of ('offline'"),
    (["model.reconstruction=exact"], "expected one of ('fixed', 'calibrated')"),
    (["initialise.contrast=-1"], "expected a finite number > 0"),
    (["initialise.outside_detail=maybe"], "initialise.outside_detail=maybe: expected true or "
                                          "false"),
    (["initialise.freeze_salient_means=1"], "initialise.freeze_salient_means=1: expected "
                                            "true or false"),
    (["initialise.share_detail=0"], "initialise.share_detail=0: expected a finite number > 0"),
    (["initialise.share_detail=1.5"], "initialise.share_detail=1.5: expected a share of the "
                                      "pattern's peak below 1"),
    (["arch.shared_projection=fine"], "expected one of ('coarse', 'linear')"),
    (["arch.salient_linear_voxels=0"], "arch.salient_linear_voxels=0: expected a finite "
                                       "number ≥ 1"),
    (["arch.salient_linear_voxels=262144"], "exceeds arch.linear_voxels=131072: the salient "
                                            "images lie on the shared images' grid"),
    (["beta.value=-1"], "beta.value=-1: expected a finite number ≥ 0"),
    (["beta=cyclical", "beta.value=-0.5"], "beta.value=-0.5: expected a finite number ≥ 0"),
    (["gamma.value=-1"], "gamma.value=-1: expected a finite number ≥ 0"),
    (["optimizer.lr=0"], "optimizer.lr=0: expected a finite number > 0"),
    (["optimizer.lr=nan"], "optimizer.lr=nan: expected a finite number > 0"),
    (["discriminator_optimizer.lr=-1e-4"], "discriminator_optimizer.lr=-0.0001: expected"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: expected a finite number ≥ 1"),
    (["data.preprocessing.shape=[3,3,3]"], "too small for the networks: their 2 stride-2 "
                                           "stages need at least 4 voxels"),
    (["data.preprocessing.shape=[160,192,160]"], "is 100% zero padding around volumes of "
                                                 "12×14×10 voxels"),
    *([(["trainer=ddp"], "No supported gpu backend")] if not torch.cuda.is_available() else []),
])
def test_bad_settings_are_refused_before_training(sets, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        run(sets, tmp_path, *extra)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_a_patient_in_the_background_table_is_refused(sets, tmp_path, capsys):
    target, background = sets
    table = pd.read_csv(background)
    table.loc[[2, 5], "group"] = "MDD"
    mixed = background.with_name("mixed_background.csv")
    table.to_csv(mixed, index=False)
    with pytest.raises(SystemExit):
        run((target, mixed), tmp_path / "run")
    assert ("the background set holds one group, the controls (HC); 2 row(s) are in group(s) "
            "['MDD'] (lines 4, 7)" in capsys.readouterr().err)


def test_an_added_key_nothing_reads_is_refused(sets, tmp_path, capsys):
    """`+foo=1` would be stored and ignored; a nested addition to a known entry passes on."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides(sets, tmp_path, "+foo=1"),
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(SystemExit):
            train(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert "unknown setting(s) ['+foo=1']: train has no such key" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_a_fresh_start_will_not_mix_with_an_earlier_run(sets, tmp_path, capsys):
    run(sets, tmp_path)
    with pytest.raises(SystemExit):
        run(sets, tmp_path, "ckpt_path=null")
    assert "holds checkpoints of an earlier run" in capsys.readouterr().err


@pytest.mark.slow
def test_installed_command_runs_a_named_sweep_into_one_folder_per_point(sets, tmp_path):
    help_text = subprocess.run([TRAIN_COMMAND, "--help"], capture_output=True, text=True,
                               check=True)
    assert "neurocvae-train" in help_text.stdout and "sweep" in help_text.stdout
    done = subprocess.run(
        [TRAIN_COMMAND, "-m", "sweep=ablations", *overrides(sets, None), "run_id=sweep",
         "logger=wandb", "logger.mode=offline",  # a former name of logger.wandb.mode
         "hydra.sweep.dir=" + str(tmp_path / "sweep")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logger.mode has moved to logger.wandb.mode" in done.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    experiments = {}
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert (job / "separation.json").is_file()
        metrics = pd.read_csv(job / "logs" / "metrics.csv")
        assert metrics["val/rec"].notna().any()
        (chosen,) = [o for o in (job / ".hydra" / "overrides.yaml").read_text().split()
                     if o.startswith("experiment=")]
        experiments[chosen.removeprefix("experiment=")] = (job, metrics)
    assert set(experiments) == {"cvae", "no_discriminator", "no_kl", "rae"}
    assert "train/tc_step" not in experiments["no_discriminator"][1]
    assert (experiments["no_kl"][1]["train/beta_step"].dropna() == 0).all()
    assert (experiments["rae"][0] / "density" / "salient.npz").is_file()
    # one W&B run per point (the jobs run one after another in one process), grouped by sweep
    runs = {}
    for job in jobs:
        (offline,) = offline_runs(job)
        (log,) = offline.glob("run-*.wandb")
        (run,) = [r.run for r in wandb_records(log) if r.WhichOneof("record_type") == "run"]
        runs[run.run_id] = (run.run_group, run.display_name)
    assert len(runs) == 4
    assert sorted(runs.values()) == [("sweep", f"sweep/{n}") for n in "0123"]


def test_the_salient_code_means_stay_the_linear_starts_projection(sets, tmp_path, capsys):
    run(sets, tmp_path / "frozen")
    run(sets, tmp_path / "frozen", "trainer.max_epochs=2")  # resumed: still frozen
    frozen = load_module(tmp_path / "frozen" / "checkpoints" / "last.ckpt").nets
    assert not frozen.salient_encoder.mu.weight.any() and not frozen.salient_encoder.mu.bias.any()
    assert frozen.salient_encoder.logvar.weight.any() and frozen.shared_encoder.mu.weight.any()
    run(sets, tmp_path / "trained", "initialise.freeze_salient_means=false")
    trained = load_module(tmp_path / "trained" / "checkpoints" / "last.ckpt").nets
    assert trained.salient_encoder.mu.weight.any()
    with pytest.raises(SystemExit) as exit_:  # resumed with the means frozen: refused
        run(sets, tmp_path / "trained", "trainer.max_epochs=2")
    assert exit_.value.code == 2
    assert "resume it with initialise.freeze_salient_means=false" in capsys.readouterr().err
    run(sets, tmp_path / "trained", "trainer.max_epochs=2", "initialise.freeze_salient_means=false")


def test_the_training_stage_is_a_function_of_its_config(sets, tmp_path):
    """From plain Python: compose the config, call `fit`, get the best model and its data."""
    from neurocvae.config import compose_config as compose_from_python
    from neurocvae.contrastive import encode_split, fit

    fitted = fit(compose_from_python("train", overrides(sets, tmp_path)))
    assert fitted.checkpoint == str(tmp_path / "checkpoints" / "best.ckpt")
    assert not fitted.module.training and fitted.out_dir == tmp_path
    codes = encode_split(fitted.module, fitted.datamodule, "val")
    assert len(codes) == 4 and not (tmp_path / "separation.json").exists()


def test_bf16_mixed_precision_trains_the_default_model_on_the_cpu(sets, tmp_path):
    """The full preset's `trainer.precision=bf16-mixed`, on the CPU: float32 weights stay finite
    and the validation error stays within 1e-4 of float32 training's, though not equal to it
    (the convolutions and products ran in bfloat16)."""
    from neurocvae.config import compose_config as compose_from_python
    from neurocvae.contrastive import fit

    scores = {}
    for precision in ("32-true", "bf16-mixed"):
        out_dir = tmp_path / precision
        scores[precision] = fit(compose_from_python("train", overrides(
            sets, out_dir, f"trainer.precision={precision}", "trainer.max_epochs=2"))).best_score
        weights = torch.load(out_dir / "checkpoints" / "last.ckpt",
                             weights_only=True)["state_dict"].values()
        assert all(w.dtype == torch.float32 and torch.isfinite(w).all()
                   for w in weights if w.is_floating_point())
    assert scores["bf16-mixed"] != scores["32-true"]
    assert scores["bf16-mixed"] == pytest.approx(scores["32-true"], rel=1e-4)


@pytest.mark.parametrize("debug", ["fast_dev_run", "limit", "overfit", "profiler"])
def test_every_debug_config_trains(sets, tmp_path, debug):
    summary = run(sets, tmp_path, f"debug={debug}", "trainer.max_epochs=2")
    assert summary["spaces"]["val"]["n"] == 4
    if debug != "fast_dev_run":  # which writes no checkpoint and no log, by design
        assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
        assert summary["monitor"] == "val/rec" and math.isfinite(summary["best_score"])


@pytest.mark.slow
def test_an_optuna_search_of_three_trials_writes_its_best_settings(sets, tmp_path):
    sweep = tmp_path / "search"
    result = subprocess.run(
        [TRAIN_COMMAND, "hparams_search=optuna", "hydra.sweeper.n_trials=3",
         *overrides(sets, None), f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"optimizer.lr", "initialise.contrast",
                                     "model.background_salient_weight"}
    scores = [json.loads((sweep / str(k) / "separation.json").read_text())["best_score"]
              for k in range(3)]
    assert best.best_value == pytest.approx(min(scores))


def test_keys_a_chosen_global_option_brings_are_known():
    """`+arms.<name>=[…]` adds an arm to the chosen preset: the preset's keys are top-level."""
    assert "arms" not in known_settings("benchmark")
    assert {"arms", "seeds", "cohort"} <= known_settings("benchmark", {"preset": "quick"})
    assert "foo" not in known_settings("benchmark", {"preset": "quick"})
