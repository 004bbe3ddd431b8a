"""The TC discriminator: its product sample, that it learns dependence (and only dependence),
and the watch on its accuracy."""

import pytest
import torch

from neurocvae.contrastive.discriminator import (
    DiscriminatorWarning,
    DiscriminatorWatch,
    TCDiscriminator,
    product_of_marginals,
)


def test_permute_keeps_the_shared_block_and_shuffles_the_salient_rows():
    shared, salient = torch.arange(6.0)[:, None], 10 + torch.arange(6.0)[:, None]
    product = product_of_marginals(shared, salient, "permute",
                                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(product[:, 0], shared[:, 0])
    assert sorted(product[:, 1].tolist()) == salient[:, 0].tolist()
    assert not torch.equal(product[:, 1], salient[:, 0])


def test_half_swap_is_the_originals():
    shared, salient = torch.arange(5.0)[:, None], 10 + torch.arange(5.0)[:, None]
    product = product_of_marginals(shared, salient, "half_swap")
    # [z₂ ‖ s₁], [z₁ ‖ s₂], then subject 0 unswapped (odd batch)
    assert product.tolist() == [[2, 10], [3, 11], [0, 12], [1, 13], [0, 10]]


def test_per_dim_permutes_every_column_on_its_own():
    shared, salient = torch.randn(50, 3), torch.randn(50, 2)
    product = product_of_marginals(shared, salient, "per_dim")
    joint = torch.cat([shared, salient], 1)
    for j in range(5):
        assert torch.equal(product[:, j].sort().values, joint[:, j].sort().values)
    with pytest.raises(ValueError, match="product"):
        product_of_marginals(shared, salient, "shuffle")


def trained_accuracy(dependent: bool, *, steps: int = 300, batch: int = 64) -> float:
    """Train D alone on fresh codes each step; its accuracy on new codes afterwards."""
    torch.manual_seed(0)
    disc = TCDiscriminator(input_dim=4, hidden=(32, 32))
    optimiser = torch.optim.Adam(disc.parameters(), lr=3e-3)

    def codes():
        shared = torch.randn(batch, 2)
        salient = shared + 0.3 * torch.randn(batch, 2) if dependent else torch.randn(batch, 2)
        joint = torch.cat([shared, salient], 1)
        return joint, product_of_marginals(shared, salient)

    for _ in range(steps):
        loss = disc.loss(*codes())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    joint, product = codes()
    return sum(disc.accuracy(joint, product)) / 2


def test_accuracy_rises_above_chance_only_for_dependent_codes():
    assert trained_accuracy(dependent=True) > 0.8
    assert abs(trained_accuracy(dependent=False) - 0.5) < 0.15


def test_no_normalisation_on_the_score_and_the_squash():
    disc = TCDiscriminator(input_dim=4, hidden=(), squash=True)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in disc.modules())
    v = torch.randn(8, 4)
    p = disc.probability(v)
    assert torch.allclose(p, (torch.sigmoid(disc(v)) + 0.1) * 0.85)
    assert torch.allclose(disc.log_odds(v), torch.log(p / (1 - p)), atol=1e-6)
    plain = TCDiscriminator(input_dim=4, hidden=())
    assert torch.equal(plain.log_odds(v), plain(v))


def test_the_watch_warns_once_per_stuck_stretch():
    watch = DiscriminatorWatch(patience=3)
    assert watch.update(0, 0.51) is None and watch.update(1, 0.49) is None
    with pytest.warns(DiscriminatorWarning, match="at chance for 3 epochs"):
        assert watch.update(2, 0.52)
    assert watch.update(3, 0.5) is None  # still stuck: said already
    assert watch.update(4, 0.8) is None
    for epoch in (5, 6):
        assert watch.update(epoch, 1.0) is None
    with pytest.warns(DiscriminatorWarning, match="saturated"):
        watch.update(7, 0.995)
