"""Encoders and decoder of the contrastive models, for any input size.

Each encoder level is Conv3d k3 s2 p1 (+ norm, activation), mapping an axis of n voxels to
⌊(n − 1)/2⌋ + 1; the decoder mirrors it with ConvTranspose3d k3 s2 p1 and the output padding
n_in − 2·n_out + 1 ∈ {0, 1} that restores each axis exactly. Dense sizes come from the input shape.

Two named architectures (conf/arch/):
- `seed_asd`: the original "asd" nets (SCIENCE.md §4): channels 32-64-128-256, BatchNorm, a dense
  128 layer on the flattened features (307,200 at 160×192×160: 39.3 M weights per encoder).
- `efficient` (default): five levels, GroupNorm, and a 1×1×1 convolution that shrinks the
  features to a few channels before the dense layer, so no 300 000 → 128 layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("batch", "group", "instance", None)
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU}
Shape = tuple[int, int, int]


def halved(shape: Sequence[int]) -> Shape:
    """The output shape of one Conv3d k3 s2 p1."""
    return tuple((n - 1) // 2 + 1 for n in shape)


def pyramid(shape: Sequence[int], levels: int) -> list[Shape]:
    """Spatial shapes from the input (level 0) down to the bottleneck (level `levels`)."""
    shapes = [tuple(int(n) for n in shape)]
    for _ in range(levels):
        shapes.append(halved(shapes[-1]))
    return shapes


def norm_layer(kind: str | None, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind is None:
        return nn.Identity()
    raise ValueError(f"norm={kind!r}: expected one of {NORMS}")


def activation_layer(kind: str) -> nn.Module:
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation={kind!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[kind]()


class Encoder(nn.Module):
    """[B, 1, X, Y, Z] → `(mu, logvar)`, each [B, latent_dim]; `logvar` is None when not
    `stochastic` (RAE). The log-variance is clamped to ±`logvar_limit` (no KL explosion)."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int,
                 channels: Sequence[int] = (32, 64, 128, 256), hidden: int | None = 128,
                 bottleneck_channels: int | None = None, norm: str | None = "batch",
                 activation: str = "relu", stochastic: bool = True,
                 logvar_limit: float = 10.0, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for c in channels:
            layers += [nn.Conv3d(width, c, 3, stride=2, padding=1), norm_layer(norm, c),
                       activation_layer(activation)]
            width = c
        if bottleneck_channels:
            layers += [nn.Conv3d(width, bottleneck_channels, 1), activation_layer(activation)]
            width = bottleneck_channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = width * math.prod(pyramid(input_shape, len(channels))[-1])
        self.hidden = (nn.Sequential(nn.Linear(flat, hidden), activation_layer(activation))
                       if hidden else nn.Identity())
        self.mu = nn.Linear(hidden or flat, latent_dim)
        self.logvar = nn.Linear(hidden or flat, latent_dim) if stochastic else None
        self.logvar_limit = logvar_limit

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.hidden(self.features(x))
        if self.logvar is None:
            return self.mu(h), None
        return self.mu(h), self.logvar(h).clamp(-self.logvar_limit, self.logvar_limit)


class NoCode(nn.Module):
    """The encoder of an absent space (latent_dim 0, e.g. a plain VAE's shared space): empty
    codes [B, 0] without any computation."""

    def __init__(self, stochastic: bool = True) -> None:
        super().__init__()
        self.stochastic = stochastic

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        empty = x.new_zeros(len(x), 0)
        return empty, (empty if self.stochastic else None)


class Decoder(nn.Module):
    """[B, latent_dim] → [B, 1, X, Y, Z], the mirror of `Encoder` (same `channels`, encoder order).

    `output_norm=True` puts the original's BatchNorm3d(1) before the output activation (a defect,
    SCIENCE.md §5 #9: kept only to reproduce the original); `output` is `sigmoid` or `none`.
    """

    def __init__(self, *, output_shape: Sequence[int], latent_dim: int,
                 channels: Sequence[int] = (32, 64, 128, 256), hidden: int | None = 128,
                 bottleneck_channels: int | None = None, norm: str | None = "batch",
                 activation: str = "relu", output_norm: bool = False, output: str = "sigmoid",
                 out_channels: int = 1) -> None:
        super().__init__()
        if output not in ("sigmoid", "none"):
            raise ValueError(f"output={output!r}: expected 'sigmoid' or 'none'")
        shapes = pyramid(output_shape, len(channels))
        top = bottleneck_channels or channels[-1]
        self.top_shape = (top, *shapes[-1])
        flat = math.prod(self.top_shape)
        dense: list[nn.Module] = ([nn.Linear(latent_dim, hidden), activation_layer(activation),
                                   nn.Linear(hidden, flat)] if hidden
                                  else [nn.Linear(latent_dim, flat)])
        self.dense = nn.Sequential(*dense, activation_layer(activation))
        layers: list[nn.Module] = []
        if bottleneck_channels:
            layers += [nn.Conv3d(top, channels[-1], 1), activation_layer(activation)]
        widths = [*reversed(channels), out_channels]
        for level in range(len(channels)):
            n_in, n_out = shapes[-1 - level], shapes[-2 - level]
            padding = tuple(o - 2 * i + 1 for o, i in zip(n_out, n_in, strict=True))
            layers.append(nn.ConvTranspose3d(widths[level], widths[level + 1], 3, stride=2,
                                             padding=1, output_padding=padding))
            if level < len(channels) - 1:
                layers += [norm_layer(norm, widths[level + 1]), activation_layer(activation)]
        if output_norm:
            layers.append(nn.BatchNorm3d(out_channels))
        if output == "sigmoid":
            layers.append(nn.Sigmoid())
        self.layers = nn.Sequential(*layers)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.layers(self.dense(code).view(-1, *self.top_shape))


class ContrastiveNets(nn.Module):
    """A salient encoder (targets), a shared encoder (both sets) and one decoder.

    The decoder input is `[shared ‖ salient]`; a background's salient slot holds zeros
    (`decode(shared)`), and so does a target's healthy counterfactual.
    """

    def __init__(self, *, input_shape: Sequence[int], shared_dim: int = 32, salient_dim: int = 32,
                 stochastic: bool = True, channels: Sequence[int] = (32, 64, 128, 256),
                 hidden: int | None = 128, bottleneck_channels: int | None = None,
                 norm: str | None = "batch", activation: str = "relu", output_norm: bool = False,
                 output: str = "sigmoid", logvar_limit: float = 10.0) -> None:
        super().__init__()
        self.input_shape = tuple(int(n) for n in input_shape)
        self.shared_dim, self.salient_dim = shared_dim, salient_dim
        self.stochastic = stochastic
        common = dict(input_shape=input_shape, channels=channels, hidden=hidden,
                      bottleneck_channels=bottleneck_channels, norm=norm, activation=activation,
                      stochastic=stochastic, logvar_limit=logvar_limit)
        self.salient_encoder = (Encoder(latent_dim=salient_dim, **common) if salient_dim
                                else NoCode(stochastic))
        self.shared_encoder = (Encoder(latent_dim=shared_dim, **common) if shared_dim
                               else NoCode(stochastic))
        self.decoder = Decoder(output_shape=input_shape, latent_dim=shared_dim + salient_dim,
                               channels=channels, hidden=hidden,
                               bottleneck_channels=bottleneck_channels, norm=norm,
                               activation=activation, output_norm=output_norm, output=output)

    def decode(self, shared: torch.Tensor, salient: torch.Tensor | None = None) -> torch.Tensor:
        """Volumes [B, 1, X, Y, Z] from shared [B, Z] and salient [B, S] codes (None: zeros)."""
        if salient is None:
            salient = shared.new_zeros(len(shared), self.salient_dim)
        return self.decoder(torch.cat([shared, salient], dim=1))
