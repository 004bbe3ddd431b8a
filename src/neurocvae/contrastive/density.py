"""Ex-post densities of deterministic (RAE) codes, for sampling (Ghosh et al. 2020, §6.4).

A Gaussian mixture (10 components, full covariance, fixed seed) per space: the shared codes of
both sets, the salient codes of the targets. Saved as plain arrays (`.npz`, no pickle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

from neurocvae.contrastive.latents import code_columns, encode_roles
from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.datamodules import ContrastiveDataModule


def fit_mixture(codes: np.ndarray, *, components: int = 10, seed: int = 0) -> GaussianMixture:
    """A full-covariance mixture of at most `components` (no more than the codes allow)."""
    k = max(1, min(components, len(codes) // 2))
    return GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=1e-5).fit(codes)


def save_mixture(mixture: GaussianMixture, path: Path) -> None:
    np.savez(path, weights=mixture.weights_, means=mixture.means_,
             covariances=mixture.covariances_)


def sample_mixture(path: Path, n: int, *, seed: int = 0) -> np.ndarray:
    """[n, D] codes drawn from a saved mixture."""
    saved = np.load(path)
    rng = np.random.default_rng(seed)
    component = rng.choice(len(saved["weights"]), size=n, p=saved["weights"])
    return np.stack([rng.multivariate_normal(saved["means"][c], saved["covariances"][c])
                     for c in component])


def fit_densities(module: ContrastiveModule, datamodule: ContrastiveDataModule, folder: Path, *,
                  seed: int = 0) -> dict[str, Path]:
    """Fit and save `shared.npz` and `salient.npz` on the training split's codes."""
    folder.mkdir(parents=True, exist_ok=True)
    both = encode_roles(module, datamodule, "train")
    target = both[both["role"] == "target"]
    paths = {}
    for space, table in (("shared", both), ("salient", target)):
        paths[space] = folder / f"{space}.npz"
        save_mixture(fit_mixture(table[code_columns(table, space)].to_numpy(), seed=seed),
                     paths[space])
    return paths
