"""The whole pipeline (brain age → selection → contrastive training → evaluation) on a cohort
table that has no sex and no site column, as some users' phenotype tables have none."""

import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf

from neurocvae.cli.brainage import brainage
from neurocvae.cli.eval import evaluate
from neurocvae.cli.train import train
from neurocvae.contrastive.discriminator import DiscriminatorWarning
from neurocvae.synthetic.renderer import generate_cohort
from tests.cli.conftest import TINY
from tests.cli.test_brainage_cli import FAST
from tests.conftest import compose_config, counts, synth_recipe


@pytest.mark.slow
@pytest.mark.filterwarnings(f"ignore::{DiscriminatorWarning.__module__}."
                            f"{DiscriminatorWarning.__name__}")
def test_a_table_without_sex_and_site_goes_through_the_whole_pipeline(tmp_path, caplog):
    recipe = synth_recipe(*counts(HC=60, MDD=10, diabetes=10, dual=10),  # scanner space, no
                          "head_size.space=native", "anatomy.rms_mm=0",  # own anatomy: the
                          "anatomy.texture=0")  # tiny model keeps a salient space to measure
    cohort = generate_cohort(recipe, tmp_path / "cohort", workers=2)
    table = pd.read_csv(cohort / "manifest.csv")
    table["path"] = [str(cohort / p) for p in table["path"]]
    table.drop(columns=["sex", "site"]).to_csv(tmp_path / "bare.csv", index=False)

    selected = tmp_path / "brainage"
    brainage(compose_config("brainage", [
        *FAST, f"data.manifest={tmp_path / 'bare.csv'}", f"data.cache_dir={tmp_path / 'cache'}",
        f"out_dir={selected}", "selection.mode=all"]))
    assert "no sex column" in caplog.text and "no site column" in caplog.text
    targets = pd.read_csv(selected / "target.csv")
    assert len(targets) == 30 and set(targets["sex"]) == set(targets["site"]) == {"unknown"}

    run = tmp_path / "run"
    train_cfg = compose_config("train", [
        *TINY, f"data.target={selected / 'target.csv'}",
        f"data.background={selected / 'background.csv'}",
        f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={run}"])
    train(train_cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(train_cfg, run / ".hydra" / "config.yaml")  # what the command keeps
    evaluate(compose_config("eval", [f"run={run}", "examples=0"]))
    salient = json.loads((run / "eval" / "metrics.json").read_text())["salient"]
    assert salient["site_balanced_accuracy"] is None  # one site: no leakage to measure
    assert salient["rsa_tau"]["sex"] is None
    assert not math.isnan(salient["rsa_tau"]["age"])
    assert not (run / "eval" / "examples.png").exists()  # examples=0: no example figure
