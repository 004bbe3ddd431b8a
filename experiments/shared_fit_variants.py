"""Ways of fitting the linear start's shared space, compared in numpy on one run's splits.

    .venv/bin/python experiments/shared_fit_variants.py RUN

RUN: a `neurocvae-train` run folder of the default model on a grid where the decoder's linear
images have the input's resolution, as the quick preset's 4 mm (its data and grids are used;
its weights are not). The salient axes are the start's (contrastive PCA on the coarse projection
grid, `contrastive/linear.py`); the shared space is fitted in these ways, each untrained:

- coarse: projection on the coarse grid, shared and salient images by joint least squares
  (`arch.shared_projection=coarse`);
- coarse, inverse: the same images, the shared code the least-squares inverse of the shared
  images (of what the salient images leave of a target);
- fine, joint: the projection on the decoder's grid, images by joint least squares;
- fine, axes: the projection on the decoder's grid, its axes the shared images, the salient
  images fitted to what they leave of the targets;
- fine, axes, outside G: as fine, axes, the shared axes also outside G, what the salient codes
  predict of the targets on the fine grid outside the backgrounds' top principal axes;
- fine, axes, fine K: as fine, axes, K from the sparsest completion of G on the fine grid;
- fine, axes, outside G's detail: as fine, axes, outside G less its block averages on the
  coarse grid (`linear.salient_detail`; the default: `arch.shared_projection=linear`,
  `initialise.outside_detail=true`);
- fine, axes, K + G's detail's share: as fine, axes, K plus the shared code of G's detail;
- fine, axes, targets outside G's detail: as fine, axes, the targets alone read outside G's
  detail.

Prints, as a markdown table, the test split's variance explained (targets from D([z, s]),
backgrounds from D([z, 0]), about the training scans' mean, as the benchmark), the largest
background residual, the shared code's target-vs-background AUROC and the norms of the
pattern share K, beside a 10-component PCA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from neurocvae.contrastive import linear
from neurocvae.contrastive.nets import coarse_pool, linear_stride
from neurocvae.evaluation.evaluate import run_config, run_datamodule
from neurocvae.evaluation.metrics import group_auroc

SHARED, SALIENT, CONTRAST, RIDGE = 32, 8, 10.0, 1e-3


def volumes(run: Path) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """Full-grid scans [n, V] (float64) by split and role, and the grid's shape."""
    datamodule = run_datamodule(run_config(run))
    scans = {}
    for split in ("train", "test"):
        for role in ("target", "background"):
            batches = [b["image"] for b in datamodule.input_batches(split, role)]
            scans[f"{split}_{role}"] = torch.cat(batches).flatten(1).double().numpy()
    return scans, tuple(batches[0].shape[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    full, shape = volumes(args.run)
    arch = run_config(args.run).arch
    if linear_stride(shape, arch.linear_voxels) != 1:
        raise SystemExit(f"{args.run}: the decoder's linear images are coarser than the input "
                         "grid; this comparison works on grids up to arch.linear_voxels voxels")
    stride = linear_stride(shape, arch.projection_voxels)
    pooled = {k: coarse_pool(torch.from_numpy(v).view(-1, 1, *shape), stride).flatten(1).numpy()
              for k, v in full.items()}
    target, background = pooled["train_target"], pooled["train_background"]
    centre = background.mean(0)
    healthy = linear.principal_axes(background, SHARED)
    rest_t, rest_b = (linear.outside(x, healthy, centre) for x in (target, background))
    salient_axes = linear.contrastive_components(rest_t, rest_b, SALIENT, CONTRAST,
                                                 about=centre)[1]
    salient_axes = salient_axes[:, :linear.replicated_components(rest_t, rest_b, SALIENT,
                                                                 CONTRAST)]
    salient_weights = (salient_axes / ((target - centre) @ salient_axes).std(0)).T

    salient = {k: (v - centre) @ salient_weights.T * k.endswith("target")
               for k, v in pooled.items()}  # backgrounds: s = 0

    template = full["train_background"].mean(0)
    train = np.concatenate([full["train_target"], full["train_background"]])
    test = np.concatenate([full["test_target"], full["test_background"]])
    pca = PCA(10, random_state=0).fit(train)
    total = ((test - pca.mean_) ** 2).sum()
    is_target = np.arange(len(test)) < len(full["test_target"])
    pca_residual = ((test - pca.inverse_transform(pca.transform(test))) ** 2).sum()
    print(f"PCA, 10 components: VE {1 - pca_residual / total:.4f}\n")

    healthy_fine = linear.principal_axes(full["train_background"], SHARED)
    rest = linear.healthy_rest(full["train_target"], full["train_background"], SHARED)
    salient_fine = linear.least_squares(salient["train_target"], rest, RIDGE)  # G [k, V]
    detail = linear.salient_detail(rest, salient["train_target"], shape, (stride, 1), RIDGE)
    print("| shared space | VE | largest background residual | shared AUROC | ‖K‖ |")
    print("|---|---|---|---|---|")
    for name, fine, fit in (("coarse", False, "joint"), ("coarse, inverse", False, "inverse"),
                            ("fine, joint", True, "joint"), ("fine, axes", True, "axes"),
                            ("fine, axes, outside G", True, "axes G"),
                            ("fine, axes, fine K", True, "axes K"),
                            ("fine, axes, outside G's detail", True, "axes detail"),
                            ("fine, axes, K + G's detail's share", True, "axes K detail"),
                            ("fine, axes, targets outside G's detail", True, "axes targets")):
        rows = {k: full[k] if fine else pooled[k] for k in full}
        row_centre = template if fine else centre
        to = 1 if fine else stride
        seen = linear.regrid(salient_axes.T, shape, stride, to).T
        if fit == "axes G":
            seen = salient_fine.T
        if fit == "axes detail":
            seen = np.c_[seen, detail.T]
        seen = np.linalg.qr(seen)[0]
        both = np.concatenate([rows["train_target"], rows["train_background"]])
        axes = linear.principal_axes(linear.outside(both, seen, row_centre), SHARED)
        scale = ((both - row_centre) @ axes).std(0)
        weights = (axes / scale).T
        share = linear.regrid(linear.salient_patterns(salient_weights, healthy), shape, stride,
                              to) @ weights.T
        if fit == "axes K detail":
            share = share + detail @ weights.T
        if fit == "axes K":
            share = np.array([weights @ linear.sparsest_completion(g, healthy_fine)
                              for g in salient_fine])
        shared = {k: (v - row_centre) @ weights.T - salient[k] @ share for k, v in rows.items()}
        if fit == "axes targets":
            hidden = np.linalg.qr(detail.T)[0]
            shared = {k: v - ((rows[k] - row_centre) @ hidden @ hidden.T @ weights.T
                              if k.endswith("target") else 0) for k, v in shared.items()}
        codes_z = np.concatenate([shared["train_target"], shared["train_background"]])
        codes_s = np.concatenate([salient["train_target"], salient["train_background"]])
        images = train - template
        n_target = len(full["train_target"])
        if fit.startswith("axes"):
            shared_images = (axes * scale).T
            salient_images = linear.least_squares(
                codes_s[:n_target], images[:n_target] - codes_z[:n_target] @ shared_images, RIDGE)
        else:
            fitted = linear.least_squares(np.c_[codes_z, codes_s], images, RIDGE)
            shared_images, salient_images = fitted[:SHARED], fitted[SHARED:]
        decoded, codes = [], []
        for role in ("target", "background"):
            s = salient[f"test_{role}"]
            z = (np.linalg.lstsq(shared_images.T, (full[f"test_{role}"] - template
                                                   - s @ salient_images).T, rcond=None)[0].T
                 if fit == "inverse" else shared[f"test_{role}"])
            decoded.append(template + z @ shared_images + s @ salient_images)
            codes.append(z)
        residual = ((test - np.concatenate(decoded)) ** 2).sum(1)
        worst = residual[~is_target].max()
        auroc = group_auroc(np.concatenate(codes), is_target)
        norms = ", ".join(f"{n:.2f}" for n in np.linalg.norm(share, axis=1))
        print(f"| {name} | {1 - residual.sum() / total:.4f} | {worst:.0f} | {auroc:.3f} | "
              f"{norms} |")


if __name__ == "__main__":
    main()
