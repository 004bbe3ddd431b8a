"""SFCN: published sizes, shapes, and the loader for the published weight-file forms."""

import pytest
import torch
from torch import nn

from neurocvae.brainage.sfcn import SFCN, load_weights
from neurocvae.errors import InputError


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_the_paper():
    assert n_parameters(SFCN()) == 2_952_936
    assert n_parameters(SFCN.sex()) == 2_918_144
    buffers = sum(b.numel() for name, b in SFCN().named_buffers() if "running" in name)
    assert buffers == 1_600


def test_module_names_are_the_published_ones():
    keys = set(SFCN().state_dict())
    assert "feature_extractor.conv_0.0.weight" in keys
    assert "feature_extractor.conv_5.1.running_var" in keys
    assert "classifier.conv_6.weight" in keys
    assert len(keys) == 6 * 7 + 2  # conv w/b + BN w/b/mean/var/count per block, final conv w/b


def test_small_input_gives_log_probabilities_per_bin():
    out = SFCN().eval()(torch.randn(2, 1, 32, 40, 32))
    assert out.shape == (2, 40)
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)


def test_full_resolution_output_and_the_published_average_pool():
    model = SFCN().eval()
    with torch.inference_mode():
        x = torch.randn(1, 1, 160, 192, 160)
        features = model.feature_extractor(x)
        out = model(x)
    assert features.shape == (1, 64, 5, 6, 5)
    published = model.classifier.conv_6(nn.AvgPool3d([5, 6, 5])(features))
    assert torch.allclose(out, torch.log_softmax(published.flatten(1), 1), atol=1e-6)
    assert out.shape == (1, 40)


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="≥ 32 voxels"):
        SFCN()(torch.randn(1, 1, 16, 16, 16))


@pytest.fixture
def trained():
    torch.manual_seed(0)
    model = SFCN().eval()
    for module in model.modules():  # non-default statistics, so a loaded model must carry them
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("form", ["plain", "dataparallel", "lightning"])
def test_weight_files_load_in_every_form(trained, form, tmp_path):
    state = {"plain": trained.state_dict(),
             "dataparallel": nn.DataParallel(trained).state_dict(),
             "lightning": {"state_dict": {f"net.{k}": v for k, v in trained.state_dict().items()},
                           "epoch": 3}}[form]
    if form == "dataparallel":
        assert all(key.startswith("module.") for key in state)
    torch.save(state, tmp_path / "weights.p")
    loaded = load_weights(SFCN(), tmp_path / "weights.p").eval()
    x = torch.randn(1, 1, 32, 32, 32)
    assert torch.equal(loaded(x), trained(x))


def test_another_architecture_lists_its_keys(tmp_path):
    torch.save(nn.DataParallel(SFCN.sex()).state_dict(), tmp_path / "sex.p")
    with pytest.raises(InputError, match=r"shape mismatches 15: feature_extractor\.conv_0\.0\."
                                         r"weight \(file \(28, 1, 3, 3, 3\), model \(32, 1"):
        load_weights(SFCN(), tmp_path / "sex.p")
    state = SFCN().state_dict()
    state.pop("classifier.conv_6.bias")
    state["classifier.conv_7.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "other.p")
    with pytest.raises(InputError) as error:
        load_weights(SFCN(), tmp_path / "other.p")
    assert "missing keys 1: classifier.conv_6.bias" in str(error.value)
    assert "unexpected keys 1: classifier.conv_7.weight" in str(error.value)


class Payload:
    """Not a tensor: weights_only loading must refuse to unpickle it."""


def test_unsafe_or_missing_files_are_refused(tmp_path):
    torch.save({"x": Payload()}, tmp_path / "unsafe.p")
    with pytest.raises(InputError, match="not a readable PyTorch weight file"):
        load_weights(SFCN(), tmp_path / "unsafe.p")
    with pytest.raises(InputError, match="weight file not found"):
        load_weights(SFCN(), tmp_path / "absent.p")
