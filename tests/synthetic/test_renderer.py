"""The generator is honest: planted effects are where the recipe says, and nowhere else."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from neurocvae.data.cohort import MANIFEST_COLUMNS
from neurocvae.synthetic.layout import CohortFolder
from neurocvae.synthetic.recipe import Recipe
from neurocvae.synthetic.renderer import generate_cohort, plan_cohort, read_volume
from tests.conftest import counts, synth_recipe

TINY = tuple(counts(HC=3, MDD=2, diabetes=1, dual=2))


def load_all(cohort, paths) -> np.ndarray:
    return np.stack([read_volume(cohort / p) for p in paths])


def test_plan_is_balanced_and_complete():
    recipe = synth_recipe()
    table = plan_cohort(recipe)
    assert table["group"].value_counts().to_dict() == recipe.counts
    assert table["subject_id"].is_unique
    order = {"HC": 0, "MDD": 1, "diabetes": 2, "dual": 3}  # the recipe's order
    assert table["label"].tolist() == [order[g] for g in table["group"]]
    for _, members in table.groupby("group"):
        assert members["site"].value_counts().tolist() == [len(members) // 4] * 4
        assert (members["sex"] == "M").sum() == len(members) // 2
    assert table["age"].between(45, 80).all()
    patients = table["group"] != "HC"
    assert (table.loc[patients, "twin_path"] != "").all()
    assert (table.loc[~patients, "twin_path"] == "").all()
    assert (table.loc[table["group"] == "MDD", "severity_B"] == 0).all()
    assert (table.loc[table["group"] == "dual", ["severity_A", "severity_B"]] > 0).all().all()
    # the planted age acceleration orders the groups' mean δ
    delta = table.groupby("group")["delta"].mean()
    assert delta["HC"] < delta["MDD"] < delta["diabetes"] < delta["dual"]


def test_same_seed_same_volumes_other_seed_different(tmp_path):
    first = generate_cohort(synth_recipe(*TINY), tmp_path / "a", workers=2)
    again = generate_cohort(synth_recipe(*TINY), tmp_path / "b", workers=1)
    other = generate_cohort(synth_recipe(*TINY, "seed=1"), tmp_path / "c", workers=1)
    manifest = pd.read_csv(first / "manifest.csv")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert pd.read_csv(again / "manifest.csv").equals(manifest)
    volumes = load_all(first, manifest["path"])
    assert np.array_equal(volumes, load_all(again, manifest["path"]))
    other_manifest = pd.read_csv(other / "manifest.csv")
    assert not np.allclose(volumes, load_all(other, other_manifest["path"]))
    assert volumes.shape[1:] == (40, 48, 40)
    assert volumes.min() >= 0 and volumes.max() <= 1


def test_overwrite_replaces_a_cohort_of_ours(tmp_path):
    out = generate_cohort(synth_recipe(*TINY), tmp_path / "cohort", workers=1)
    with pytest.raises(ValueError, match="overwrite=true"):
        generate_cohort(synth_recipe(*TINY), out, workers=1)
    generate_cohort(synth_recipe(*TINY[:1], "groups.MDD.count=0", "groups.diabetes.count=0",
                                 "groups.dual.count=0"), out, overwrite=True, workers=1)
    assert len(pd.read_csv(out / "manifest.csv")) == 3
    assert not any((out / "twins").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]


@pytest.fixture(scope="module")
def cohort_data(ci_cohort):
    truth = pd.read_csv(ci_cohort / "ground_truth.csv", keep_default_na=False)
    volumes = load_all(ci_cohort, truth["path"])
    brain = read_volume(ci_cohort / "truth" / "brain_mask.nii.gz") > 0.5
    weights = {n: read_volume(ci_cohort / "truth" / f"pattern_{n}.nii.gz") for n in "AB"}
    return truth, volumes, brain, weights


def age_matched_difference(truth, volumes, group, k=5):
    """mean over the group's patients of (patient − mean of its k nearest-age controls)."""
    hc = np.flatnonzero(truth["group"] == "HC")
    ages = truth["age"].to_numpy()
    diffs = []
    for i in np.flatnonzero(truth["group"] == group):
        nearest = hc[np.argsort(np.abs(ages[hc] - ages[i]))[:k]]
        diffs.append(volumes[i] - volumes[nearest].mean(axis=0))
    return np.mean(diffs, axis=0)


@pytest.mark.parametrize(("group", "planted", "absent"),
                         [("MDD", "A", "B"), ("diabetes", "B", "A"), ("dual", "AB", "")])
def test_difference_from_controls_is_concentrated_in_the_planted_regions(
        cohort_data, group, planted, absent):
    truth, volumes, brain, weights = cohort_data
    difference = np.abs(age_matched_difference(truth, volumes, group))
    support = (weights["A"] > 0) | (weights["B"] > 0)
    outside = difference[brain & ~support].mean()
    for name in planted:  # within 2σ of the centre: weight ≥ 0.1256
        inside = difference[weights[name] >= 0.1256].mean()
        assert inside >= 5 * outside, (group, name, inside, outside)
    for name in absent:
        inside = difference[weights[name] >= 0.1256].mean()
        assert inside < 2 * outside, (group, name, inside, outside)


def test_ventricles_grow_with_age(cohort_data):
    truth, volumes, _, _ = cohort_data
    healthy = np.flatnonzero(truth["group"] == "HC")
    # a box around both lateral ventricles (MNI x ±25, y −45…15, z 5…30 mm) on the 4 mm grid
    box = (slice(14, 27), slice(7, 22), slice(19, 26))
    dark = ((volumes[healthy][(slice(None), *box)] < 0.45)
            & (volumes[healthy][(slice(None), *box)] > 0)).sum(axis=(1, 2, 3))
    rho = stats.spearmanr(truth["age"].to_numpy()[healthy], dark).statistic
    assert rho > 0.5  # each subject's own anatomy shapes its ventricles too


def test_twins_differ_only_inside_the_disease_regions(ci_cohort, cohort_data):
    truth, volumes, _, weights = cohort_data
    # a pattern's support (3σ) moves with head size by < 8 mm: dilate by a 5×5×5-voxel cube
    cube = np.ones((3, 3, 3), dtype=bool)
    support = {n: ndimage.binary_dilation(w > 0, cube, iterations=2) for n, w in weights.items()}
    for i in np.flatnonzero(truth["group"] != "HC"):
        twin = read_volume(ci_cohort / truth["twin_path"].iloc[i])
        changed = np.abs(volumes[i] - twin) > 1e-4
        allowed = np.zeros_like(changed)
        for name in "AB":
            if truth[f"severity_{name}"].iloc[i] > 0:
                allowed |= support[name]
                assert changed[weights[name] >= 0.5].mean() > 0.5  # the pattern is really there
        assert not (changed & ~allowed).any(), truth["subject_id"].iloc[i]


def test_ground_truth_records_every_factor(ci_cohort):
    truth = pd.read_csv(ci_cohort / "ground_truth.csv", keep_default_na=False)
    for column in ("age", "sex", "site", "delta", "u_warp", "u_head", "head_scale",
                   "ventricle_scale", "severity_A", "severity_B", "noise_seed", "twin_path",
                   "recipe_hash"):
        assert column in truth.columns
    assert truth["recipe_hash"].nunique() == 1
    for path in truth["twin_path"][truth["twin_path"] != ""]:
        assert (ci_cohort / path).is_file()


def test_confounds_give_a_group_its_own_ages_and_sites_and_leave_the_rest_balanced():
    plan = plan_cohort(synth_recipe("+groups.MDD.age={min:60,max:80}",
                                    "+groups.diabetes.site_mix={S1:3,S2:1}"))
    ages = plan.groupby("group")["age"]
    assert ages.min()["MDD"] >= 60 and ages.min()["HC"] < 50  # older patients than controls
    assert plan[plan["group"] == "diabetes"]["site"].value_counts().to_dict() == {"S1": 60,
                                                                               "S2": 20}
    assert set(plan[plan["group"] == "HC"]["site"].value_counts()) == {60}  # 4 sites × 60
    default = plan_cohort(synth_recipe())
    others = ["HC", "dual"]  # drawn exactly as without confounds
    pd.testing.assert_frame_equal(
        plan[plan["group"].isin(others)].drop(columns="subject_id").reset_index(drop=True),
        default[default["group"].isin(others)].drop(columns="subject_id").reset_index(drop=True))


OWN_STUDY = [  # three subtypes (one with a pattern of its own), a comorbid group, patients
    # 6 years older than the controls and scanned mostly at S1
    "~groups.MDD", "~groups.diabetes", "~groups.dual", "+patterns.C={centre_mm:[-40,20,20]}",
    "age.mean=60", "age.sd=5", "+groups.HC.site_mix={S1:1,S2:1,S3:1,S4:1}",
    *(f"+groups.{name}={{count:N,patterns:{patterns},age:{{mean:66,sd:5}},"
      "site_mix:{S1:55,S2:15,S3:15,S4:15}}"
      for name, patterns in (("C1", "[A]"), ("C2", "[B]"), ("C3", "[C]"), ("C12", "[A,B]")))]


def own_study(controls: int, patients: int) -> Recipe:
    return synth_recipe(f"groups.HC.count={controls}",
                        *(o.replace("count:N", f"count:{patients}") for o in OWN_STUDY))


def test_a_study_of_its_own_groups_is_planted_as_written():
    plan = plan_cohort(own_study(200, 200))
    assert plan["group"].value_counts().to_dict() == {"HC": 200, "C1": 200, "C2": 200,
                                                       "C3": 200, "C12": 200}
    patients = plan[plan["group"] != "HC"]
    controls = plan[plan["group"] == "HC"]
    assert patients["age"].mean() - controls["age"].mean() == pytest.approx(6, abs=0.5)
    assert patients["age"].std() == pytest.approx(5, rel=0.1)
    share = patients["site"].value_counts(normalize=True)
    assert share.to_dict() == pytest.approx({"S1": 0.55, "S2": 0.15, "S3": 0.15, "S4": 0.15},
                                            abs=0.01)
    assert set(controls["site"].value_counts()) == {50}
    carriers = {p: set(plan.loc[plan[f"severity_{p}"] > 0, "group"]) for p in "ABC"}
    assert carriers == {"A": {"C1", "C12"}, "B": {"C2", "C12"}, "C": {"C3"}}


def test_a_study_of_its_own_groups_renders(tmp_path):
    cohort = generate_cohort(own_study(4, 2), tmp_path / "own", workers=1)
    truth = pd.read_csv(cohort / "ground_truth.csv", keep_default_na=False)
    assert truth["group"].value_counts().to_dict() == {"HC": 4, "C1": 2, "C2": 2, "C3": 2,
                                                        "C12": 2}
    assert (truth.loc[truth["group"] == "C3", "severity_C"] > 0).all()
    assert set(truth.loc[truth["twin_path"] != "", "group"]) == {"C1", "C2", "C3", "C12"}
    assert CohortFolder(cohort).planted_patterns()["C"]["groups"] == ["C3"]
    assert CohortFolder(cohort).controls() == "HC"


@pytest.mark.parametrize("kind", [
    ("patterns.A.warp=0.3", "patterns.A.intensity=0"),  # atrophy
    ("patterns.A.warp=-0.3", "patterns.A.intensity=0"),  # expansion
    ("patterns.A.warp=0", "patterns.A.intensity=0.4"),  # intensity only
    ("+patterns.A.more_centres_mm=[[38,4,4]]",),  # atrophy and intensity at two centres
])
def test_each_kind_of_pattern_changes_the_image_only_inside_its_support(kind):
    from neurocvae.synthetic.renderer import Renderer

    recipe = synth_recipe(*counts(HC=0, MDD=1, diabetes=0, dual=0), *kind)
    patient = plan_cohort(recipe).iloc[0]
    renderer = Renderer(recipe)
    difference = np.abs(renderer.render(patient) - renderer.render(patient, diseased=False))
    pattern = recipe.patterns["A"]
    distance = np.min([np.linalg.norm(renderer.points - np.asarray(c), axis=-1)
                       for c in pattern.centres_mm], axis=0)
    assert difference[distance > 3 * pattern.sigma_mm + recipe.grid.voxel_size].max() == 0
    for centre in pattern.centres_mm:  # each centre changes the image around it
        near = np.linalg.norm(renderer.points - np.asarray(centre), axis=-1) < pattern.sigma_mm
        assert difference[near].max() > 0.01


def test_a_jittered_pattern_sits_where_each_subject_s_offset_puts_it():
    import dataclasses

    from neurocvae.synthetic.renderer import Renderer, shift_columns

    recipe = synth_recipe(*counts(HC=2, MDD=6, diabetes=0, dual=0), "patterns.A.jitter_mm=4")
    plan = plan_cohort(recipe)
    shifts = plan[shift_columns("A")].to_numpy()
    assert 0 < np.abs(shifts).max() <= 12 and "shift_B_x_mm" not in plan
    default = plan_cohort(synth_recipe(*counts(HC=2, MDD=6, diabetes=0, dual=0)))
    pd.testing.assert_frame_equal(plan[default.columns], default)  # nothing else moved

    patient = plan[plan["group"] == "MDD"].iloc[0]
    moved = tuple(np.asarray(recipe.patterns["A"].centre_mm) + patient[shift_columns("A")]
                  .to_numpy(float))
    fixed = dataclasses.replace(recipe, patterns={
        **recipe.patterns, "A": dataclasses.replace(recipe.patterns["A"], centre_mm=moved,
                                                    jitter_mm=0.0)})
    np.testing.assert_array_equal(Renderer(recipe).render(patient),
                                  Renderer(fixed).render(patient.drop(shift_columns("A"))))


def test_each_subject_gets_its_own_smooth_anatomy_which_its_twin_shares():
    from neurocvae.synthetic.renderer import Renderer
    from neurocvae.synthetic.warp import anatomy_displacement

    field = anatomy_displacement((40, 48, 40), np.random.default_rng(0), 2.0)  # 4 mm voxels
    assert np.sqrt((field**2).sum(-1).mean()) == pytest.approx(2.0, rel=1e-4)
    assert np.abs(np.diff(field, axis=0)).max() / 4.0 < 0.2  # smooth: far from folding (1)

    sizes = counts(HC=6, MDD=2, diabetes=0, dual=0)
    shaped = synth_recipe(*sizes, "anatomy.rms_mm=2")
    plain = synth_recipe(*sizes, "anatomy.rms_mm=0")
    plan = plan_cohort(shaped)
    assert plan["anatomy_seed"].is_unique
    controls = plan[plan["group"] == "HC"]
    spread = {name: np.stack([Renderer(r).render(s) for _, s in controls.iterrows()]).var(0).sum()
              for name, r in (("shaped", shaped), ("plain", plain))}
    assert spread["shaped"] > 1.05 * spread["plain"]  # more shape variance between controls
    patient = plan[plan["group"] == "MDD"].iloc[0]
    renderer = Renderer(shaped)
    difference = renderer.render(patient) - renderer.render(patient, diseased=False)
    far = np.linalg.norm(renderer.points - np.asarray(shaped.patterns["A"].centre_mm), axis=-1)
    assert np.abs(difference[far > 60]).max() == 0  # the disease is the only difference


def test_registered_space_leaves_only_a_small_residual_head_scale():
    native = plan_cohort(synth_recipe("head_size.space=native"))
    registered = plan_cohort(synth_recipe("head_size.space=registered"))
    assert native["head_scale"].std() > 0.03
    assert registered["head_scale"].std() == pytest.approx(0.005, rel=0.1)
    by_sex = registered.groupby("sex")["head_scale"].mean()
    assert abs(by_sex["M"] - by_sex["F"]) < 0.002  # no sex difference left
    pd.testing.assert_series_equal(native["u_head"], registered["u_head"])


def test_each_subject_gets_its_own_intensity_texture_which_its_twin_shares():
    from neurocvae.synthetic.renderer import Renderer
    from neurocvae.synthetic.warp import intensity_texture

    field = intensity_texture((40, 48, 40), np.random.default_rng(0), 1.5)
    assert field.std() == pytest.approx(1.0, rel=1e-4)
    neighbours = np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1]
    assert neighbours > 0.7  # smooth over 4 mm, not voxel noise

    sizes = counts(HC=6, MDD=2, diabetes=0, dual=0)
    textured = synth_recipe(*sizes, "anatomy.texture=0.05")
    plain = synth_recipe(*sizes, "anatomy.texture=0")
    plan = plan_cohort(textured)
    assert plan["texture_seed"].is_unique and "texture_seed" not in plan_cohort(plain)
    pd.testing.assert_frame_equal(plan.drop(columns="texture_seed"), plan_cohort(plain))
    control = plan[plan["group"] == "HC"].iloc[0]
    ratio = Renderer(textured).render(control) / np.maximum(Renderer(plain).render(control), 1e-6)
    inside = Renderer(plain).render(control) > 0.2
    assert 0.03 < ratio[inside].std() < 0.07  # the texture's relative SD, within the brain
    patient = plan[plan["group"] == "MDD"].iloc[0]
    renderer = Renderer(textured)
    difference = renderer.render(patient) - renderer.render(patient, diseased=False)
    far = np.linalg.norm(renderer.points - np.asarray(textured.patterns["A"].centre_mm), axis=-1)
    assert np.abs(difference[far > 60]).max() == 0  # the disease is the only difference
