"""The evaluation figures: latent spaces in 2-D, training curves, example slices, salient maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurocvae.contrastive.latents import code_columns
from neurocvae.errors import InputError
from neurocvae.evaluation.decoded import Example
from neurocvae.figures import plt, save_figure

CURVE_PANELS = {  # panel title → metric names (logged as train/<name>_epoch and val/<name>)
    "reconstruction (α·MSE)": ("rec_target", "rec_background"),
    "prior (KL or ½‖code‖²)": ("kl_salient", "kl_shared_target", "kl_shared_background",
                               "code_salient", "code_shared_target", "code_shared_background"),
    "total-correlation term and discriminator loss": ("tc", "disc_loss"),
    "discriminator accuracy (0.5 = chance)": ("disc_acc", "disc_acc_joint", "disc_acc_product"),
    "schedules": ("beta", "gamma"),
    "penalties": ("background_salient", "shared_mmd", "decoder_reg"),
}


EMBEDDINGS = ("pca", "umap")


def check_embedding(method: str) -> None:
    """Refuse an unknown 2-D embedding, or UMAP without umap-learn, before any work."""
    if method not in EMBEDDINGS:
        raise InputError(f"embedding={method!r}: expected one of {', '.join(EMBEDDINGS)}")
    if method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise InputError("embedding=umap needs umap-learn: pip install 'neurocvae[umap]' "
                             "(or embedding=pca)") from None


def projection(codes: np.ndarray, method: str = "pca") -> tuple[np.ndarray, str]:
    """2-D embedding [n, 2] of codes [n, d] by `method` (`pca` or `umap`), and its name."""
    check_embedding(method)
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1]))), "codes"
    if method == "umap":
        from umap import UMAP
        return (UMAP(random_state=0, n_neighbors=min(15, len(codes) - 1)).fit_transform(codes),
                "UMAP")
    from sklearn.decomposition import PCA
    return PCA(2, random_state=0).fit_transform(codes), "PCA"


def plot_embedding(table: pd.DataFrame, path: Path, method: str = "pca") -> Path:
    """One panel per latent space: targets coloured by group, backgrounds in grey."""
    spaces = [s for s in ("salient", "shared") if code_columns(table, s)]
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4.2), squeeze=False)
    for ax, space in zip(axes[0], spaces, strict=True):
        xy, method_name = projection(table[code_columns(table, space)].to_numpy(), method)
        background = (table["role"] == "background").to_numpy()
        ax.scatter(*xy[background].T, s=10, c="lightgrey", label="background")
        for group in sorted(table.loc[~background, "group"].unique()):
            members = ~background & (table["group"] == group).to_numpy()
            ax.scatter(*xy[members].T, s=14, label=f"{group} (target)")
        ax.set_title(f"{space} space ({method_name} of the code means)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def epoch_curves(metrics_csv: Path) -> pd.DataFrame:
    """Per-epoch values of every logged metric (train `_epoch` means and val), index epoch."""
    log = pd.read_csv(metrics_csv)
    keep = [c for c in log.columns if c.endswith("_epoch") or c.startswith("val/")]
    curves = log[["epoch", *keep]].groupby("epoch").last()  # a resumed epoch: its last row
    curves.columns = [c.removesuffix("_epoch") for c in curves.columns]
    return curves.dropna(axis=1, how="all")


def plot_curves(metrics_csv: Path, path: Path) -> Path | None:
    """Every loss term, the β and γ schedules and the discriminator accuracy, per epoch."""
    curves = epoch_curves(metrics_csv)
    panels = {title: [c for name in names for c in (f"train/{name}", f"val/{name}")
                      if c in curves] for title, names in CURVE_PANELS.items()}
    panels = {title: columns for title, columns in panels.items() if columns}
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), squeeze=False,
                             sharex=True)
    for ax, (title, columns) in zip(axes[:, 0], panels.items(), strict=True):
        for column in columns:
            ax.plot(curves.index, curves[column], marker=".", label=column,
                    linestyle="--" if column.startswith("val/") else "-")
        if title.startswith("reconstruction") or title.startswith("prior"):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("epoch")
    return save_figure(fig, path)


def plot_examples(examples: list[Example], path: Path) -> Path:
    """Per example target: input, D([z, s]), D([z, 0]), (twin), and the disease maps, on the
    axial slice through the largest planted difference |x − twin| (without a twin: the largest
    model difference). Each map has its own symmetric colour range, printed in its corner."""
    with_twin = any(e.twin is not None for e in examples)
    titles = ["input x", "reconstruction D([z,s])", "counterfactual D([z,0])"]
    titles += ["healthy twin", "D([z,s]) − D([z,0])", "x − twin"] if with_twin \
        else ["D([z,s]) − D([z,0])"]
    fig, axes = plt.subplots(len(examples), len(titles), figsize=(2.3 * len(titles),
                             2.5 * len(examples)), squeeze=False)
    for row, e in zip(axes, examples, strict=True):
        images = [e.image, e.reconstruction, e.counterfactual]
        maps = [e.reconstruction - e.counterfactual]
        if with_twin:
            blank = np.zeros_like(e.image)
            images.append(blank if e.twin is None else e.twin)
            maps.append(blank if e.twin is None else e.image - e.twin)
        z = int(np.unravel_index(np.argmax(np.abs(maps[-1])), e.image.shape)[2])
        for ax, volume in zip(row, images, strict=False):
            ax.imshow(volume[:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=1)
        for ax, volume in zip(row[len(images):], maps, strict=True):
            limit = float(np.abs(volume[:, :, z]).max()) or 1.0
            ax.imshow(volume[:, :, z].T, cmap="RdBu_r", origin="lower", vmin=-limit, vmax=limit)
            ax.text(0.02, 0.02, f"±{limit:.3f}", transform=ax.transAxes, fontsize=7)
        row[0].set_ylabel(f"{e.subject_id}\n{e.group}, z={z}", fontsize=8)
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def plot_salient_map(nifti: Path, path: Path, title: str,
                     planted_mm: list[list[float]] | None = None) -> Path:
    """A salient-map NIfTI over nilearn's MNI152 template, values under 20 % of the peak hidden,
    cut through the first planted pattern centre (mm; all are yellow markers), else the peak."""
    from nilearn import datasets, image, plotting

    img = image.load_img(str(nifti))
    data = img.get_fdata()
    peak = np.unravel_index(np.argmax(np.abs(data)), data.shape)
    cut = planted_mm[0] if planted_mm else (img.affine @ np.array([*peak, 1]))[:3]
    limit = float(np.abs(data).max()) or 1.0
    display = plotting.plot_stat_map(img, bg_img=datasets.load_mni152_template(resolution=2),
                                     cut_coords=cut, threshold=0.2 * limit, vmax=limit,
                                     title=title, colorbar=True, draw_cross=False,
                                     black_bg=False, annotate=True)
    if planted_mm:
        display.add_markers(planted_mm, marker_color="yellow", marker_size=60)
    display.savefig(str(path), dpi=110)
    display.close()
    return path
