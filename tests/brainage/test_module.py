"""BrainAgeModule: one step learns, predictions are expected bin centres, layouts agree."""

import copy
import functools

import pytest
import torch

from neurocvae.brainage.module import BrainAgeModule
from neurocvae.brainage.sfcn import SFCN

SMALL = (8, 16, 32, 64, 64, 32)


def module(**kwargs) -> BrainAgeModule:
    torch.manual_seed(0)
    return BrainAgeModule(SFCN(channels=SMALL, dropout=0.0),
                          optimizer=functools.partial(torch.optim.Adam, lr=1e-2), **kwargs)


def batch(n: int = 4) -> dict:
    return {"image": torch.rand(n, 1, 32, 32, 32), "age": torch.linspace(50, 75, n),
            "subject_id": [f"s{i}" for i in range(n)]}


def test_predictions_lie_inside_the_bins_and_match_forward():
    model, data = module().eval(), batch()
    out = model.predict_step(data, 0)
    assert out["subject_id"] == ["s0", "s1", "s2", "s3"]
    assert ((out["brain_age"] > 42) & (out["brain_age"] < 82)).all()
    assert torch.allclose(out["brain_age"], model(data["image"]))


def test_channels_last_gives_the_same_numbers():
    fast = module(channels_last=True).eval()
    plain = module(channels_last=False).eval()
    plain.net.load_state_dict(copy.deepcopy(fast.net.state_dict()))
    x = batch()["image"]
    assert torch.allclose(fast(x), plain(x), atol=1e-4)


def test_training_steps_lower_the_loss_on_one_batch():
    model = module()
    optimizer = model.configure_optimizers()
    data = batch()
    losses = []
    for _ in range(5):
        loss, _ = model.loss_of(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_a_scheduler_is_stepped_per_epoch():
    model = module(scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=30))
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def test_inputs_too_small_for_five_poolings_are_refused():
    with pytest.raises(ValueError, match="≥ 32 voxels"):
        module()(torch.rand(2, 1, 16, 16, 16))
