"""Loss terms against their definitions."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from neurocvae.contrastive import losses


def test_a_perfect_reconstruction_costs_nothing_and_alpha_is_per_voxel():
    x = torch.rand(3, 1, 8, 8, 8)
    assert losses.reconstruction(x, x, 250_000).abs().max() == 0
    error = losses.reconstruction(x + 0.1, x, 250_000)
    assert torch.allclose(error, torch.full((3,), 250_000 * 0.01))
    fine = F.interpolate(x, scale_factor=2)  # the same images at 8× the voxels
    assert torch.allclose(losses.reconstruction(fine + 0.1, fine, 250_000), error)


def test_kl_equals_the_closed_form_of_torch_distributions():
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0, 1)).sum(1)
    assert torch.allclose(losses.kl_standard_normal(mu, logvar), expected, atol=1e-5)
    assert losses.kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_background_salient_penalties():
    mu, logvar = torch.tensor([[3.0, 4.0]]), torch.log(torch.tensor([[2.0, 0.5]]))
    assert losses.background_salient("l2", mu, logvar, mu).item() == pytest.approx(25)
    assert losses.background_salient("w2", mu, logvar, mu).item() == pytest.approx(27.5)
    assert losses.w2_to_zero(mu, None).item() == pytest.approx(25)
    zeros = torch.zeros(16, 2)
    assert losses.background_salient("mmd", zeros, None, zeros).item() == 0
    assert losses.background_salient("mmd", zeros, None, torch.randn(16, 2)).item() > 0.5
    with pytest.raises(ValueError, match="background_salient"):
        losses.background_salient("kl", mu, logvar, mu)


def test_mmd_tells_different_distributions_apart():
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(200, 3, generator=generator) for _ in range(2))
    same, shifted = losses.mmd(a, b), losses.mmd(a, b + 1.0)
    # the V-statistic's bias: ≈ 2/N per kernel too narrow to see two distinct points (8 of 13)
    assert 0 <= same.item() < 8 * 2 / 200 + 0.02 < shifted.item()
    assert math.isclose(losses.mmd(a, a).item(), 0, abs_tol=1e-5)


def test_decoder_penalties():
    linear = torch.nn.Linear(4, 50)
    assert torch.allclose(losses.decoder_l2(linear), linear.weight.square().sum())
    torch.manual_seed(0)
    code = torch.randn(8, 4)
    estimate = torch.stack([losses.decoder_gradient_penalty(linear, code)
                            for _ in range(400)]).mean()
    jacobian = linear.weight.square().sum()  # ‖∂G/∂z‖²_F of a linear decoder
    assert estimate.item() == pytest.approx(jacobian.item(), rel=0.1)


def test_the_calibrated_term_is_the_gaussian_likelihood_at_the_batch_error():
    x, x_hat = torch.rand(4, 1, 6, 6, 6), torch.rand(4, 1, 6, 6, 6)
    variance = (x_hat - x).square().mean()
    alpha = losses.calibrated_alpha(x_hat, x)
    assert torch.isclose(alpha, 216 / (2 * variance))
    term = losses.reconstruction(x_hat, x, alpha) + losses.calibration_log_term(alpha, 216)
    log_likelihood = Normal(x_hat, variance.sqrt()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(term, -log_likelihood - 108 * math.log(2 * math.pi), rtol=1e-4)
    perfect = losses.calibrated_alpha(x, x)  # σ² floored: finite for a perfect fit
    assert torch.isfinite(perfect) and perfect == 216 / (2 * losses.MIN_VARIANCE)
