"""Precise BatchNorm: the recomputed statistics are those of the data under the current weights."""

import torch
from torch import nn

from neurocvae.brainage.precise_bn import recompute_batchnorm


def test_the_statistics_become_the_equal_weight_average_over_the_batches():
    torch.manual_seed(0)
    conv, norm = nn.Conv3d(1, 3, 3), nn.BatchNorm3d(3, momentum=0.1)
    net = nn.Sequential(conv, norm).eval()
    batches = [torch.randn(4, 1, 6, 6, 6) * (k + 1) + k for k in range(5)]
    assert recompute_batchnorm(net, iter(batches)) == 5
    with torch.no_grad():
        features = [conv(b).transpose(0, 1).reshape(3, -1) for b in batches]
    means = torch.stack([f.mean(1) for f in features])
    variances = torch.stack([f.var(1) for f in features])  # unbiased, as BatchNorm keeps it
    torch.testing.assert_close(norm.running_mean, means.mean(0))
    torch.testing.assert_close(norm.running_var, variances.mean(0))
    assert norm.momentum == 0.1 and not net.training  # restored


def test_a_network_without_batchnorm_is_left_alone():
    net = nn.Sequential(nn.Conv3d(1, 2, 3), nn.GroupNorm(1, 2)).train()
    weights = [p.clone() for p in net.parameters()]
    assert recompute_batchnorm(net, iter([torch.randn(2, 1, 5, 5, 5)])) == 0
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters(), strict=True))
