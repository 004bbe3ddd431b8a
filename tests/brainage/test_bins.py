"""Soft age labels, the KL loss and the expected age."""

import pytest
import torch
from scipy.stats import norm

from neurocvae.brainage.bins import AgeBins, AgeRangeWarning, kl_loss


def test_soft_labels_are_gaussian_mass_per_bin():
    bins = AgeBins()
    labels = bins.soft_labels(torch.tensor([45.0, 61.3, 78.9]))
    assert labels.shape == (3, 40)
    assert torch.allclose(labels.sum(1), torch.ones(3), atol=2e-3)  # 45 is 3σ from 42
    k = 61 - 42  # the bin [61, 62)
    assert labels[1, k].item() == pytest.approx(norm.cdf(62 - 61.3) - norm.cdf(61 - 61.3), 1e-6)
    assert labels[1].argmax() == k


def test_labels_near_the_ends_lose_mass_and_are_not_renormalised():
    mass = AgeBins().soft_labels(torch.tensor([42.2, 81.9])).sum(1)
    assert (mass < 0.7).all() and (mass > 0.4).all()


def test_zero_sigma_gives_the_hard_bin():
    labels = AgeBins(sigma=0).soft_labels(torch.tensor([50.5, 42.0]))
    assert labels.sum(1).tolist() == [1.0, 1.0]
    assert labels.argmax(1).tolist() == [8, 0]


def test_expected_age_of_a_certain_bin_is_its_centre():
    log_probs = torch.full((1, 40), -1e4)
    log_probs[0, 10] = 0.0
    assert AgeBins().expected_age(log_probs).item() == pytest.approx(52.5)


def test_kl_loss_is_zero_at_the_labels_positive_elsewhere_and_keeps_labels():
    bins = AgeBins()
    labels = bins.soft_labels(torch.tensor([55.0, 70.2]))
    kept = labels.clone()
    exact = (labels / labels.sum(1, keepdim=True)).log()
    assert kl_loss(exact, labels).item() == pytest.approx(0.0, abs=1e-3)
    uniform = torch.full((2, 40), 1 / 40).log()
    assert kl_loss(uniform, labels).item() > 1.0
    assert torch.equal(labels, kept)
    hard = AgeBins(sigma=0).soft_labels(torch.tensor([55.0]))
    assert torch.isfinite(kl_loss(uniform[:1], hard))


def test_ages_outside_the_bins_warn_with_their_count():
    with pytest.warns(AgeRangeWarning, match="3 of 5 subjects have ages outside"):
        assert AgeBins().check([30, 41.9, 50, 82, 60]) == 3


def test_bins_must_tile_the_range():
    with pytest.raises(ValueError, match="do not tile"):
        AgeBins(start=42, stop=82, width=3)
