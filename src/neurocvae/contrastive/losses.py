"""Loss terms of the contrastive models, as pure functions (docs/science.md §4.2, §6.3).

Per-sample terms return [B]; the module averages them over the batch.

Reconstruction weight: `reconstruction` returns α × (mean squared error per voxel), i.e.
(α / N_vox) × the voxel sum of squared errors. α therefore weighs the same against the KL at
any resolution: the original's α = 250,000 at 160×192×160 (N_vox = 4,915,200) is 0.0509 × SSE,
and the same α at 40×48×40 gives the same balance on a 4 mm grid. Aglinskas et al.'s plain SSE
at 64³ is α = 262,144.

Calibrated reconstruction (Rybkin, Daniilidis & Levine 2021, "optimal σ"): a Gaussian decoder
whose variance σ² is the current mean squared error, so the weight α = N_vox / (2σ²) follows
the fit instead of being set by hand, and the term is the decoder's negative log-likelihood
SSE / (2σ²) + (N_vox / 2)·log σ² (nats, up to a constant).
"""

from __future__ import annotations

import torch

from neurocvae.contrastive.nets import LinearImage

# MM-cVAE's kernel bandwidths: exp(−g‖x − y‖²) for g = 10⁻⁶ … 10⁶.
MMD_GAMMAS = tuple(10.0 ** k for k in range(-6, 7))
BACKGROUND_SALIENT = ("none", "l2", "mmd", "w2")
RECONSTRUCTIONS = ("fixed", "calibrated")
MIN_VARIANCE = 1e-6  # floor of the calibrated decoder's σ² (intensities in [0, 1])


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor,
                   alpha: float | torch.Tensor) -> torch.Tensor:
    """[B]: α × mean over voxels of (x̂ − x)²; 0 for a perfect reconstruction."""
    return alpha * (x_hat - x).square().flatten(1).mean(1)


def calibrated_alpha(x_hat: torch.Tensor, x: torch.Tensor, *,
                     per_sample: bool = False) -> torch.Tensor:
    """α = N_vox / (2σ²), σ² the batch's mean squared voxel error (a scalar), or with
    `per_sample` each scan's own ([B]; a mean over scans that does not depend on how they are
    batched); σ² ≥ MIN_VARIANCE. With it, `reconstruction` is SSE / (2σ²) per sample."""
    squared = (x_hat - x).square().flatten(1)
    variance = (squared.mean(1) if per_sample else squared.mean()).clamp_min(MIN_VARIANCE)
    return x[0].numel() / (2 * variance)


def calibration_log_term(alpha: torch.Tensor, voxels: int) -> torch.Tensor:
    """(N_vox / 2)·log σ² for σ² = N_vox / (2α) (the shape of α): with it the calibrated term
    is the Gaussian negative log-likelihood (up to a constant)."""
    return 0.5 * voxels * torch.log(voxels / (2 * alpha))


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[B]: KL(N(μ, e^lv) ‖ N(0, I)) = ½ Σ_j (μ_j² + e^{lv_j} − 1 − lv_j), in nats."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


def half_square_norm(code: torch.Tensor) -> torch.Tensor:
    """[B]: ½‖z‖², the RAE's penalty on deterministic codes."""
    return 0.5 * code.square().sum(1)


def w2_to_zero(mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """[B]: squared 2-Wasserstein distance of N(μ, e^lv) to the point mass at 0,
    ‖μ‖² + Σ_j e^{lv_j} (contrastiveVI); ‖μ‖² for deterministic codes."""
    w2 = mu.square().sum(1)
    return w2 if logvar is None else w2 + logvar.exp().sum(1)


def mmd(x: torch.Tensor, y: torch.Tensor, gammas: tuple[float, ...] = MMD_GAMMAS) -> torch.Tensor:
    """Scalar: biased (V-statistic) squared MMD between samples x [N, D] and y [M, D] under a
    sum of RBF kernels, clipped at 0 (MM-cVAE)."""

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(a, b).square()
        return sum(torch.exp(-g * distance) for g in gammas).mean()

    return (kernel(x, x) + kernel(y, y) - 2 * kernel(x, y)).clamp_min(0)


def background_salient(kind: str, mu: torch.Tensor, logvar: torch.Tensor | None,
                       code: torch.Tensor) -> torch.Tensor:
    """Scalar penalty pulling the salient codes of backgrounds to 0.

    `l2`: mean ‖μ‖²; `mmd`: MMD²(sampled codes, δ₀) (MM-cVAE); `w2`: mean squared W₂ to δ₀
    (contrastiveVI). `mu`, `logvar`, `code` [B, S].
    """
    if kind == "l2":
        return mu.square().sum(1).mean()
    if kind == "mmd":
        return mmd(code, torch.zeros_like(code))
    if kind == "w2":
        return w2_to_zero(mu, logvar).mean()
    raise ValueError(f"background_salient={kind!r}: expected one of {BACKGROUND_SALIENT}")


def decoder_l2(decoder: torch.nn.Module) -> torch.Tensor:
    """Scalar: Σ w² over the decoder's weights (RAE-L2; biases and norms excluded), a linear
    image's weights taken as its images."""
    total = next(decoder.parameters()).new_zeros(())
    for module in decoder.modules():
        if isinstance(module, LinearImage):
            total = total + module.images().square().sum()
            continue
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and p.dim() > 1:
                total = total + p.square().sum()
    return total


def decoder_gradient_penalty(decode, code: torch.Tensor,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar: E‖∇_z ⟨G(z), u⟩‖² with u ~ N(0, I), an unbiased estimate of the squared Frobenius
    norm of the decoder's Jacobian ‖∂G/∂z‖²_F (RAE-GP), averaged over the batch; one extra
    backward pass instead of one per output voxel. It regularises the decoder only: the codes
    are detached."""
    code = code.detach().requires_grad_(True)
    output = decode(code)
    projection = torch.randn(output.shape, generator=generator, device=output.device,
                             dtype=output.dtype)
    (grad,) = torch.autograd.grad((output * projection).sum(), code, create_graph=True)
    return grad.square().sum(1).mean()
