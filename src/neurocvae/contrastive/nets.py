"""Encoders and decoder of the contrastive models, for any input size.

Each encoder level is Conv3d k3 s2 p1 (+ norm, activation), mapping an axis of n voxels to
⌊(n − 1)/2⌋ + 1; the decoder mirrors it with ConvTranspose3d k3 s2 p1 and the output padding
n_in − 2·n_out + 1 ∈ {0, 1} that restores each axis exactly. Dense sizes come from the input shape.

Named architectures (conf/arch/):
- `original_asd`: the original project's "asd" nets (docs/science.md §4.3): channels 32-64-128-256,
  BatchNorm, a dense 128 layer on the flattened features (307,200 at 160×192×160: 39.3 M
  weights per encoder).
- `efficient`: five levels, GroupNorm, and a 1×1×1 convolution that shrinks the
  features to a few channels before the dense layer, so no 300 000 → 128 layer.
- `additive` (default): the `efficient` encoders with a fixed linear projection beside the
  convolutions (`LinearCode`, set by `neurocvae.contrastive.linear`), and an `AdditiveDecoder`:
  a learnt template plus a linear and a convolutional image of the shared code plus a linear
  image of the salient code, so that D([z, s]) − D([z, 0]) is the salient pattern itself and the
  model contains a linear (contrastive) PCA model as a special case.

Linear paths work on a grid coarsened by an integer `stride` (average pooling in, trilinear
upsampling out), chosen as the smallest that leaves at most a number of voxels: for the
decoder's images 131,072 by default (stride 1 at 4 mm, 40×48×40; 4 at 1 mm, 160×192×160), for
the encoders' projections 16,384 (stride 2 at 4 mm, 8 at 1 mm: 20×24×20), where averaging
blocks of voxels lowers the noise a projection picks up while keeping smooth patterns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from neurocvae.data.scans import ROLES

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


def linear_stride(shape: Sequence[int], max_voxels: int) -> int:
    """The smallest integer stride whose coarsened grid ⌈n / stride⌉ has ≤ `max_voxels` voxels."""
    if max_voxels < 1:
        raise ValueError(f"a linear path's grid needs at least 1 voxel, got {max_voxels}")
    stride = 1
    while math.prod(math.ceil(n / stride) for n in shape) > max_voxels:
        stride += 1
    return stride


def coarse_shape(shape: Sequence[int], stride: int) -> Shape:
    return tuple(math.ceil(int(n) / stride) for n in shape)


def coarse_pool(images: torch.Tensor, stride: int) -> torch.Tensor:
    """[B, C, X, Y, Z] → [B, C, ⌈X/stride⌉, …]: zero padding to a multiple of the stride, then
    average pooling (the way down to a linear path's coarse grid)."""
    if stride == 1:
        return images
    pad = tuple(p for n in reversed(images.shape[2:]) for p in (0, -n % stride))
    return nn.functional.avg_pool3d(nn.functional.pad(images, pad), stride)


class LinearImage(nn.Module):
    """A linear map from codes [B, d] to images [B, 1, X, Y, Z] without bias (zero code → zero
    image): one image per code dimension on the coarse grid, upsampled trilinearly.

    The images [d, V] are `weight` × `unit`, `unit` [d, 1] a buffer (1 until `set_images`
    makes it each image's voxel RMS). Adam moves every weight by about its learning rate per
    step whatever the gradient's size, so in these units each image changes at the same
    relative pace, however small it is: a principal axis whose voxels are 40 times smaller
    than the first's is not swamped by the optimiser's steps, and a salient dimension that
    starts silent does not outgrow the patterns found."""

    def __init__(self, *, output_shape: Sequence[int], latent_dim: int, stride: int = 1,
                 init_std: float = 1e-3) -> None:
        super().__init__()
        self.output_shape = tuple(int(n) for n in output_shape)
        self.stride = stride
        self.coarse = coarse_shape(output_shape, stride)
        self.weight = nn.Parameter(torch.randn(latent_dim, math.prod(self.coarse)) * init_std)
        self.register_buffer("unit", torch.ones(latent_dim, 1))

    def images(self) -> torch.Tensor:
        """[d, V] the image of each code dimension on the coarse grid."""
        return self.weight * self.unit

    @torch.no_grad()
    def set_images(self, images: torch.Tensor) -> None:
        """Set the images [d, V]. Each non-zero image's voxel RMS becomes the unit of its own
        weights; an all-zero image (a dimension that starts silent) takes the mean unit of the
        others, so that it grows no faster than they change."""
        rms = images.square().mean(1, keepdim=True).sqrt()
        silent = float(rms[rms > 0].mean()) if (rms > 0).any() else 1.0
        unit = torch.where(rms > 0, rms, torch.full_like(rms, silent))
        self.unit.copy_(unit)
        self.weight.copy_(images / unit)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        state_dict.setdefault(prefix + "unit", torch.ones_like(self.unit))  # older checkpoints
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        image = (code @ self.images()).view(-1, 1, *self.coarse)
        if self.coarse != self.output_shape:
            image = nn.functional.interpolate(image, size=self.output_shape, mode="trilinear",
                                              align_corners=False)
        return image


class LinearCode(nn.Module):
    """A fixed linear projection of images [B, 1, X, Y, Z] to codes [B, d] on the coarse grid
    (`coarse_pool`). Its weight [d, V] and bias [d] are buffers, set by
    `neurocvae.contrastive.linear.initialise_linear` (zero until then) and carried by
    checkpoints; gradients never change them."""

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        voxels = math.prod(coarse_shape(input_shape, stride))
        self.register_buffer("weight", torch.zeros(latent_dim, voxels))
        self.register_buffer("bias", torch.zeros(latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return coarse_pool(x, self.stride).flatten(1) @ self.weight.T + self.bias


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
    `stochastic` (RAE). The log-variance is clamped to ±`logvar_limit` (no KL explosion).

    `linear_stride` (None: off) adds a linear map of the image (`LinearCode`) to the mean, so a
    direction of voxel space reaches the code without passing the convolutions.
    """

    def __init__(self, *, input_shape: Sequence[int], latent_dim: int,
                 channels: Sequence[int] = (32, 64, 128, 256), hidden: int | None = 128,
                 bottleneck_channels: int | None = None, norm: str | None = "batch",
                 activation: str = "relu", stochastic: bool = True,
                 logvar_limit: float = 10.0, in_channels: int = 1,
                 linear_stride: int | None = None) -> None:
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
        self.linear = (LinearCode(input_shape=input_shape, latent_dim=latent_dim,
                                  stride=linear_stride) if linear_stride else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.hidden(self.features(x))
        mu = self.mu(h) if self.linear is None else self.mu(h) + self.linear(x)
        if self.logvar is None:
            return mu, None
        return mu, self.logvar(h).clamp(-self.logvar_limit, self.logvar_limit)


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
    docs/science.md §5 #9: kept only to reproduce the original); `output` is `sigmoid` or `none`.
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


class AdditiveDecoder(nn.Module):
    """[B, shared_dim + salient_dim] → [B, 1, X, Y, Z] as a sum of four images:

        D([z ‖ s]) = T + L_z(z) + C(z) + L_s(s)

    T a learnt template (set to the backgrounds' mean by `initialise_template`), L_z and L_s
    linear images of the codes (`LinearImage`), C a convolutional `Decoder` of the shared code
    whose last layer starts at zero (so training starts from the linear model); L_s lies on the
    grid of `salient_stride` (None: L_z's `linear_stride`). The salient pattern
    D([z, s]) − D([z, 0]) = L_s(s) is the same for every subject: a weighted sum of S images.
    No output activation: intensities are not squashed, so small differences stay linear.
    """

    def __init__(self, *, output_shape: Sequence[int], shared_dim: int, salient_dim: int,
                 linear_stride: int = 1, salient_stride: int | None = None,
                 **conv: object) -> None:
        super().__init__()
        self.shared_dim = shared_dim
        self.template = nn.Parameter(torch.zeros(1, 1, *output_shape))
        self.shared_linear = LinearImage(output_shape=output_shape, latent_dim=shared_dim,
                                         stride=linear_stride)
        self.salient_linear = LinearImage(output_shape=output_shape, latent_dim=salient_dim,
                                          stride=salient_stride or linear_stride)
        self.shared_conv = (Decoder(output_shape=output_shape, latent_dim=shared_dim,
                                    output="none", **conv) if shared_dim else None)
        if self.shared_conv is not None:
            last = self.shared_conv.layers[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @torch.no_grad()
    def initialise_template(self, mean: torch.Tensor) -> None:
        """Set T to a mean image [1, X, Y, Z] (or [X, Y, Z])."""
        self.template.copy_(mean.reshape(self.template.shape))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        shared, salient = code[:, :self.shared_dim], code[:, self.shared_dim:]
        image = self.template + self.shared_linear(shared) + self.salient_linear(salient)
        if self.shared_conv is not None:
            image = image + self.shared_conv(shared)
        return image


def less_pattern_share(shared: torch.Tensor, salient: torch.Tensor,
                       share: torch.Tensor | None) -> torch.Tensor:
    """shared [B, Z] − salient [B, S] · share [S, Z] (shared unchanged when share is None)."""
    return shared if share is None else shared - salient @ share


SHARED_PROJECTIONS = ("coarse", "linear")  # the grid of the shared encoder's projection


class ContrastiveNets(nn.Module):
    """A salient encoder (targets), a shared encoder (both sets) and one decoder.

    The decoder input is `[shared ‖ salient]`; a background's salient slot holds zeros
    (`decode(shared)`), and so does a target's healthy counterfactual.

    `decoder="conv"` is the mirror `Decoder`; `decoder="additive"` the `AdditiveDecoder` (then
    `output_norm` and `output` do not apply). `linear_voxels` sets the coarse grid of the
    decoder's linear images (`linear_stride`), `salient_linear_voxels` (None: the same) that of
    the salient ones alone; `projection_voxels` (None: none) gives each
    encoder a fixed linear projection (`LinearCode`) on a grid of at most that many voxels.

    `shared_projection="linear"` puts the shared encoder's projection on the grid of the
    decoder's linear images instead of the `projection_voxels` grid, so that the shared images
    can be the projection's own axes (as PCA's are).

    `pattern_share` gives the targets their own shared code: the shared encoder's less what
    their salient code moves it by, z = μ_z(x) − μ_s(x)·K (`target_shared`; K [S, Z] a buffer,
    zero until set by the linear start). A target pattern that also moves a scan along
    directions healthy scans vary in then shows in the salient code, not in the shared one.
    Backgrounds are decoded from s = 0, so their shared code is the encoder's.
    """

    def __init__(self, *, input_shape: Sequence[int], shared_dim: int = 32, salient_dim: int = 32,
                 stochastic: bool = True, channels: Sequence[int] = (32, 64, 128, 256),
                 hidden: int | None = 128, bottleneck_channels: int | None = None,
                 norm: str | None = "batch", activation: str = "relu", output_norm: bool = False,
                 output: str = "sigmoid", logvar_limit: float = 10.0, decoder: str = "conv",
                 linear_voxels: int = 131_072, salient_linear_voxels: int | None = None,
                 projection_voxels: int | None = None, pattern_share: bool = False,
                 shared_projection: str = "coarse") -> None:
        super().__init__()
        if decoder not in ("conv", "additive"):
            raise ValueError(f"decoder={decoder!r}: expected 'conv' or 'additive'")
        if shared_projection not in SHARED_PROJECTIONS:
            raise ValueError(f"shared_projection={shared_projection!r}: expected one of "
                             f"{SHARED_PROJECTIONS}")
        self.input_shape = tuple(int(n) for n in input_shape)
        self.shared_dim, self.salient_dim = shared_dim, salient_dim
        self.stochastic = stochastic
        stride = linear_stride(input_shape, linear_voxels)
        salient_stride = linear_stride(input_shape, linear_voxels if salient_linear_voxels is None
                                       else salient_linear_voxels)
        if salient_stride < stride:
            raise ValueError(f"salient_linear_voxels={salient_linear_voxels} exceeds "
                             f"linear_voxels={linear_voxels}: the salient images lie on the "
                             "shared images' grid or a coarser one")
        self.projection_stride = (linear_stride(input_shape, projection_voxels)
                                  if projection_voxels else None)
        conv = dict(channels=channels, hidden=hidden, bottleneck_channels=bottleneck_channels,
                    norm=norm, activation=activation)
        common = dict(input_shape=input_shape, stochastic=stochastic, logvar_limit=logvar_limit,
                      linear_stride=self.projection_stride, **conv)
        self.salient_encoder = (Encoder(latent_dim=salient_dim, **common) if salient_dim
                                else NoCode(stochastic))
        if shared_projection == "linear" and self.projection_stride:
            common["linear_stride"] = stride
        self.shared_encoder = (Encoder(latent_dim=shared_dim, **common) if shared_dim
                               else NoCode(stochastic))
        self.register_buffer("pattern_share", torch.zeros(salient_dim, shared_dim)
                             if pattern_share and salient_dim and shared_dim else None)
        if decoder == "additive":
            self.decoder = AdditiveDecoder(output_shape=input_shape, shared_dim=shared_dim,
                                           salient_dim=salient_dim, linear_stride=stride,
                                           salient_stride=salient_stride, **conv)
        else:
            self.decoder = Decoder(output_shape=input_shape, latent_dim=shared_dim + salient_dim,
                                   output_norm=output_norm, output=output, **conv)

    def target_shared(self, shared: torch.Tensor, salient: torch.Tensor) -> torch.Tensor:
        """Targets' shared code means [B, Z] from the shared encoder's [B, Z] and the salient
        code means [B, S] (`pattern_share`)."""
        return less_pattern_share(shared, salient, self.pattern_share)

    def code_means(self, images: torch.Tensor, role: str | Sequence[str] = "target"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared [B, Z] and salient [B, S] code means of images [B, 1, X, Y, Z] read as
        `role` scans (one for all, or one per scan): "target" (a scan that may carry the
        pattern, also any new scan) or "background" (a healthy scan, decoded from s = 0)."""
        roles = [role] * len(images) if isinstance(role, str) else list(role)
        if unknown := sorted(set(roles) - set(ROLES)):
            raise ValueError(f"role {unknown[0]!r}: expected one of {', '.join(ROLES)}")
        shared, salient = self.shared_encoder(images)[0], self.salient_encoder(images)[0]
        as_target = torch.tensor([r == "target" for r in roles], device=shared.device)
        return torch.where(as_target[:, None], self.target_shared(shared, salient),
                           shared), salient

    def decode(self, shared: torch.Tensor, salient: torch.Tensor | None = None) -> torch.Tensor:
        """Volumes [B, 1, X, Y, Z] from shared [B, Z] and salient [B, S] codes (None: zeros)."""
        if salient is None:
            salient = shared.new_zeros(len(shared), self.salient_dim)
        return self.decoder(torch.cat([shared, salient], dim=1))
