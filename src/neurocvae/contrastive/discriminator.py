"""The total-correlation discriminator (FactorVAE-style, docs/science.md §4.2).

D tells joint codes v = [z ‖ s] of one batch from a sample of the product of the block marginals
v̄ (the salient block re-paired with other subjects' shared block). The encoders minimise
γ·TC with TC = mean log D(v)/(1 − D(v)); D has its own optimiser and learns on detached codes.
There is no normalisation on its score (the original's BatchNorm1d made D ≡ 0.495).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PRODUCTS = ("permute", "half_swap", "per_dim")


class DiscriminatorWarning(UserWarning):
    """The discriminator has sat at chance or at saturation for several epochs."""


def product_of_marginals(shared: torch.Tensor, salient: torch.Tensor, mode: str = "permute",
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, Z + S] codes whose shared and salient blocks come from different subjects.

    `permute`: the salient codes permuted across the whole batch. `half_swap` (the original):
    the halves' shared blocks exchanged, [z₂ ‖ s₁], [z₁ ‖ s₂]; with odd B the first subject is
    appended unswapped. `per_dim`: every dimension permuted on its own (FactorVAE, full TC).
    """
    batch = len(shared)
    index = lambda: torch.randperm(batch, generator=generator, device=shared.device)  # noqa: E731
    if mode == "permute":
        return torch.cat([shared, salient[index()]], dim=1)
    if mode == "half_swap":
        half = batch // 2
        joint = torch.cat([shared, salient], dim=1)
        swapped = [torch.cat([shared[half:2 * half], salient[:half]], dim=1),
                   torch.cat([shared[:half], salient[half:2 * half]], dim=1)]
        return torch.cat(swapped + ([joint[:1]] if batch % 2 else []), dim=0)
    if mode == "per_dim":
        joint = torch.cat([shared, salient], dim=1)
        return torch.stack([column[index()] for column in joint.T], dim=1)
    raise ValueError(f"product={mode!r}: expected one of {PRODUCTS}")


class TCDiscriminator(nn.Module):
    """Codes [B, input_dim] → logits ℓ [B] of "joint" (D = σ(ℓ)).

    `hidden=()` is the original's linear D; FactorVAE uses six 1000-unit LeakyReLU layers.
    `squash=True` is Aglinskas et al.'s D = (σ(ℓ) + 0.1)·0.85, kept for anchor runs.
    """

    def __init__(self, *, input_dim: int, hidden: Sequence[int] = (256, 256),
                 squash: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.layers = nn.Sequential(*layers, nn.Linear(width, 1))
        self.squash = squash

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.layers(codes).squeeze(1)

    def probability(self, codes: torch.Tensor) -> torch.Tensor:
        """[B] D(v) ∈ (0, 1)."""
        p = torch.sigmoid(self(codes))
        return (p + 0.1) * 0.85 if self.squash else p

    def log_odds(self, codes: torch.Tensor) -> torch.Tensor:
        """[B] log D/(1 − D): the per-sample TC estimate (may be negative)."""
        if not self.squash:
            return self(codes)
        p = self.probability(codes)
        return torch.log(p) - torch.log1p(-p)

    def loss(self, joint: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """Scalar BCE: joint codes → 1, product-of-marginals codes → 0."""
        if not self.squash:
            real, fake = self(joint), self(product)
            return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                    + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        return -(torch.log(self.probability(joint)).mean()
                 + torch.log1p(-self.probability(product)).mean())

    @torch.no_grad()
    def accuracy(self, joint: torch.Tensor, product: torch.Tensor) -> tuple[float, float]:
        """Fractions of joint codes called joint and of product codes called product."""
        return (float((self.probability(joint) > 0.5).float().mean()),
                float((self.probability(product) < 0.5).float().mean()))


class DiscriminatorWatch:
    """Warns once when the epoch accuracy of D has stayed within `band` of chance (0.5) or above
    `saturation` for `patience` epochs in a row.

    Saturated, D wins outright and the TC gradient is uninformative. At chance, either the code
    blocks are already independent (the goal) or D cannot learn (the original's failure:
    D ≡ 0.495): `train/disc_loss` near 2 ln 2 from the first epoch points to the second.
    """

    def __init__(self, patience: int = 3, band: float = 0.05, saturation: float = 0.99) -> None:
        self.patience, self.band, self.saturation = patience, band, saturation
        self.history: list[float] = []

    def state(self, accuracy: float) -> str | None:
        if abs(accuracy - 0.5) <= self.band:
            return "at chance"
        return "saturated" if accuracy >= self.saturation else None

    def update(self, epoch: int, accuracy: float, *, warn: bool = True) -> str | None:
        """Record one epoch's accuracy; return (and `warn`) a message when D has just been stuck
        for `patience` epochs."""
        self.history.append(accuracy)
        states = [self.state(a) for a in self.history[-self.patience - 1:]]
        stuck = states[-1]
        if (stuck is None or len(self.history) < self.patience
                or states[-self.patience:].count(stuck) < self.patience
                or (len(states) > self.patience and states[0] == stuck)):
            return None
        recent = ", ".join(f"{a:.3f}" for a in self.history[-self.patience:])
        message = (f"the TC discriminator has been {stuck} for {self.patience} epochs (accuracy "
                   f"{recent} up to epoch {epoch}): the TC term gives the encoders little "
                   "signal. At chance, either the shared and salient codes are independent "
                   "already or the discriminator cannot learn (check train/disc_loss against "
                   "2 ln 2 = 1.386); saturated, it wins outright. Consider another γ, "
                   "discriminator width or learning rate.")
        if warn:
            warnings.warn(message, DiscriminatorWarning, stacklevel=2)
        return message
