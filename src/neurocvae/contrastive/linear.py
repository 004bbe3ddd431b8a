"""Linear solutions that start the additive model: contrastive PCA (Abid et al. 2018) for the
salient space, PCA of every training scan outside it for the shared space, least squares for
the decoder's images.

With them the untrained `AdditiveDecoder` nets are already a linear contrastive model:

    μ_z(x) = P_z (x − m_bg) / σ_z     (P_z the top principal axes of all scans, ⟂ P_s;
                                       a target's less μ_s(x)·K, see below)
    μ_s(x) = P_s (x − m_bg) / σ_s     (P_s the top axes of M_target − α·C_background)
    D([z ‖ s]) = T + L_z z + L_s s    (L_z = σ_z P_z; L_s by least squares over the targets,
                                       of what L_z z leaves of them)

M_target is the targets' second moment about the backgrounds' mean m_bg (a salient code of 0
means "like a healthy scan", as backgrounds are decoded from s = 0), C_background their
covariance. P_s is sought outside the backgrounds' top principal axes (as many as the shared
space has dimensions): what the shared space explains in healthy scans is not salient, and the
large variation there (head size, age) would otherwise swamp the small target-only patterns.
Only the leading axes whose contrast recurs in scans they were not fitted to are kept
(`replicated_components`); the other salient dimensions start silent. The shared axes are found
in the complement of the salient ones, so that the shared code does not see the target-only
directions, and from targets and backgrounds alike. σ scales the codes to unit variance over
the training scans. The encoders keep P as a fixed projection (`LinearCode`); training then
adapts the convolutions and the decoder.

Volumes [n, V] are the model inputs average-pooled to a projection's grid. P_s lives on the
coarse `projection_voxels` grid (fewer voxels: less noise in contrastive PCA). With nets whose
`shared_projection` is "linear" (or whose two grids coincide), P_z lives on the grid of the
decoder's shared linear images and those images are its own axes, as in PCA: a scan is decoded
as its projection onto them, however far it lies from the training scans, and detail finer than
the coarse grid is kept. Salient images on a coarser grid (`salient_linear_voxels`) are fitted
on the shared images' grid and block-averaged. On that grid P_z would also read the salient
patterns' own finer detail, which P_s cannot hold; with `outside_detail` P_z is sought outside
it too (`salient_detail`). (With a coarse P_z, L_z and L_s are fitted jointly by least
squares instead; its images then extrapolate the coarse codes' regression on the fine images,
which fails for scans unlike any training scan, such as a 3-SD small head.)

A local pattern also moves a scan along directions healthy scans vary in, where P_z sees it
and P_s, outside them, does not. With nets that have a `pattern_share`, a target's shared code
is μ_z(x) − μ_s(x)·K, K [S, Z] what one unit of each salient code moves the shared code by.
K comes from each salient axis made local again: contrastive PCA sees only the pattern's part
outside the healthy axes, spread over the whole image, and adding back the share along them
that makes the image sparsest (least L1 norm) restores the local pattern
(`sparsest_completion`; read on P_z's grid as piecewise constant, `regrid`). When P_z's grid is
finer, each pattern also gets its detail finer than the coarse grid, fitted to the targets
where the pattern lies (`pattern_detail`): P_z reads that detail too. Regressing the
targets' shared codes on their salient codes instead would also pick up the healthy variation
the salient codes follow (head size, groups that age faster). The salient images are then
fitted with the targets' corrected codes, so that L_s holds the whole pattern.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from neurocvae.contrastive.nets import (
    AdditiveDecoder,
    ContrastiveNets,
    Encoder,
    coarse_pool,
    coarse_shape,
)
from neurocvae.data.datamodules import ContrastiveDataModule

log = logging.getLogger(__name__)
START_VARIANCE = 0.01  # posterior variance of the initialised codes (their spread is 1)
REPLICATION = 0.1  # share of the leading salient axis's held-out contrast an axis must reach
SHARE_DETAIL = 0.05  # where a pattern's finer detail is fitted: above this share of its peak


def contrastive_components(target: np.ndarray, background: np.ndarray, components: int,
                           alpha: float, *, about: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The top `components` eigenvalues [k] and eigenvectors [V, k] of C_target − α·C_background
    (covariances of the rows [n, V]; with `about` [V], the targets' second moment about that
    point instead of their covariance, so that what sets all targets apart from it counts too).
    Every eigenvector with a non-zero eigenvalue lies in the span of the centred rows, so the
    problem is solved exactly in that (n_t + n_b)-dimensional basis."""
    t = target - (target.mean(0) if about is None else about)
    b = background - background.mean(0)
    basis, _ = np.linalg.qr(np.concatenate([t, b]).T)  # [V, r], orthonormal columns
    tq, bq = t @ basis, b @ basis
    contrast = tq.T @ tq / len(t) - alpha * (bq.T @ bq / len(b))
    values, vectors = np.linalg.eigh(contrast)
    order = np.argsort(values)[::-1][:components]
    return values[order], basis @ vectors[:, order]


def contrastive_pca(target: np.ndarray, background: np.ndarray, components: int,
                    alpha: float) -> np.ndarray:
    """The top `components` contrastive axes [V, k] (`contrastive_components`)."""
    return contrastive_components(target, background, components, alpha)[1]


def contrast_along(axes: np.ndarray, target: np.ndarray, background: np.ndarray, alpha: float,
                   *, about: np.ndarray) -> np.ndarray:
    """[k] the contrast aᵀ(M_target − α·C_background)a of each axis a (columns of [V, k]) in the
    rows given, M_target the targets' second moment about `about`."""
    target_moment = (((target - about) @ axes) ** 2).mean(0)
    background_variance = (((background - background.mean(0)) @ axes) ** 2).mean(0)
    return target_moment - alpha * background_variance


def split_halves(target: np.ndarray, background: np.ndarray, splits: int, seed: int
                 ) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """The targets and the backgrounds split in random halves `splits` times, each half in turn
    the fitting one: 2·splits pairs ((fitting targets, backgrounds), (held-out ones))."""
    rng = np.random.default_rng(seed)
    for _ in range(splits):
        target_order = rng.permutation(len(target))
        background_order = rng.permutation(len(background))
        halves = [(target[target_order[i::2]], background[background_order[i::2]]) for i in (0, 1)]
        yield halves[0], halves[1]
        yield halves[1], halves[0]


def split_half_contrasts(target: np.ndarray, background: np.ndarray, components: int,
                         alpha: float, *, splits: int = 5, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The fitted eigenvalues and held-out contrasts [2·splits, k] of the leading `components`
    contrastive axes (`contrastive_components` about the fitting half's background mean), over
    `split_halves`: each half fits the axes in turn and the other half measures their contrast
    (`contrast_along`, the held-out targets about the held-out backgrounds' own mean: about the
    fitting half's, the direction of that mean's own noise would recur)."""
    fitted, held_out = [], []
    for (fit_target, fit_background), (test_target, test_background) in split_halves(
            target, background, splits, seed):
        values, axes = contrastive_components(fit_target, fit_background, components, alpha,
                                              about=fit_background.mean(0))
        fitted.append(values)
        held_out.append(contrast_along(axes, test_target, test_background, alpha,
                                       about=test_background.mean(0)))
    return np.array(fitted), np.array(held_out)


def replicated_components(target: np.ndarray, background: np.ndarray, components: int,
                          alpha: float, *, splits: int = 5, seed: int = 0) -> int:
    """How many leading contrastive axes (of `contrastive_components` about the backgrounds'
    mean) recur in scans they were not fitted to (`split_half_contrasts`). Rank i replicates
    when its median held-out contrast is positive and at least REPLICATION × the leading
    axis's. An axis fitted to sampling noise, or to one unusual scan, has a held-out contrast
    near (1 − α)·its variance, below 0. The share of the leading axis leaves the small
    target-only variation beside strong patterns (how a pattern planted in millimetres varies
    with head size) to start silent. Sets of fewer than 4 scans replicate nothing."""
    if min(len(target), len(background)) < 4:
        return 0
    _, held_out = split_half_contrasts(target, background, components, alpha, splits=splits,
                                       seed=seed)
    median = np.median(held_out, 0)
    replicates = (median > 0) & (median >= REPLICATION * median[0])
    return len(replicates) if replicates.all() else int(np.argmin(replicates))


def replicated_salient_axes(target: np.ndarray, background: np.ndarray, shared_dim: int,
                            salient_dim: int, contrast: float
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The salient axes [V, k ≤ salient_dim] of the training rows (targets [n_t, V],
    backgrounds [n_b, V]) and the backgrounds' top `shared_dim` principal axes [V, h] they are
    sought outside: the leading contrastive axes (α = `contrast`, about the backgrounds' mean)
    that recur in held-out halves (`replicated_components`); the other salient dimensions
    start silent."""
    centre = background.mean(0)
    background_axes = principal_axes(background, shared_dim)
    target_rest = outside(target, background_axes, centre)
    background_rest = outside(background, background_axes, centre)
    values, axes = contrastive_components(target_rest, background_rest, salient_dim, contrast,
                                          about=centre)
    kept = replicated_components(target_rest, background_rest, salient_dim, contrast)
    log.info("contrastive PCA outside the backgrounds' top %d principal axes: %d of the top %d "
             "axes (eigenvalues %s) recur in held-out halves of the scans",
             background_axes.shape[1], kept, len(values), ", ".join(f"{v:.3g}" for v in values[:4]))
    return axes[:, :kept], background_axes


def outside(rows: np.ndarray, axes: np.ndarray, centre: np.ndarray | float) -> np.ndarray:
    """The rows [n, V] with their components along the orthonormal `axes` [V, k] about `centre`
    removed."""
    return rows - (rows - centre) @ axes @ axes.T


def sparsest_completion(axis: np.ndarray, healthy_axes: np.ndarray, *, p: float = 1.0,
                        iterations: int = 100) -> np.ndarray:
    """The image [V] of least L1 norm (Lp quasi-norm with `p` < 1) that equals `axis` [V]
    outside the orthonormal `healthy_axes` [V, h]: axis + H·c, c by iteratively reweighted
    least squares. A local pattern seen only outside the directions healthy scans vary in (as
    contrastive PCA sees it) is spread over the whole image; adding back its share along those
    directions makes it local again, and the sparsest completion finds that share."""
    c = np.zeros(healthy_axes.shape[1])
    for _ in range(iterations):
        residual = np.abs(axis + healthy_axes @ c)
        weights = 1 / np.maximum(residual, 1e-3 * residual.max()) ** (2 - p)
        gram = healthy_axes.T @ (weights[:, None] * healthy_axes)
        c = -np.linalg.solve(gram, healthy_axes.T @ (weights * axis))
    return axis + healthy_axes @ c


def salient_patterns(salient_weights: np.ndarray, healthy_axes: np.ndarray, *, p: float = 1.0
                     ) -> np.ndarray:
    """[k, V]: what one unit of each salient code (weights [k, V], each outside `healthy_axes`
    [V, h]) adds to a scan that carries its pattern, the pattern taken as the axis's
    `sparsest_completion` (in the Lp quasi-norm with `p` < 1)."""
    patterns = np.zeros_like(salient_weights)
    for j, weights in enumerate(salient_weights):
        pattern = sparsest_completion(weights / np.linalg.norm(weights), healthy_axes, p=p)
        patterns[j] = pattern / (weights @ pattern)
    return patterns


def pattern_detail(patterns: np.ndarray, rest: np.ndarray, codes: np.ndarray, support: float,
                   input_shape: Sequence[int], strides: tuple[int, int], ridge: float
                   ) -> np.ndarray:
    """[k, V] each salient pattern's detail finer than the coarse grid: the least-squares
    images of `rest` [n, V] (the targets outside the healthy axes, `healthy_rest`) on their
    salient `codes` [n, k], each fitted only where its pattern [k, V] (on the same, fine grid)
    exceeds `support` × its peak, less their block averages on the coarse grid (by
    `strides[0]`). Elsewhere the targets' own healthy variation would enter."""
    images = np.zeros_like(patterns)
    for j, pattern in enumerate(patterns):
        inside = np.abs(pattern) > support * np.abs(pattern).max()
        images[j, inside] = least_squares(codes, rest[:, inside], ridge)[j]
    return finer_than_coarse(images, input_shape, strides)


def regrid(images: np.ndarray, input_shape: Sequence[int], stride: int, new_stride: int
           ) -> np.ndarray:
    """Images [k, V] on the grid `coarse_pool` makes of `input_shape` with `stride`, on the
    grid of `new_stride` [k, V']: each voxel read as constant over the input voxels it pools,
    then pooled as the scans are. To a grid whose stride divides `stride`, the image piecewise
    constant on the same blocks; to a coarser one, its block averages. (The grids' own shapes
    do not say where their blocks lie: ⌈n / stride⌉ cells of `stride` input voxels start at
    the first voxel and the last is cut short, which stretching one grid onto the other
    misplaces by up to a cell.)"""
    if stride == new_stride:
        return images
    new_voxels = math.prod(coarse_shape(input_shape, new_stride))
    if not len(images):
        return np.zeros((0, new_voxels))
    volumes = torch.from_numpy(images).reshape(len(images), 1, *coarse_shape(input_shape, stride))
    for axis in (2, 3, 4):
        volumes = volumes.repeat_interleave(stride, axis)
    x, y, z = input_shape
    return coarse_pool(volumes[..., :x, :y, :z], new_stride).flatten(1).numpy()


def block_average(images: np.ndarray, shape: Sequence[int], new_shape: Sequence[int]
                  ) -> np.ndarray:
    """Images [k, V] on a grid of `shape` averaged over blocks to the coarser `new_shape`
    [k, V'] (adaptive average pooling: the cells `LinearImage` stretches back over `shape`)."""
    if tuple(shape) == tuple(new_shape):
        return images
    if not len(images):
        return np.zeros((0, math.prod(new_shape)))
    volumes = torch.from_numpy(images).reshape(len(images), 1, *shape)
    return torch.nn.functional.adaptive_avg_pool3d(volumes, tuple(new_shape)).flatten(1).numpy()


def healthy_rest(target: np.ndarray, background: np.ndarray, healthy: int) -> np.ndarray:
    """The targets [n_t, V] about the backgrounds' [n_b, V] mean, outside their top `healthy`
    principal axes."""
    centre = background.mean(0)
    return outside(target, principal_axes(background, healthy), centre) - centre


def finer_than_coarse(images: np.ndarray, input_shape: Sequence[int],
                      strides: tuple[int, int]) -> np.ndarray:
    """Images [k, V] on the fine grid (`coarse_pool` of `input_shape` by `strides[1]`) less
    their block averages on the coarse grid (by `strides[0]`)."""
    coarse, fine = strides
    return images - regrid(regrid(images, input_shape, fine, coarse), input_shape, coarse, fine)


def salient_detail(rest: np.ndarray, salient: np.ndarray, input_shape: Sequence[int],
                   strides: tuple[int, int], ridge: float) -> np.ndarray:
    """[k, V] what each salient code [n_t, k] predicts of `rest` [n_t, V] (the targets on the
    fine grid outside the backgrounds' top principal axes, `healthy_rest`), less its block
    averages on the coarse grid: the salient patterns' detail that a projection on the coarse
    grid cannot see (least squares with `ridge`)."""
    return finer_than_coarse(least_squares(salient, rest, ridge), input_shape, strides)


def principal_axes(rows: np.ndarray, components: int) -> np.ndarray:
    """The top `components` principal axes [V, k] of the rows [n, V] (k ≤ n − 1)."""
    centred = rows - rows.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:min(components, len(rows) - 1)].T


@torch.no_grad()
def training_volumes(datamodule: ContrastiveDataModule, role: str, strides: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training `role` scans pooled by each of `strides` ([n, V₁], [n, V₂], float64) and
    their full-resolution mean [X, Y, Z]."""
    pooled: tuple[list, list] = ([], [])
    total, n = 0.0, 0
    for batch in datamodule.input_batches("train", role):
        images = batch["image"]
        for rows, stride in zip(pooled, strides, strict=True):
            rows.append(coarse_pool(images, stride).flatten(1).double().numpy())
        total = total + images[:, 0].double().sum(0).numpy()
        n += len(images)
    return np.concatenate(pooled[0]), np.concatenate(pooled[1]), total / n


def least_squares(codes: np.ndarray, rows: np.ndarray, ridge: float) -> np.ndarray:
    """The images W [d, V] minimising ‖rows − codes·W‖² + ridge·n·‖W‖² (codes [n, d])."""
    gram = codes.T @ codes + ridge * len(codes) * np.eye(codes.shape[1])
    return np.linalg.solve(gram, codes.T @ rows)


def _set_encoder(encoder: Encoder, axes: np.ndarray, centre: np.ndarray,
                 scale: np.ndarray) -> None:
    """μ = axesᵀ (x − centre) / scale through the encoder's fixed projection; the learnt head
    starts at zero so the code is exactly the projection. A Gaussian encoder's posterior
    variance starts at START_VARIANCE on these dimensions (a code that starts as noisy as its
    spread would teach the decoder images shrunk by half) and at the prior's 1 on the others."""
    dim = axes.shape[1]
    weight = np.zeros(tuple(encoder.linear.weight.shape))
    weight[:dim] = (axes / scale).T
    encoder.linear.weight.copy_(torch.from_numpy(weight))
    bias = np.zeros(encoder.linear.bias.shape[0])
    bias[:dim] = -(centre @ axes) / scale
    encoder.linear.bias.copy_(torch.from_numpy(bias))
    torch.nn.init.zeros_(encoder.mu.weight)
    torch.nn.init.zeros_(encoder.mu.bias)
    if encoder.logvar is not None:
        torch.nn.init.zeros_(encoder.logvar.weight)
        torch.nn.init.zeros_(encoder.logvar.bias)
        encoder.logvar.bias[:dim] = math.log(START_VARIANCE)


def _codes(rows: np.ndarray, axes: np.ndarray, centre: np.ndarray | float, scale: np.ndarray,
           dim: int) -> np.ndarray:
    """[n, dim] codes of the rows through the projection (zero beyond the axes found)."""
    codes = np.zeros((len(rows), dim))
    codes[:, :axes.shape[1]] = (rows - centre) @ axes / scale
    return codes


@torch.no_grad()
def initialise_linear(nets: ContrastiveNets, datamodule: ContrastiveDataModule, *,
                      projections: bool = True, contrast: float = 10.0,
                      ridge: float = 1e-3, outside_detail: bool = True,
                      share_detail: float | None = SHARE_DETAIL) -> None:
    """Set the template (the training backgrounds' mean) of `nets` (an `AdditiveDecoder`) and,
    with `projections` (encoders with a `LinearCode`), the encoders' projections and the
    decoder's linear images, from the training split; see the module docstring. `contrast` is
    cPCA's α; `ridge` regularises the least squares; `outside_detail` keeps a shared projection
    on the decoder's grid outside the salient patterns' finer detail too; `share_detail` (None:
    the coarse patterns alone) counts each pattern's finer detail in the pattern share, fitted
    where the pattern exceeds that share of its peak (`pattern_detail`)."""
    decoder = nets.decoder
    if not isinstance(decoder, AdditiveDecoder):
        raise TypeError("initialise_linear needs nets with the additive decoder")
    projections = projections and nets.projection_stride is not None
    strides = (nets.projection_stride or 1, decoder.shared_linear.stride)
    background, background_images, mean = training_volumes(datamodule, "background", strides)
    decoder.initialise_template(torch.from_numpy(mean).float())
    if not projections:
        return
    target, target_images, _ = training_volumes(datamodule, "target", strides)
    centre, image_centre = background.mean(0), background_images.mean(0)
    salient_axes = np.zeros((len(centre), 0))
    if nets.salient_dim:
        salient_axes, background_axes = replicated_salient_axes(
            target, background, nets.shared_dim, nets.salient_dim, contrast)
    shared_on_linear_grid = bool(nets.shared_dim
                                 and nets.shared_encoder.linear.stride == strides[1])
    n_target = len(target)
    images = np.concatenate([target_images, background_images]) - image_centre
    if shared_on_linear_grid:  # the shared projection reads the decoder's grid
        shared_rows, shared_centre, shared_stride = images, image_centre, strides[1]
    else:  # about its centre, as `images`
        shared_rows = np.concatenate([target, background]) - centre
        shared_centre, shared_stride = centre, strides[0]
    codes = np.zeros((len(images), nets.shared_dim + nets.salient_dim))
    if nets.salient_dim:  # backgrounds keep salient codes of 0, as in training
        scale = ((target - centre) @ salient_axes).std(0) + 1e-8
        _set_encoder(nets.salient_encoder, salient_axes, centre, scale)
        codes[:n_target, nets.shared_dim:] = _codes(target, salient_axes, centre, scale,
                                                    nets.salient_dim)
    salient_seen = regrid(salient_axes.T, nets.input_shape, strides[0], shared_stride).T
    kept_codes = codes[:n_target, nets.shared_dim:nets.shared_dim + salient_axes.shape[1]]
    finer = bool(shared_on_linear_grid and salient_axes.shape[1] and strides[0] != strides[1])
    if finer:  # the shared projection's grid is finer than the salient one
        rest = healthy_rest(target_images, background_images, nets.shared_dim)
    if finer and outside_detail:
        detail = salient_detail(rest, kept_codes, nets.input_shape, strides, ridge)
        salient_seen = np.concatenate([salient_seen, detail.T], axis=1)
    salient_seen = np.linalg.qr(salient_seen)[0]
    if nets.shared_dim:  # every training scan's principal axes, orthogonal to the salient ones
        shared_axes = principal_axes(outside(shared_rows, salient_seen, 0.0),
                                     nets.shared_dim)
        shared_scale = (shared_rows @ shared_axes).std(0) + 1e-8
        _set_encoder(nets.shared_encoder, shared_axes, shared_centre, shared_scale)
        codes[:, :nets.shared_dim] = _codes(shared_rows, shared_axes, 0.0,
                                            shared_scale, nets.shared_dim)
    if nets.pattern_share is not None and salient_axes.shape[1]:
        patterns = regrid(salient_patterns(
            nets.salient_encoder.linear.weight[:salient_axes.shape[1]].double().numpy(),
            background_axes), nets.input_shape, strides[0], shared_stride)
        if finer and share_detail is not None:
            patterns = patterns + pattern_detail(patterns, rest, kept_codes, share_detail,
                                                 nets.input_shape, strides, ridge)
        share = patterns @ nets.shared_encoder.linear.weight.double().numpy().T
        nets.pattern_share[:len(share)] = torch.from_numpy(share)
        codes[:n_target, :nets.shared_dim] -= (codes[:n_target, nets.shared_dim:]
                                               @ nets.pattern_share.double().numpy())
        log.info("pattern share: the salient patterns move the shared code by %s per unit",
                 ", ".join(f"{n:.3g}" for n in np.linalg.norm(share, axis=1)))
    shared, salient = codes[:, :nets.shared_dim], codes[:, nets.shared_dim:]
    if shared_on_linear_grid:  # the shared images are the projection's axes, as PCA's
        shared_images = np.zeros((nets.shared_dim, images.shape[1]))
        shared_images[:shared_axes.shape[1]] = (shared_axes * shared_scale).T
        salient_images = (least_squares(salient[:n_target], images[:n_target]
                                        - shared[:n_target] @ shared_images, ridge)
                          if nets.salient_dim else np.zeros((0, images.shape[1])))
    else:  # both by least squares, jointly
        fitted = least_squares(codes, images, ridge)
        shared_images, salient_images = fitted[:nets.shared_dim], fitted[nets.shared_dim:]
    salient_images = block_average(salient_images, coarse_shape(nets.input_shape, strides[1]),
                                   decoder.salient_linear.coarse)
    decoder.shared_linear.set_images(torch.from_numpy(shared_images).float())
    decoder.salient_linear.set_images(torch.from_numpy(salient_images).float())
    log.info("linear start from %d targets and %d backgrounds: %d salient and %d shared axes",
             n_target, len(background), salient_axes.shape[1],
             min(nets.shared_dim, len(images) - 1))
