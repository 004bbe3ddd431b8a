"""What a trained model's decoder says about a split: variance explained, salient maps, and
the healthy counterfactual D([z, 0]) against planted healthy twins (docs/science.md §7).

One streaming pass over the split, so memory does not grow with the number of scans: volumes
are float32 [X, Y, Z] in the model's input space.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.datamodules import ContrastiveDataModule
from neurocvae.data.datasets import model_inputs
from neurocvae.evaluation import metrics
from neurocvae.evaluation.baselines import pooled

BRAIN = 0.02  # input intensity above which a twin voxel counts as brain (for map correlation)


@dataclass
class Example:
    """One target scan's volumes, for the slice figure."""

    subject_id: str
    group: str
    image: np.ndarray
    reconstruction: np.ndarray  # D([z, s])
    counterfactual: np.ndarray  # D([z, 0])
    twin: np.ndarray | None = None


@dataclass
class Decoded:
    variance_explained: float
    salient_maps: dict[str, np.ndarray]  # group → mean of D([z, s]) − D([z, 0]) over its targets
    examples: list[Example] = field(default_factory=list)
    twin_error: float = float("nan")
    counterfactual_error: float = float("nan")
    disease_gain: float = float("nan")
    map_correlation: float = float("nan")
    twins: int = 0  # targets with a planted healthy twin

    def scores(self) -> dict[str, float | int]:
        return {"variance_explained": self.variance_explained, "twin_error": self.twin_error,
                "counterfactual_error": self.counterfactual_error,
                "disease_gain": self.disease_gain,
                "disease_map_correlation": self.map_correlation, "twins": self.twins}


def _numpy(volumes: torch.Tensor) -> np.ndarray:
    return volumes[:, 0].float().cpu().numpy()


@torch.no_grad()
def mean_image(datamodule: ContrastiveDataModule, split: str = "train") -> np.ndarray:
    """Voxelwise mean of every model input (targets and backgrounds) of `split`: [X, Y, Z]."""
    total, n = None, 0
    for role in ("target", "background"):
        for batch in datamodule.input_batches(split, role):
            images = batch["image"][:, 0].double()
            total = images.sum(0) if total is None else total + images.sum(0)
            n += len(images)
    return (total / n).float().numpy()


def twin_input(datamodule: ContrastiveDataModule, path: str) -> np.ndarray:
    """A twin volume preprocessed and scaled exactly like the model's inputs: [X, Y, Z]."""
    image = datamodule.preprocessing(path)[None]
    return _numpy(model_inputs({"image": image}, datamodule.minmax)["image"])[0]


def twin_batch(datamodule: ContrastiveDataModule, paths: Sequence[str]) -> torch.Tensor:
    """Twin volumes (`twin_input`) as one batch [B, 1, X, Y, Z], float32."""
    return torch.stack([torch.from_numpy(twin_input(datamodule, path))[None].float()
                        for path in paths])


@torch.no_grad()
def decode_split(module: ContrastiveModule, datamodule: ContrastiveDataModule, split: str, *,
                 reference: np.ndarray, twins: dict[str, str] | None = None,
                 examples: int = 3, ve_pooling: int = 1) -> Decoded:
    """Decode every scan of `split` at its code means. `reference` is the training mean image;
    variance explained is measured about it on volumes average-pooled by `ve_pooling` (the
    grid PCA's is measured on, `baselines.ve_pooling`). `twins` maps target subject ids to
    healthy-twin volume paths."""
    module.eval()
    twins = twins or {}
    residual = total = 0.0
    map_sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    shown: list[Example] = []
    mean = pooled(torch.from_numpy(reference)[None, None], ve_pooling)
    per_twin: dict[str, list[float]] = defaultdict(list)
    for role in ("target", "background"):
        groups = datamodule.splits[split][role].set_index("subject_id")["group"]
        for batch in datamodule.input_batches(split, role):
            images = batch["image"].to(module.device)
            shared, salient = module.latent_representation(images, role)
            counterfactual = _numpy(module.nets.decode(shared))
            full = _numpy(module.nets.decode(shared, salient)) if role == "target" \
                else counterfactual
            x = _numpy(images)
            on_grid = pooled(torch.from_numpy(x)[:, None], ve_pooling)
            residual += float(torch.sum((on_grid - pooled(torch.from_numpy(full)[:, None],
                                                          ve_pooling)).double() ** 2))
            total += float(torch.sum((on_grid - mean).double() ** 2))
            if role == "background":
                continue
            for i, subject in enumerate(batch["subject_id"]):
                group = groups[subject]
                difference = full[i] - counterfactual[i]
                map_sums[group] = map_sums.get(group, 0) + difference
                counts[group] += 1
                twin = twin_input(datamodule, twins[subject]) if subject in twins else None
                if twin is not None:
                    twin_codes = module.latent_representation(
                        torch.from_numpy(twin)[None, None].to(module.device))
                    twin_full = _numpy(module.nets.decode(*twin_codes))[0]
                    per_twin["twin_error"].append(
                        metrics.twin_error(counterfactual[i], x[i], twin))
                    per_twin["counterfactual_error"].append(metrics.counterfactual_error(
                        counterfactual[i], twin, full[i], x[i]))
                    per_twin["disease_gain"].append(
                        metrics.disease_gain(full[i], twin_full, x[i], twin))
                    per_twin["map_correlation"].append(
                        metrics.map_correlation(difference, x[i] - twin, twin > BRAIN))
                if len(shown) < examples and group not in {e.group for e in shown}:
                    shown.append(Example(subject, group, x[i], full[i], counterfactual[i], twin))
    decoded = Decoded(1 - residual / total,
                      {g: map_sums[g] / counts[g] for g in sorted(map_sums)}, shown)
    if per_twin:  # medians over the patients with a twin
        decoded.twins = len(per_twin["twin_error"])
        for name, values in per_twin.items():
            if not np.all(np.isnan(values)):
                setattr(decoded, name, float(np.nanmedian(values)))
    return decoded
