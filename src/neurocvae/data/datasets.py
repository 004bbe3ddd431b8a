"""Datasets over cached volumes, and the sampler that draws an epoch.

An item is a dict: `image` float16 [1, X, Y, Z], `age` (years), `group` (its name), `site`,
`subject_id`. A contrastive item is `{"target": item, "background": item}`. Images travel as
float16 (half the bytes through workers, pinned memory and the bus); `model_inputs` makes them
float32 and applies the fitted intensity scaling, on the device (the DataModules call it in
`on_after_batch_transfer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from monai.transforms import Compose
from torch.utils.data import Dataset, DistributedSampler

from neurocvae.data.cache import VolumeCache
from neurocvae.data.pairing import Pairing

Intensity = Callable[[torch.Tensor], torch.Tensor]
MAX_SEED = 2**31 - 1


def model_inputs(batch: Any, intensity: Intensity | None = None) -> Any:
    """Every `image` in a (nested) batch as float32, scaled by `intensity` when given."""
    if not isinstance(batch, dict):
        return batch
    out = {key: model_inputs(value, intensity) for key, value in batch.items()}
    if isinstance(out.get("image"), torch.Tensor):
        out["image"] = out["image"].float()
        if intensity is not None:
            out["image"] = intensity(out["image"])
    return out


class VolumeDataset(Dataset):
    """The rows of a cohort table, read from the cache.

    Indexed by `i` or by `(i, seed)`: with a seed, `augment` draws its randomness from it.
    """

    def __init__(self, table: pd.DataFrame, cache: VolumeCache, *,
                 augment: Compose | None = None) -> None:
        self.table = table.reset_index(drop=True)
        self.cache, self.augment = cache, augment
        self.paths = self.table["path"].tolist()
        self.ages = torch.tensor(self.table["age"].to_numpy(), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i, seed = key if isinstance(key, tuple) else (key, None)
        image = self.cache.read(self.paths[i])
        if self.augment is not None:
            self.augment.set_random_state(seed=seed)
            image = torch.as_tensor(self.augment({"image": image.float()})["image"]).half()
        return {"image": image, "age": self.ages[i], "group": self.table.at[i, "group"],
                "site": self.table.at[i, "site"], "subject_id": self.table.at[i, "subject_id"]}


class ContrastiveDataset(Dataset):
    """Indexed by `(background i, target j, seed)`: `{"target": …, "background": …}`. A plain
    index i (Lightning's sequential sampler when it overfits a few batches) pairs background i
    with target i mod n_targets, seed 0."""

    def __init__(self, target: VolumeDataset, background: VolumeDataset) -> None:
        self.target, self.background = target, background

    def __len__(self) -> int:
        return len(self.background)

    def __getitem__(self, key: tuple[int, int, int] | int) -> dict:
        i, j, seed = key if isinstance(key, tuple) else (key, key % len(self.target), 0)
        return {"background": self.background[i, seed],
                "target": self.target[j, (seed + 1) % MAX_SEED]}


class EpochSampler(DistributedSampler):
    """The draws of one epoch: `(i, seed)`, or `(i, partner[i], seed)` with a pairing.

    Deterministic in `(seed, epoch)` (Lightning calls `set_epoch`); without `shuffle` the draws
    are the same every epoch (validation). Under DDP each rank takes every world-th draw of the
    same order, padded by repetition to equal length like `DistributedSampler` unless `pad` is
    false (then each item is drawn exactly once over the ranks: for measuring and predicting);
    being one, Lightning does not wrap it.
    """

    def __init__(self, n: int, *, seed: int, shuffle: bool = True,
                 pairing: Pairing | None = None, num_replicas: int | None = None,
                 rank: int | None = None, pad: bool = True) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed)
        self.n, self.pairing, self.pad = n, pairing, pad

    def __len__(self) -> int:
        return self.num_samples if self.pad else len(range(self.rank, self.n, self.num_replicas))

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        rng = np.random.default_rng([self.seed, self.epoch] if self.shuffle else [self.seed])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        partner = self.pairing(rng) if self.pairing is not None else None
        seeds = rng.integers(0, MAX_SEED, size=self.n)
        drawn = np.resize(order, self.total_size) if self.pad else order
        for i in drawn[self.rank::self.num_replicas]:
            i = int(i)
            yield (i, int(seeds[i])) if partner is None else (i, int(partner[i]), int(seeds[i]))
