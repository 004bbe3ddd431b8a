"""`neurocvae-benchmark` and `neurocvae-eval` end to end on a small planted-truth cohort: real
NIfTI volumes with healthy twins, real trainings and checkpoints, every output file checked."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from neurocvae.cli.benchmark import benchmark
from neurocvae.cli.eval import evaluate
from neurocvae.config import config_dir
from neurocvae.contrastive.build import load_module
from neurocvae.contrastive.discriminator import DiscriminatorWarning
from neurocvae.evaluation import baselines
from neurocvae.evaluation.evaluate import evaluate_sweep, run_config, run_datamodule
from neurocvae.evaluation.report import HEADLINE

pytestmark = [pytest.mark.filterwarnings(f"ignore::{DiscriminatorWarning.__module__}."
                                         f"{DiscriminatorWarning.__name__}")]
TINY_TRAIN = ("train=['data.preprocessing.shape=[24,24,24]','data.batch_size=4',"
              "'data.num_workers=0','data.cache_workers=0','arch.channels=[4,8]','arch.hidden=16',"
              "'arch.bottleneck_channels=null','trainer.max_epochs=2','callbacks.early_stopping.patience=null',"
              "'trainer.enable_progress_bar=false','trainer.log_every_n_steps=1']")
SMALL = ["cohort=['grid=ci','seed=3','groups.HC.count=32','groups.MDD.count=16',"
         "'groups.diabetes.count=16','groups.dual.count=0']",
         "split_fractions={train:0.5,val:0.25,test:0.25}", TINY_TRAIN]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A two-arm (VAE, cVAE), two-seed benchmark of the small cohort."""
    out = tmp_path_factory.mktemp("bench")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [*SMALL, f"out_dir={out}", "seeds=[0,1]", "only=[vae,cvae]"])
        results = benchmark.__wrapped__(cfg)
    return out, results


def test_benchmark_writes_one_row_per_arm_and_seed_and_a_summary(bench):
    out, results = bench
    assert sorted(zip(results["arm"], results["seed"].fillna(-1), strict=True)) == [
        ("cpca (baseline)", -1), ("cvae", 0), ("cvae", 1), ("pca (baseline)", -1),
        ("vae", 0), ("vae", 1)]
    assert pd.read_csv(out / "results.csv").shape == results.shape
    neural = results[results["arm"].isin(["vae", "cvae"])]
    assert neural[["ve", "twin_error", "active_s"]].notna().all().all()
    for space in "sz":  # a space is scored when it has active (non-collapsed) dimensions
        scored = neural[f"active_{space}"].fillna(0) > 0
        assert (neural[f"ari_{space}"].notna() == scored).all()
        assert (neural[f"tau_{space}_severity"].notna() == scored).all()
    assert neural.loc[neural["arm"] == "vae", "active_z"].isna().all()  # a VAE has one space
    assert (neural.loc[neural["arm"] == "cvae", "active_z"] >= 0).all()
    summary = (out / "benchmark.md").read_text()
    assert re.search(r"\| cvae \| 2 \| 0 \| -?\d\.\d{3} ± \d\.\d{3} \|", summary)
    assert "0.21" in summary and (out / "benchmark.png").stat().st_size > 10_000
    stable = r"(-?\d\.\d{3}|–)"  # – when fewer than two seeds have an active dimension
    assert re.search(rf"## Cross-seed stability[^#]*\| cvae \| 2 \| {stable} \| {stable} \|",
                     summary)
    for arm in ("vae", "cvae"):  # each run is a complete run folder with its evaluation
        run = out / "runs" / arm / "seed0"
        assert (run / ".hydra" / "config.yaml").is_file() and (run / "eval" / "report.md").is_file()


def test_evaluation_files_hold_what_they_claim(bench):
    out, _ = bench
    run = out / "runs" / "cvae" / "seed0"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    truth = pd.read_csv(out / "cohort" / "ground_truth.csv").set_index("subject_id")
    latents = pd.read_csv(run / "eval" / "latents.csv")
    assert metrics["split"] == "test" and metrics["ground_truth"].endswith("ground_truth.csv")
    assert len(latents) == metrics["n"]["target"] + metrics["n"]["background"]
    dimensions = {"salient": 8, "shared": 32}  # the default model's
    assert (latents.filter(like="salient_").shape[1], latents.filter(like="shared_").shape[1]) \
        == (dimensions["salient"], dimensions["shared"])
    targets = latents[latents["role"] == "target"]
    assert np.allclose(targets["severity_A"], truth.loc[targets["subject_id"], "severity_A"])
    assert metrics["decoded"]["twins"] == metrics["n"]["target"]  # every patient has a twin
    for score in ("disease_gain", "counterfactual_error", "map_peak_distance_mm"):
        assert np.isfinite(metrics["decoded"][score]), score
    for space in ("salient", "shared"):
        assert metrics[space]["dimensions"] == dimensions[space]
        if metrics[space]["active"]:
            assert {"severity_A", "severity_B", "severity", "age", "u_warp", "site"} <= set(
                metrics[space]["rsa_tau"])
    assert "baselines" not in metrics  # the baselines are fitted once, with the first run
    first = json.loads((out / "runs" / "vae" / "seed0" / "eval" / "metrics.json").read_text())
    assert set(first["baselines"]) == {"pca", "cpca"}
    report = (run / "eval" / "report.md").read_text()
    assert "## Scans beyond the training range" in report
    assert all(row["distance"] > row["training_max"] for row in metrics["beyond_training"])
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (run / "eval" / picture).stat().st_size > 5_000, picture
    assert {"embedding.png", "curves.png", "examples.png"} <= set(
        re.findall(r"\(([^)]+\.png)\)", report))
    for entry in metrics["salient_maps"]:
        image = nib.load(run / "eval" / entry["nifti"])
        assert image.shape == (24, 24, 24) and np.isfinite(image.get_fdata()).all()
        centre = np.linalg.inv(image.affine) @ np.array([0.0, -17.0, 5.0, 1.0])  # grid centre
        assert np.allclose(centre[:3], 12, atol=1)  # the input grid's affine, in mm
        assert entry["planted_distance_mm"]  # each single-pattern group names its centre


def test_a_sweep_folder_gives_one_comparison_table(bench, tmp_path):
    out, _ = bench
    table = evaluate_sweep(out / "runs" / "cvae", tmp_path, baselines=("pca",), examples=1)
    assert table["run"].tolist() == ["seed0", "seed1", "baseline: pca"]
    assert set(HEADLINE) <= set(table.columns)
    assert math.isnan(table.loc[2, "active_z"]) and table.loc[0, "active_z"] >= 0  # no z in PCA
    assert "| seed0 |" in (tmp_path / "comparison.md").read_text()
    assert pd.read_csv(tmp_path / "comparison.csv").shape == table.shape
    page = (tmp_path / "comparison.html").read_text()
    assert "<table>" in page and "<td>seed0</td>" in page
    links = re.findall(r'href="([^"]+)"', page)
    assert len(links) == 2 and all((tmp_path / link).resolve().is_file() for link in links)


@pytest.mark.slow
def test_installed_eval_command(bench, tmp_path):
    out, _ = bench
    command = Path(sys.executable).with_name("neurocvae-eval")
    help_text = subprocess.run([command, "--help"], capture_output=True, text=True, check=True)
    assert "neurocvae-eval" in help_text.stdout and "checkpoint" in help_text.stdout
    run = out / "runs" / "cvae" / "seed1"
    done = subprocess.run([command, f"run={run}", f"out_dir={tmp_path / 'eval'}", "baselines=[]",
                           "checkpoint=last"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["checkpoint"].endswith(
        "last.ckpt")
    bad = subprocess.run([command, f"run={tmp_path}"], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not a neurocvae-train run folder" in bad.stderr


@pytest.mark.parametrize("preset", ["quick", "ablation", "full"])
def test_every_arm_of_every_preset_composes_into_a_training_config(preset):
    """A typo in a preset's arm would otherwise surface hours into a GPU benchmark."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [f"preset={preset}"])
        assert len(cfg.seeds) >= (1 if preset == "ablation" else 3)
        assert "test" in cfg.split_fractions
        compose("synth", list(cfg.cohort))
        for arm, overrides in cfg.arms.items():
            train_cfg = compose("train", [*cfg.train, *overrides, "data.target=t.csv",
                                          "data.background=b.csv", "out_dir=x"])
            assert (train_cfg.discriminator is None) == (train_cfg.gamma.value == 0), arm


def test_an_unknown_baseline_is_refused_before_any_work(bench, tmp_path, capsys):
    out, _ = bench
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("eval", [f"run={out / 'runs' / 'cvae' / 'seed0'}", "baselines=[pca,ica]",
                               f"out_dir={tmp_path / 'eval'}"])
    with pytest.raises(SystemExit) as exit_:
        evaluate(cfg)
    assert exit_.value.code == 2 and "unknown ['ica']" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_a_split_the_preset_lacks_is_refused_before_any_work(tmp_path, capsys):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [*SMALL, f"out_dir={tmp_path / 'bench'}", "split=validation"])
    with pytest.raises(SystemExit) as exit_:
        benchmark(cfg)
    assert exit_.value.code == 2 and "split=validation" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_tabulating_only_refuses_a_run_that_is_not_trained(bench, capsys):
    """tabulate_only=true writes the table from finished runs; an arm × seed without one is named,
    and nothing is trained or written."""
    out, _ = bench
    table = (out / "benchmark.md").read_text()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [*SMALL, f"out_dir={out}", "seeds=[0,1,2]",
                                    "only=[vae,cvae]", "tabulate_only=true"])
    with pytest.raises(SystemExit) as exit_:
        benchmark(cfg)
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "no finished run of vae seed 2, cvae seed 2" in error
    assert not (out / "runs" / "cvae" / "seed2").exists()
    assert (out / "benchmark.md").read_text() == table


def test_a_cohort_rendered_from_another_recipe_is_refused_and_kept(bench, capsys):
    """Started again with other cohort overrides, the benchmark would measure the old cohort."""
    out, _ = bench
    manifest = (out / "cohort" / "manifest.csv").read_text()
    other = SMALL[0].replace("'seed=3'", "'seed=3','anatomy.texture=0'")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [other, *SMALL[1:], f"out_dir={out}", "seeds=[0]",
                                    "only=[cvae]"])
    with pytest.raises(SystemExit) as exit_:
        benchmark(cfg)
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "texture: 0.03 there, 0.0 now" in error
    assert (out / "cohort" / "manifest.csv").read_text() == manifest


def test_a_run_trained_with_other_settings_is_refused_and_kept(bench, capsys):
    """Started again with other training overrides, the benchmark would report the old runs."""
    out, _ = bench
    metrics = (out / "runs" / "cvae" / "seed0" / "eval" / "metrics.json").read_text()
    train = TINY_TRAIN.replace("'trainer.max_epochs=2'", "'trainer.max_epochs=3'")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [*SMALL[:2], train, f"out_dir={out}", "seeds=[0]",
                                    "only=[cvae]"])
    with pytest.raises(SystemExit) as exit_:
        benchmark(cfg)
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "trainer.max_epochs: 2 there, 3 now" in error
    assert (out / "runs" / "cvae" / "seed0" / "eval" / "metrics.json").read_text() == metrics


@pytest.mark.parametrize(("config", "message"), [
    ({"data": {"manifest": "nowhere/manifest.csv"}, "net": {"output_dim": 40}},  # brain age
     "is not a neurocvae-train run folder"),
    ({"data": {"target": "nowhere/target.csv", "background": "b.csv"}, "arch": {}},
     "best.ckpt: not a readable checkpoint"),
], ids=["another_command", "not_a_checkpoint"])
def test_a_folder_that_is_not_a_run_is_refused_before_reading_volumes(tmp_path, capsys, config,
                                                                     message):
    """Neither table exists: reading them would fail with another message."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(json.dumps(config))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"not a checkpoint")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("eval", [f"run={run}"])
    with pytest.raises(SystemExit) as exit_:
        evaluate(cfg)
    error = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in error, error
    assert "nowhere" not in error and not (run / "eval").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_the_html_report_holds_every_part_and_links_only_files_beside_it(bench):
    out, _ = bench
    report = out / "runs" / "cvae" / "seed0" / "eval" / "report.html"
    page = report.read_text()
    latents = pd.read_csv(report.parent / "latents.csv")
    for part in ("Evaluation report", "Latent spaces, coloured by any column",
                 "Salient maps, interactive", "<table>"):
        assert part in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"salient_map_MDD.html", "salient_map_diabetes_glass.png", "embedding.png"} <= set(links)
    for link in links:
        assert (report.parent / link).is_file(), link
    data = json.loads(re.search(r"const DATA = (\{.*?\});\n", page).group(1))
    assert len(data["rows"]) == len(latents)
    assert {"group", "role", "age", "site", "severity_A"} <= set(data["columns"])
    assert all(len(space["points"]) == len(latents) for space in data["spaces"].values())
    view = (report.parent / "salient_map_MDD.html").read_text()
    assert "brainsprite" in view.lower()  # nilearn's interactive viewer, self-contained


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium (Debian: chromium)")
def test_the_html_report_renders_in_a_headless_browser_without_errors(bench, tmp_path):
    out, _ = bench
    report = out / "runs" / "cvae" / "seed0" / "eval" / "report.html"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *HEADLESS, *profile, "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    spaces = len(json.loads(re.search(r"const DATA = (\{.*?\});\n", dom).group(1))["spaces"])
    latents = pd.read_csv(report.parent / "latents.csv")
    assert dom.count("<circle") == spaces * len(latents)  # the explorer ran and drew every scan
    assert "data-error" not in dom
    assert '<option value="group">' in dom
    view = report.parent / "salient_map_MDD.html"
    viewer = subprocess.run([CHROMIUM, *HEADLESS, *profile, "--dump-dom", view.as_uri()],
                            capture_output=True, text=True, timeout=120).stdout
    assert "<canvas" in viewer  # brainsprite drew the slices
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *HEADLESS, *profile, f"--screenshot={shot}",
                    "--window-size=1200,2400", report.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000


def test_the_model_and_pca_explain_variance_on_one_grid(bench, tmp_path, monkeypatch):
    """Where the training split would not fit in memory at full resolution, both variances
    explained are measured on the same pooled grid (PCA's was once on a coarser one than the
    model's)."""
    out, _ = bench
    run = out / "runs" / "cvae" / "seed0"
    monkeypatch.setattr(baselines, "VE_BYTES", 300_000)  # 32 training scans of 24³: pool by 2
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        evaluate(compose("eval", [f"run={run}", f"out_dir={tmp_path}", "baselines=[pca]"]))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["decoded"]["variance_explained_pooling"] == 2

    datamodule = run_datamodule(run_config(run))
    volumes = {s: np.concatenate([baselines.split_volumes(datamodule, s, role, 2)[1]
                                  for role in ("target", "background")])
               for s in ("train", "test")}
    assert metrics["baselines"]["pca"]["decoded"]["variance_explained"] == pytest.approx(
        baselines.pca_variance_explained(volumes["train"], volumes["test"], 10), rel=1e-6)

    module = load_module(metrics["checkpoint"])
    residual = []
    for role in ("target", "background"):
        for batch in datamodule.input_batches("test", role):
            images = batch["image"].float()
            shared, salient = module.latent_representation(images, role)
            with torch.no_grad():
                decoded = module.nets.decode(shared, salient if role == "target" else None)
            residual.append(torch.nn.functional.avg_pool3d(images - decoded, 2).flatten(1))
    explained = 1 - torch.cat(residual).square().sum() / np.sum(
        (volumes["test"] - volumes["train"].mean(0)) ** 2)
    assert metrics["decoded"]["variance_explained"] == pytest.approx(float(explained), rel=1e-4)


def test_the_validation_table_does_not_replace_the_test_table(bench):
    out, results = bench
    test_table = (out / "benchmark.md").read_text()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("benchmark", [*SMALL, f"out_dir={out}", "seeds=[0,1]", "only=[cvae]",
                                    "split=val", "tabulate_only=true"])  # evaluated, not trained
        validation = benchmark.__wrapped__(cfg)
    assert (out / "benchmark.md").read_text() == test_table
    assert pd.read_csv(out / "results.csv").shape == results.shape
    assert pd.read_csv(out / "results_val.csv").shape == validation.shape
    assert "val split" in (out / "benchmark_val.md").read_text()
    assert (out / "benchmark_val.png").is_file()
    assert sorted(p.name for p in (out / "runs" / "cvae" / "seed0").glob("eval*")) == [
        "eval", "eval_val"]
