"""The DataModules, composed from conf/data/*.yaml as the commands will compose them."""

from pathlib import Path

import hydra
import pandas as pd
import pytest
import torch

from neurocvae.data.cohort import read_manifest
from neurocvae.data.datamodules import BrainAgeDataModule, ContrastiveDataModule
from neurocvae.data.datasets import EpochSampler
from neurocvae.errors import InputError
from tests.conftest import compose_config
from tests.data.conftest import write_cohort

SMALL = ["preprocessing.shape=[8,8,8]", "num_workers=0", "cache_workers=0"]


def datamodule(name, tmp_path, **values):
    overrides = [f"data.{k}={v}" for k, v in values.items()]
    overrides += [f"data.{o}" for o in SMALL] + [f"data.cache_dir={tmp_path / 'cache'}"]
    return hydra.utils.instantiate(compose_config(f"data/{name}", overrides).data)


@pytest.fixture
def target_and_background(tmp_path):
    """Target: 12 patients (ages 62-73); background: 20 controls (ages 74-93), one folder."""
    target = write_cohort(tmp_path, ["MDD", "diabetes", "dual"] * 4, start=12)
    target.to_csv(tmp_path / "target.csv", index=False)
    background = write_cohort(tmp_path, ["HC"] * 20, start=24)
    background.to_csv(tmp_path / "background.csv", index=False)
    return tmp_path / "target.csv", tmp_path / "background.csv"


def test_brainage_learns_from_controls_and_predicts_everybody(tiny_cohort, tmp_path):
    dm = datamodule("brainage", tmp_path, manifest=tiny_cohort, batch_size=2)
    assert isinstance(dm, BrainAgeDataModule)
    dm.prepare_data()
    dm.setup("fit")
    assert (tiny_cohort.parent / "manifest.splits.json").is_file()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 1, 8, 8, 8) and batch["image"].dtype == torch.float16
    assert dm.on_after_batch_transfer(batch, 0)["image"].dtype == torch.float32
    assert set(batch["group"]) == {"HC"}
    fitted = sum(len(dm.splits[s]) for s in ("train", "val", "test"))
    assert fitted == 12  # the healthy controls
    ids = [i for b in dm.predict_dataloader() for i in b["subject_id"]]
    assert ids == read_manifest(tiny_cohort)["subject_id"].tolist()


def test_contrastive_batches_pair_each_background_with_a_target(target_and_background,
                                                                 tmp_path):
    target, background = target_and_background
    dm = datamodule("contrastive", tmp_path, target=target, background=background,
                    batch_size=4, pairing="age_matched", age_window=100)
    assert isinstance(dm, ContrastiveDataModule)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == len(dm.splits["train"]["background"]) // 4  # the background sets it
    batches = list(loader)
    seen_target = {s for b in batches for s in b["target"]["subject_id"]}
    seen_background = {s for b in batches for s in b["background"]["subject_id"]}
    assert seen_target <= set(pd.read_csv(target)["subject_id"])
    assert seen_background <= set(pd.read_csv(background)["subject_id"])
    assert set(batches[0]["background"]["group"]) == {"HC"}
    assert "HC" not in set(batches[0]["target"]["group"])
    # minmax_global (the contrastive default) is fitted on the training split and checkpointed
    assert dm.minmax is not None and dm.state_dict()["minmax"]["hi"] > dm.minmax.lo
    inputs = dm.on_after_batch_transfer(batches[0], 0)
    expected = dm.minmax(batches[0]["target"]["image"].float())
    torch.testing.assert_close(inputs["target"]["image"], expected)
    # every scan of a split once, in table order, scaled like the model's inputs
    encoded = list(dm.input_batches("val", "background"))
    assert [i for b in encoded for i in b["subject_id"]] == \
        dm.splits["val"]["background"]["subject_id"].tolist()
    assert all(b["image"].dtype == torch.float32 and b["image"].max() <= 1 for b in encoded)
    restored = datamodule("contrastive", tmp_path, target=target, background=background)
    restored.load_state_dict(dm.state_dict())
    assert restored.minmax == dm.minmax


@pytest.mark.parametrize("pairing", ["age_matched", "site_matched"])
def test_matched_pairings(target_and_background, tmp_path, pairing):
    target, background = target_and_background
    dm = datamodule("contrastive", tmp_path, target=target, background=background,
                    batch_size=2, pairing=pairing, age_window=3)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        t, b = batch["target"], batch["background"]
        if pairing == "site_matched":
            assert t["site"] == b["site"]
        else:  # within 3 years, or the nearest in age when no target is that close
            ages = torch.tensor(dm.splits["train"]["target"]["age"].to_numpy(), dtype=float)
            nearest = (b["age"][:, None] - ages[None]).abs().min(dim=1).values
            assert torch.all((t["age"] - b["age"]).abs() <= torch.clamp(nearest, min=3))


def test_overlapping_target_and_background_are_refused(target_and_background, tmp_path):
    target, background = target_and_background
    both = pd.concat([pd.read_csv(background), pd.read_csv(target).iloc[:2]])
    both.to_csv(background, index=False)
    dm = datamodule("contrastive", tmp_path, target=target, background=background)
    with pytest.raises(InputError, match=r"2 subject_id.*in both"):
        dm.setup("fit")


def test_the_background_s_group_names_the_controls(tmp_path):
    """Groups of any name: the background holds one group; a target in it is refused."""
    target = write_cohort(tmp_path, ["C1", "C2", "C12"] * 4, start=12)
    background = write_cohort(tmp_path, ["control"] * 20, start=24)
    background.to_csv(tmp_path / "background.csv", index=False)
    target.to_csv(tmp_path / "target.csv", index=False)
    dm = datamodule("contrastive", tmp_path, target=tmp_path / "target.csv",
                    background=tmp_path / "background.csv")
    dm.setup("fit")
    assert set(dm.splits["train"]["target"]["group"]) == {"C1", "C2", "C12"}
    target.loc[[1, 4], "group"] = "control"
    target.to_csv(tmp_path / "mixed.csv", index=False)
    dm = datamodule("contrastive", tmp_path / "other", target=tmp_path / "mixed.csv",
                    background=tmp_path / "background.csv")
    with pytest.raises(InputError, match=r"the target set holds patients, not the background's "
                                         r"group control; 2 row\(s\) .* \(lines 3, 6\)"):
        dm.setup("fit")


def test_a_stopped_loader_resumes_at_the_next_batch_with_the_same_draws(target_and_background,
                                                                        tmp_path):
    target, background = target_and_background
    augment = ["augmentation.flip_prob=0.5", "augmentation.max_shift=1",
               "augmentation.bias_field_prob=0.5"]

    def loader(workers):
        dm = hydra.utils.instantiate(compose_config("data/contrastive", [
            f"data.target={target}", f"data.background={background}", "data.batch_size=2",
            f"data.cache_dir={tmp_path / 'cache'}", *[f"data.{o}" for o in SMALL],
            f"data.num_workers={workers}", *[f"data.{a}" for a in augment]]).data)
        dm.setup("fit")
        out = dm.train_dataloader()
        out.sampler.set_epoch(3)
        return out

    uninterrupted = [b["target"]["image"] for b in loader(0)]
    first = loader(2)
    iterator = iter(first)
    before = [next(iterator)["target"]["image"] for _ in range(3)]
    state = first.state_dict()
    resumed = loader(2)  # torchdata restores a state saved with the same number of workers
    resumed.load_state_dict(state)
    after = [b["target"]["image"] for b in resumed]
    assert len(before) + len(after) == len(uninterrupted)
    for got, expected in zip(before + after, uninterrupted, strict=True):
        torch.testing.assert_close(got, expected)


def test_ranks_share_out_one_order(tmp_path):
    shards = [list(EpochSampler(10, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert {len(s) for s in shards} == {4}  # padded to equal length, like DistributedSampler
    assert {i for s in shards for i, _ in s} == set(range(10))
    once = [list(EpochSampler(10, seed=1, shuffle=False, num_replicas=3, rank=r, pad=False))
            for r in range(3)]
    assert [len(s) for s in once] == [4, 3, 3]  # for measuring and predicting: no repeats
    assert sorted(i for s in once for i, _ in s) == list(range(10))
    assert [len(EpochSampler(10, seed=1, num_replicas=3, rank=r, pad=False)) for r in range(3)] \
        == [4, 3, 3]


def test_bad_volumes_can_be_skipped_into_rejected_csv(tiny_cohort, tmp_path):
    Path(read_manifest(tiny_cohort)["path"].iloc[0]).write_bytes(b"not a nifti")
    dm = datamodule("brainage", tmp_path, manifest=tiny_cohort)
    with pytest.raises(InputError, match=r"s000\.nii\.gz: unreadable NIfTI"):
        dm.setup("fit")
    dm = datamodule("brainage", tmp_path, manifest=tiny_cohort, skip_bad="true",
                    out_dir=tmp_path / "run")
    dm.setup("fit")
    rejected = pd.read_csv(tmp_path / "run" / "rejected.csv")
    assert rejected["subject_id"].tolist() == ["s000"]
    assert "s000" not in dm.table["subject_id"].tolist()
