from pathlib import Path

import pytest
from omegaconf import OmegaConf

from neurocvae.cli.synth import synth
from neurocvae.config import config_dir
from neurocvae.errors import InputError
from neurocvae.synthetic.recipe import Recipe
from tests.conftest import compose_config, synth_recipe

GRIDS = sorted(p.stem for p in (config_dir() / "grid").glob("*.yaml"))


@pytest.mark.parametrize("grid", GRIDS)
def test_every_grid_composes_into_a_valid_recipe(grid):
    cfg = compose_config("synth", [f"grid={grid}"])
    recipe = Recipe.from_dict(OmegaConf.to_container(cfg, resolve=True))
    assert recipe.grid.name == grid
    assert recipe.n_subjects == 480


def test_ukbb_grid_is_the_fsl_mni152_frame():
    grid = synth_recipe("grid=ukbb").grid
    # FSL's MNI152 1 mm grid: x −91…90 (RAS), y −126…91, z −72…109
    assert grid.affine[:3, 3].tolist() == [-91.0, -126.0, -72.0]
    assert grid.shape == (182, 218, 182)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("groups.MDD.count=-3", "groups.MDD.count: -3; expected a non-negative integer"),
        ("groups.MDD.count=2.5", "groups.MDD.count: 2.5; expected a non-negative integer"),
        ("groups.MDD.patterns=[A,C]", "groups.MDD.patterns: unknown pattern 'C'; known "
                                      "patterns: A, B"),
        ("+groups.HC.patterns=[B]", "groups.HC.patterns: ['B']; the controls (HC) carry no "
                                    "pattern"),
        ("controls=healthy", "controls: 'healthy' is not one of the groups (HC, MDD, "
                             "diabetes, dual)"),
        ("grid.voxel_size=0", "grid.voxel_size: 0.0 mm; expected > 0"),
        ("grid.voxel_size=-2", "grid.voxel_size: -2.0 mm; expected > 0"),
        ("patterns.A.centre_mm=[0,0,95]", "patterns.A.centre_mm: [0, 0, 95] mm lies outside "
                                          "the MNI152 brain mask"),
        ("shared_warp.centre_mm=[90,0,0]", "outside the MNI152 brain mask"),
        ("patterns.B.warp=0.9", "patterns.B.warp: 0.9 × severity max 1.5"),
        ("age.min=90", "age: min 90.0, max 80.0"),
        ("sites=[]", "sites: empty"),
        ("+groups.MDD.age={min:70,max:60}", "groups.MDD.age: min 70.0, max 60.0"),
        ("+groups.MDD.age={mean:40,sd:15}", "groups.MDD.age: mean 40.0, sd 15.0; expected "
                                            "both, sd > 0 and min ≤ mean ≤ max (45.0, 80.0)"),
        ("+groups.MDD.age={sd:3}", "groups.MDD.age: mean None, sd 3.0; expected both"),
        ("+groups.MDD.male_fraction=1.5", "groups.MDD.male_fraction: 1.5; expected within"),
        ("+groups.MDD.site_mix={S9:1}", "groups.MDD.site_mix: {'S9': 1.0}; expected weights ≥ 0"),
        ("+groups.MDD.site_mix={S1:0}", "groups.MDD.site_mix: {'S1': 0.0}; expected weights ≥ 0 "
                                        "(not all 0)"),
        ("head_size.space=scanner", "head_size.space: 'scanner'; expected one of"),
        ("anatomy.rms_mm=9", "anatomy.rms_mm: 9.0; expected within [0, 5.0] mm"),
        ("patterns.A.jitter_mm=-1", "patterns.A.jitter_mm: -1; expected within [0, 10.0] mm"),
    ],
)
def test_invalid_recipe_is_named(override, message):
    with pytest.raises(InputError, match="invalid recipe") as error:
        synth_recipe(override)
    assert message in str(error.value)


@pytest.mark.parametrize(("override", "message"), [
    ("+age.MDD=60", "age.MDD: unknown key; known keys: max, mean, min, sd"),
    ("+groups.MDD.site_mixture={S1:1}", "groups.MDD.site_mixture: unknown key; did you mean "
                                        "'site_mix'?"),
    ("+groups.MDD.site_mix=0.5", "groups.MDD.site_mix=0.5; expected {site: weight, …}"),
    ("+groups.MDD.age=60", "groups.MDD.age=60; expected {min: …, max: …} (uniform), with "
                           "mean and sd a truncated normal"),
    ("+groups.MDD.age={median:60}", "groups.MDD.age.median: unknown key; did you mean 'mean'?"),
    ("+patterns.A.groups=[MDD]", "patterns.A.groups: unknown key; known keys: centre_mm,"),
    ("+head_size.mean=1", "head_size.mean: unknown key"),
    ("+sites.0.noise=1", "sites[0].noise: unknown key; did you mean 'noise_sd'?"),
])
def test_a_key_the_recipe_does_not_read_is_refused(override, message):
    with pytest.raises(InputError) as error:
        synth_recipe(override)
    assert message in str(error.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(InputError) as error:
        synth_recipe("groups.HC.count=-1", "grid.voxel_size=-1")
    assert "groups.HC.count" in str(error.value) and "grid.voxel_size" in str(error.value)


def test_invalid_recipe_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cohort"
    cfg = compose_config("synth", ["grid=ci", "groups.HC.count=-1", f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_:
        synth(cfg)
    assert exit_.value.code == 2
    assert "groups.HC.count: -1" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten_without_consent(tmp_path, capsys):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    cfg = compose_config("synth", ["grid=ci", "groups.HC.count=2", f"out_dir={out}"])
    with pytest.raises(SystemExit):
        synth(cfg)
    assert "overwrite=true" in capsys.readouterr().err
    # even with overwrite=true, a folder that is not a cohort of ours is kept
    cfg = compose_config("synth", ["grid=ci", "groups.HC.count=2", f"out_dir={out}",
                                   "overwrite=true"])
    with pytest.raises(SystemExit):
        synth(cfg)
    assert "not written by neurocvae-synth" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not any(Path(tmp_path).glob(".cohort.*"))
