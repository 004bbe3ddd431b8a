"""`neurocvae-brainage` on a small synthetic cohort: in process (composed configs) and installed."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurocvae.brainage.bins import AgeRangeWarning
from neurocvae.brainage.correction import BiasCorrection
from neurocvae.brainage.selection import ORIGINAL_THRESHOLDS
from neurocvae.cli.brainage import brainage
from neurocvae.data.cohort import read_manifest
from neurocvae.synthetic.renderer import generate_cohort
from tests.conftest import compose_config, counts, synth_recipe

# Two epochs learn little age: the offset form, with no least slope of predicted on true age.
FAST = ["net=sfcn_small", "optim=adam", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "data.preprocessing.shape=[40,48,40]", "data.num_workers=0", "data.cache_workers=0",
        "data.split_fractions={train:0.5,val:0.25,test:0.25}", "correction.min_subjects=5",
        "correction.form=offset", "correction.min_slope=-inf", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """60 HC and 10 of each patient group on the 4 mm grid (40×48×40)."""
    recipe = synth_recipe(*counts(HC=60, MDD=10, diabetes=10, dual=10), "twins=false")
    return generate_cohort(recipe, tmp_path_factory.mktemp("brainage") / "cohort", workers=2)


def config(cohort: Path, out_dir: Path, *overrides: str):
    return compose_config("brainage", [*FAST, f"data.manifest={cohort / 'manifest.csv'}",
                                       f"data.cache_dir={out_dir.parent / 'cache'}",
                                       f"out_dir={out_dir}", *overrides])


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("run") / "brainage"
    brainage(config(cohort, out_dir))
    return out_dir


def test_one_run_writes_every_result(trained, cohort):
    table = pd.read_csv(trained / "brainage.csv")
    manifest = pd.read_csv(cohort / "manifest.csv")
    assert sorted(table["subject_id"]) == sorted(manifest["subject_id"])
    assert table[["brain_age", "corrected_age", "bag"]].notna().all().all()
    fit = table[table["sfcn_fit"]]
    assert set(fit["group"]) == {"HC"} and set(fit["split"]) == {"train"}
    assert len(fit) == ((table["group"] == "HC") & (table["split"] == "train")).sum()
    lbc_fit = table[table["lbc_fit"]]
    assert set(lbc_fit["group"]) == {"HC"} and set(lbc_fit["split"]) == {"val"}
    lbc = BiasCorrection.load(trained / "lbc.json")
    assert lbc.n == len(lbc_fit) and lbc.form == "offset"
    assert (table["bag"] - lbc.gap(table["brain_age"], table["age"])).abs().max() < 1e-4

    read_manifest(trained / "target.csv")  # valid cohort tables, for the contrastive stage
    read_manifest(trained / "background.csv")
    targets = pd.read_csv(trained / "target.csv")
    background = pd.read_csv(trained / "background.csv")
    assert {"brain_age", "bag"} <= set(targets.columns)
    assert (targets["bag"] > targets["group"].map(ORIGINAL_THRESHOLDS)).all()
    assert set(background["group"]) == {"HC"} and background["subject_id"].is_unique
    assert not set(background["subject_id"]) & set(fit["subject_id"])

    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["held_out_controls"]["raw"]["n"] == (
        (table["split"] == "test") & (table["group"] == "HC")).sum()
    assert set(metrics["bag_by_group"]) == {"HC", "MDD", "diabetes", "dual"}
    summary = json.loads((trained / "selection.json").read_text())
    assert sum(g["n"] for g in summary["target"].values()) == len(targets)
    for name in ("predicted_vs_age.png", "bag_by_group.png", "selection_ages.png",
                 "checkpoints/best.ckpt", "logs/metrics.csv"):
        assert (trained / name).stat().st_size > 0, name


def test_a_saved_checkpoint_predicts_the_same_without_training(trained, cohort, tmp_path):
    out_dir = tmp_path / "loaded"
    brainage(config(cohort, out_dir, "train=false",
                    f"weights={trained / 'checkpoints' / 'best.ckpt'}"))
    first = pd.read_csv(trained / "brainage.csv").set_index("subject_id")
    again = pd.read_csv(out_dir / "brainage.csv").set_index("subject_id").loc[first.index]
    assert (first["brain_age"] - again["brain_age"]).abs().max() < 1e-4
    assert not again["sfcn_fit"].any()  # nothing was fitted: every control may be background
    assert not (out_dir / "checkpoints").exists()


def test_groups_of_any_name_are_selected_by_their_own_thresholds(trained, cohort, tmp_path):
    """Controls named `control`, patients C1, C2 and C12; C12 has no threshold."""
    names = {"HC": "control", "MDD": "C1", "diabetes": "C2", "dual": "C12"}
    table = pd.read_csv(cohort / "manifest.csv")
    table["path"] = [str(cohort / p) for p in table["path"]]
    table.assign(group=table["group"].map(names)).to_csv(tmp_path / "own.csv", index=False)
    out_dir = tmp_path / "own"
    with pytest.warns(UserWarning, match=r"patient group\(s\) \['C12'\] have no selection"):
        brainage(config(cohort, out_dir, "train=false", "controls=control",
                        f"weights={trained / 'checkpoints' / 'best.ckpt'}",
                        f"data.manifest={tmp_path / 'own.csv'}",
                        "+selection.thresholds={C1:-100,C2:-100}"))
    targets = pd.read_csv(out_dir / "target.csv")
    assert sorted(targets["group"].unique()) == ["C1", "C2"]
    assert set(pd.read_csv(out_dir / "background.csv")["group"]) == {"control"}
    assert set(pd.read_csv(out_dir / "brainage.csv").query("lbc_fit")["group"]) == {"control"}


def test_the_best_checkpoint_carries_batchnorm_statistics_of_its_own_weights(trained, cohort):
    import hydra

    from neurocvae.brainage.precise_bn import batchnorm_layers, recompute_batchnorm
    from neurocvae.brainage.stage import sfcn_module

    cfg = config(cohort, trained.parent / "unused", "train=false",
                 f"weights={trained / 'checkpoints' / 'best.ckpt'}")
    module = sfcn_module(cfg).eval()
    saved = [layer.running_mean.clone() for layer in batchnorm_layers(module)]
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    recompute_batchnorm(module, (datamodule.on_after_batch_transfer(b, 0)["image"]
                                 for b in datamodule.statistics_dataloader()))
    for before, layer in zip(saved, batchnorm_layers(module), strict=True):
        torch.testing.assert_close(layer.running_mean, before, rtol=1e-4, atol=1e-5)


def predict(cohort: Path, out_dir: Path, trained: Path, manifest: Path, *extra: str):
    return brainage(config(cohort, out_dir, "task=predict", "train=false",
                           f"weights={trained / 'checkpoints' / 'best.ckpt'}",
                           f"data.manifest={manifest}", *extra))


def test_prediction_needs_no_ages_or_groups_and_applies_a_saved_correction(trained, cohort,
                                                                          tmp_path):
    first = pd.read_csv(trained / "brainage.csv").set_index("subject_id")
    table = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    table["path"] = [str(cohort / p) for p in table["path"]]
    table.loc[:9, "age"] = ""  # ten scans without an age
    table.drop(columns=["group", "sex", "site"]).to_csv(tmp_path / "new.csv", index=False)

    metrics = predict(cohort, tmp_path / "plain", trained, tmp_path / "new.csv")
    plain = pd.read_csv(tmp_path / "plain" / "brainage.csv").set_index("subject_id")
    assert (plain["brain_age"] - first.loc[plain.index, "brain_age"]).abs().max() < 1e-4
    assert "bag" not in plain and metrics["with_age"] == len(table) - 10
    assert {p.name for p in (tmp_path / "plain").iterdir()} == {"brainage.csv", "metrics.json"}

    predict(cohort, tmp_path / "corrected", trained, tmp_path / "new.csv",
            f"correction.file={trained / 'lbc.json'}")
    corrected = pd.read_csv(tmp_path / "corrected" / "brainage.csv").set_index("subject_id")
    known = corrected["age"].notna()
    assert corrected.loc[~known, "bag"].isna().all()
    assert (corrected.loc[known, "bag"] - first.loc[known[known].index, "bag"]).abs().max() < 1e-4


def test_a_folder_of_scans_is_predicted_as_it_is(trained, cohort, tmp_path):
    predict(cohort, tmp_path / "run", trained, cohort / "volumes")
    table = pd.read_csv(tmp_path / "run" / "brainage.csv")
    assert len(table) == len(pd.read_csv(cohort / "manifest.csv"))
    assert table["subject_id"].str.startswith("sub-").all() and table["brain_age"].notna().all()


def test_controls_only_keep_their_predictions_when_nobody_is_selected(trained, cohort, tmp_path,
                                                                      capsys):
    table = pd.read_csv(cohort / "manifest.csv")
    table["path"] = [str(cohort / p) for p in table["path"]]
    table[table["group"] == "HC"].to_csv(tmp_path / "controls.csv", index=False)
    with pytest.raises(SystemExit) as stop:
        brainage(config(cohort, tmp_path / "run", "train=false",
                        f"weights={trained / 'checkpoints' / 'best.ckpt'}",
                        f"data.manifest={tmp_path / 'controls.csv'}"))
    assert stop.value.code == 2
    assert "brainage.csv, lbc.json, metrics.json" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "run" / "brainage.csv")) == 60
    assert not (tmp_path / "run" / "target.csv").exists()


def test_no_bag_filter_takes_every_patient(trained, cohort, tmp_path):
    out_dir = tmp_path / "all"
    brainage(config(cohort, out_dir, "train=false", "selection.mode=all",
                    f"weights={trained / 'checkpoints' / 'best.ckpt'}"))
    assert len(pd.read_csv(out_dir / "target.csv")) == 30


def test_ages_outside_the_bins_warn_with_their_count(cohort, tmp_path):
    ages = pd.read_csv(cohort / "manifest.csv")["age"]
    with pytest.warns(AgeRangeWarning) as warned:
        brainage(config(cohort, tmp_path / "run", "trainer.max_epochs=1", "bins.start=50",
                        "bins.stop=90"))
    messages = [str(w.message) for w in warned]
    assert any(f"{(ages < 50).sum()} of {len(ages)} scans have ages outside" in m
               for m in messages)
    assert any("training subjects have ages outside the SFCN bins [50, 90)" in m
               for m in messages)


@pytest.mark.parametrize(("overrides", "message"), [
    (["correction.min_subjects=100"], "needs at least 100 healthy controls to fit on (HC of the "
                                      "'val' split); found"),
    (["train=false"], "train=false needs weights=<a weight file>"),
    (["correction.fit_on=train"], "must be fitted on controls the network did not train on"),
    (["bins.stop=90"], "net.output_dim=40 but bins"),
    (["train=false", "weights=nowhere.p"], "nowhere.p: weight file not found"),
    (["optim.optimizer.lr=0"], "optim.optimizer.lr=0: expected a finite number > 0"),
    (["task=score"], "task='score': expected one of ('full', 'predict')"),
    (["task=predict"], "task=predict uses weights as they are: set train=false"),
    (["task=predict", "train=false", "weights=w.p", "correction.file=nowhere.json"],
     "correction.file=nowhere.json: no such file"),
    (["correction.file=lbc.json"], "correction.file applies a saved correction with task=predict"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0: expected a finite number ≥ 1"),
    (["selection.thresholds.MDD=high"],
     "selection.thresholds.MDD=high: expected a finite number > -inf (years of BAG)"),
    (["selection.thresholds=null"], "selection.thresholds=None: expected years of BAG per"),
])
def test_bad_settings_stop_with_one_clear_line(cohort, tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as stop:
        brainage(config(cohort, tmp_path / "run", *overrides))
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_manifest_without_rows_is_refused(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("subject_id,path,age,sex,group,site\n")
    with pytest.raises(SystemExit):
        brainage(compose_config("brainage", [*FAST, f"data.manifest={tmp_path / 'manifest.csv'}",
                                             f"out_dir={tmp_path / 'run'}"]))
    assert "manifest.csv: no rows" in capsys.readouterr().err


def test_results_are_not_overwritten_unless_asked(trained, cohort, capsys):
    with pytest.raises(SystemExit):
        brainage(config(cohort, trained))
    assert "already holds ['brainage.csv', 'lbc.json', 'metrics.json', 'target.csv', " \
        "'background.csv']" in capsys.readouterr().err


def test_overwriting_replaces_the_old_checkpoints(trained, cohort, tmp_path):
    out_dir = tmp_path / "again"
    shutil.copytree(trained, out_dir)
    (out_dir / "checkpoints" / "stale.ckpt").write_text("from an earlier run")
    (out_dir / "target.splits.json").write_text("{}")  # the train stage's splits of old sets
    brainage(config(cohort, out_dir, "overwrite=true", "trainer.max_epochs=1"))
    assert not (out_dir / "target.splits.json").exists()
    assert sorted(p.name for p in (out_dir / "checkpoints").iterdir()) == ["best.ckpt",
                                                                          "last.ckpt"]


def command() -> str:
    beside_python = Path(sys.executable).parent / "neurocvae-brainage"
    exe = str(beside_python) if beside_python.is_file() else shutil.which("neurocvae-brainage")
    assert exe, "neurocvae-brainage is not installed"
    return exe


@pytest.mark.slow
def test_installed_command_learns_age_on_the_ci_cohort(ci_cohort, tmp_path):
    """The real command, from another folder, on 480 subjects (HC 240): a trained SFCN beats
    predicting the mean age, and the planted age acceleration shows in the gaps."""
    args = [f"data.manifest={ci_cohort / 'manifest.csv'}", "net=sfcn_small", "optim=adam",
            "optim.optimizer.lr=0.001", "trainer.max_epochs=20", "data.num_workers=0",
            "data.preprocessing.shape=[40,48,40]", f"data.cache_dir={tmp_path / 'cache'}",
            "out_dir=run", "trainer.enable_progress_bar=false"]
    result = subprocess.run([command(), *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    held_out = metrics["held_out_controls"]
    assert held_out["raw"]["mae"] < 0.6 * held_out["mean_age_mae"]
    bag = {group: value["mean"] for group, value in metrics["bag_by_group"].items()}
    assert bag["dual"] > bag["HC"] + 1  # planted: +3 years for dual, 0 for HC
    assert "held-out HC" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.slow
def test_ddp_predicts_an_odd_table_once_per_scan_and_trains_with_precise_batchnorm(
        trained, cohort, tmp_path):
    """Two processes on 89 scans: no scan padded in twice, the same ages as one process; and a
    DDP training run, whose BatchNorm statistics are recomputed on both ranks and averaged."""
    table = pd.read_csv(cohort / "manifest.csv").iloc[:89]
    table["path"] = [str(cohort / p) for p in table["path"]]
    table.drop(columns=["age", "group"]).to_csv(tmp_path / "odd.csv", index=False)
    common = [*FAST, f"data.cache_dir={tmp_path / 'cache'}"]
    predicting = ["task=predict", "train=false", f"data.manifest={tmp_path / 'odd.csv'}",
                  f"weights={trained / 'checkpoints' / 'best.ckpt'}"]
    predict(cohort, tmp_path / "one", trained, tmp_path / "odd.csv")
    for name, args in {"two": predicting, "trained": [f"data.manifest={cohort / 'manifest.csv'}",
                                                     "trainer.max_epochs=1"]}.items():
        result = subprocess.run([command(), *common, *args, "trainer=ddp_cpu",
                                 f"out_dir={tmp_path / name}"], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    one = pd.read_csv(tmp_path / "one" / "brainage.csv").set_index("subject_id")
    two = pd.read_csv(tmp_path / "two" / "brainage.csv").set_index("subject_id")
    assert two.index.is_unique and len(two) == 89
    assert (one["brain_age"] - two.loc[one.index, "brain_age"]).abs().max() < 1e-4
    assert (tmp_path / "trained" / "checkpoints" / "best.ckpt").is_file()


def test_two_ddp_processes_predict_every_scan_once_as_one_process_does(trained, cohort,
                                                                       tmp_path):
    """`trainer=ddp_cpu`: each rank predicts half the scans; the first gathers them, fits the
    correction once on every calibration control and writes the same results as one process."""
    loaded = ["train=false", f"weights={trained / 'checkpoints' / 'best.ckpt'}",
              f"data.manifest={cohort / 'manifest.csv'}",
              f"data.cache_dir={tmp_path / 'cache'}"]
    single = tmp_path / "single"
    brainage(config(cohort, single, *loaded))
    result = subprocess.run([command(), *FAST, *loaded, "trainer=ddp_cpu",
                             f"out_dir={tmp_path / 'ddp'}"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    one = pd.read_csv(single / "brainage.csv").set_index("subject_id").sort_index()
    two = pd.read_csv(tmp_path / "ddp" / "brainage.csv").set_index("subject_id").sort_index()
    assert len(two) == len(one) == len(pd.read_csv(cohort / "manifest.csv"))
    assert (one["brain_age"] - two["brain_age"]).abs().max() < 1e-4
    assert two["lbc_fit"].sum() == one["lbc_fit"].sum()
    assert json.loads((tmp_path / "ddp" / "lbc.json").read_text())["n"] == one["lbc_fit"].sum()
    for name in ("target.csv", "background.csv"):
        assert (sorted(pd.read_csv(tmp_path / "ddp" / name)["subject_id"])
                == sorted(pd.read_csv(single / name)["subject_id"]))


def test_a_trained_run_predicts_new_scans_as_the_command_did(trained, tmp_path):
    from neurocvae import BrainAgeModel

    written = pd.read_csv(trained / "brainage.csv").head(6)
    model = BrainAgeModel.load(trained)  # best.ckpt and lbc.json
    predicted = model.predict(written[["subject_id", "path", "age", "group"]])
    for column in ("brain_age", "corrected_age", "bag"):
        assert np.allclose(predicted[column], written[column], atol=1e-3), column
    alone = tmp_path / "sfcn.ckpt"  # a checkpoint copied alone, without a correction
    shutil.copy(trained / "checkpoints" / "best.ckpt", alone)
    bare = BrainAgeModel.load(alone).predict(list(written["path"]))
    assert "bag" not in bare and np.allclose(bare["brain_age"], written["brain_age"], atol=1e-3)
    onnxruntime = pytest.importorskip("onnxruntime")
    exported = model.export(tmp_path / "sfcn.onnx")
    volumes = np.stack([model.reader.preprocessing(p).numpy() for p in written["path"]])
    (ages,) = onnxruntime.InferenceSession(str(exported)).run(None, {"volume": volumes})
    assert np.allclose(ages, predicted["brain_age"], atol=1e-3)
