"""Encoders and decoder: the original's exact parameter counts, any input size, the decoder
input convention."""

import pytest
import torch
from torch import nn

from neurocvae.contrastive import losses
from neurocvae.contrastive.nets import (
    ContrastiveNets,
    LinearImage,
    coarse_pool,
    linear_stride,
    pyramid,
)
from tests.conftest import compose_config


def arch(name: str, **values) -> dict:
    cfg = compose_config("train", [f"arch={name}", "data.target=t", "data.background=b"])
    return {k: v for k, v in cfg.arch.items() if k != "_target_"} | values


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_original_asd_has_the_original_parameter_counts():
    nets = ContrastiveNets(input_shape=(160, 192, 160), **arch("original_asd"))
    assert count(nets.salient_encoder) == count(nets.shared_encoder) == 40_493_504
    assert count(nets.decoder) == 40_799_873  # without the original's output BatchNorm3d(1)
    original = ContrastiveNets(input_shape=(160, 192, 160),
                               **arch("original_asd", output_norm=True))
    assert count(original.decoder) == 40_799_875
    assert nets.salient_encoder.hidden[0].in_features == 307_200


def test_the_efficient_default_has_no_huge_dense_layer():
    nets = ContrastiveNets(input_shape=(160, 192, 160), **arch("efficient"))
    widest = max(m.in_features * m.out_features for m in nets.modules()
                 if isinstance(m, nn.Linear))
    assert widest < 1_000_000 and count(nets) < 0.05 * 3 * 40_493_504


@pytest.mark.parametrize("shape", [(16, 16, 16), (17, 20, 15), (40, 48, 40), (33, 9, 24)])
@pytest.mark.parametrize("name", ["efficient", "original_asd", "aglinskas"])
def test_any_input_shape_is_reconstructed_at_its_own_shape(name, shape):
    values = arch(name) | {"channels": [4, 8, 8, 8, 8][: len(arch(name)["channels"])]}
    nets = ContrastiveNets(input_shape=shape, shared_dim=3, salient_dim=2, **values)
    x = torch.rand(2, 1, *shape)
    mu, logvar = nets.shared_encoder(x)
    assert mu.shape == logvar.shape == (2, 3)
    out = nets.decode(mu, nets.salient_encoder(x)[0])
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_pyramid_halves_each_axis_like_a_stride_2_convolution():
    assert pyramid((160, 192, 160), 4) == [(160, 192, 160), (80, 96, 80), (40, 48, 40),
                                           (20, 24, 20), (10, 12, 10)]
    conv = nn.Conv3d(1, 1, 3, stride=2, padding=1)
    assert conv(torch.zeros(1, 1, 17, 20, 15)).shape[2:] == pyramid((17, 20, 15), 1)[1]


def test_deterministic_codes_have_no_log_variance_and_limits_hold():
    nets = ContrastiveNets(input_shape=(16, 16, 16), **arch("efficient", stochastic=False))
    _mu, logvar = nets.salient_encoder(torch.rand(2, 1, 16, 16, 16))
    assert logvar is None and nets.salient_encoder.logvar is None
    gaussian = ContrastiveNets(input_shape=(16, 16, 16), **arch("efficient", logvar_limit=2.0))
    with torch.no_grad():
        gaussian.salient_encoder.logvar.bias.fill_(50.0)
    assert gaussian.salient_encoder(torch.rand(2, 1, 16, 16, 16))[1].max() == 2.0


def test_decode_puts_zeros_in_the_salient_slot():
    nets = ContrastiveNets(input_shape=(16, 16, 16), shared_dim=3, salient_dim=2,
                           **arch("efficient"))
    seen = []
    nets.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    shared = torch.randn(4, 3)
    nets.decode(shared)
    assert torch.equal(seen[0][:, :3], shared) and (seen[0][:, 3:] == 0).all()


def test_an_absent_space_costs_nothing_and_gives_empty_codes():
    """A plain VAE (experiment=vae) has no shared space: no encoder weights, codes [B, 0]."""
    nets = ContrastiveNets(input_shape=(16, 16, 16), shared_dim=0, salient_dim=4,
                           channels=(4, 8), hidden=16)
    assert not list(nets.shared_encoder.parameters())
    shared, logvar = nets.shared_encoder(torch.zeros(3, 1, 16, 16, 16))
    assert shared.shape == logvar.shape == (3, 0)
    salient = nets.salient_encoder(torch.zeros(3, 1, 16, 16, 16))[0]
    assert nets.decode(shared, salient).shape == (3, 1, 16, 16, 16)


def test_linear_stride_keeps_the_coarse_grid_under_the_voxel_budget():
    assert linear_stride((40, 48, 40), 131_072) == 1
    assert linear_stride((80, 96, 80), 131_072) == 2
    assert linear_stride((160, 192, 160), 131_072) == 4
    assert linear_stride((80, 96, 80), 2**20) == 1
    assert linear_stride((160, 192, 160), 2**20) == 2
    assert linear_stride((17, 20, 15), 1000) == 2  # 9 × 10 × 8 = 720 voxels
    with pytest.raises(ValueError, match="at least 1 voxel, got 0"):
        linear_stride((40, 48, 40), 0)  # would otherwise search for a stride forever


@pytest.mark.parametrize("shape,voxels", [((16, 16, 16), 131_072), ((17, 20, 15), 1000)])
def test_the_additive_salient_pattern_is_linear_in_s_and_the_same_for_every_z(shape, voxels):
    values = arch("additive", channels=[4, 8], hidden=16, linear_voxels=voxels)
    nets = ContrastiveNets(input_shape=shape, shared_dim=3, salient_dim=2, **values)
    with torch.no_grad():  # a non-zero convolutional path, so z acts non-linearly
        for p in nets.decoder.shared_conv.parameters():
            p.normal_(0, 0.3)
    z1, z2, s = torch.randn(1, 3), torch.randn(1, 3), torch.randn(1, 2)
    pattern = nets.decode(z1, s) - nets.decode(z1)
    assert pattern.shape == (1, 1, *shape) and pattern.abs().max() > 0
    assert torch.allclose(nets.decode(z2, s) - nets.decode(z2), pattern, atol=1e-5)
    assert torch.allclose(nets.decode(z1, 2 * s) - nets.decode(z1), 2 * pattern, atol=1e-5)
    assert not torch.allclose(nets.decode(2 * z1), 2 * nets.decode(z1) - nets.decode(0 * z1),
                              atol=1e-3)  # the shared path is not linear


def test_coarse_pool_averages_blocks_and_pads_with_zeros():
    images = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(1, 1, 2, 3, 2)
    pooled = coarse_pool(images, 2)
    assert pooled.shape == (1, 1, 1, 2, 1)
    assert pooled[0, 0, 0, 0, 0] == images[0, 0, :, :2, :].mean()
    assert pooled[0, 0, 0, 1, 0] == images[0, 0, :, 2:, :].sum() / 8  # half the block is padding


def test_fixed_projections_are_buffers_that_checkpoints_carry():
    nets = ContrastiveNets(input_shape=(16, 16, 16), shared_dim=3, salient_dim=2,
                           **arch("additive", channels=[4, 8], hidden=16))
    projection = nets.salient_encoder.linear
    assert not any(p is projection.weight for p in nets.parameters())
    assert "salient_encoder.linear.weight" in nets.state_dict()


def test_linear_images_change_at_one_relative_pace_under_adam():
    images = torch.randn(3, 500, generator=torch.Generator().manual_seed(0))
    images[1] *= 0.01  # an image 100 times smaller than the others
    images[2] = 0      # a silent dimension: the others' mean unit
    linear = LinearImage(output_shape=(5, 10, 10), latent_dim=3)
    linear.set_images(images)
    assert torch.allclose(linear.images(), images)
    assert linear.unit[2] == pytest.approx(linear.unit[:2].mean().item())
    optimiser = torch.optim.Adam(linear.parameters(), lr=1e-3)
    linear(torch.randn(8, 3)).sum().backward()
    optimiser.step()
    with torch.no_grad():
        change = (linear.images() - images).norm(dim=1) / images.norm(dim=1)
        assert change[0] == pytest.approx(1e-3, rel=0.05)
        assert change[1] == pytest.approx(1e-3, rel=0.05)  # plain weights: 0.1 of itself
        assert losses.decoder_l2(linear).item() == pytest.approx(
            linear.images().square().sum().item())


def test_linear_images_load_from_checkpoints_without_units():
    linear = LinearImage(output_shape=(2, 2, 2), latent_dim=2)
    state = {"weight": torch.randn(2, 8)}  # written before the images had units
    linear.load_state_dict(state)
    assert torch.equal(linear.images(), state["weight"])
