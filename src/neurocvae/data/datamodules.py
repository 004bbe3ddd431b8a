"""Lightning DataModules: brain age (volumes and ages) and contrastive (target and background).

Everything is checked in `prepare_data`/`setup`, before the first step: the tables (schema, files,
duplicates, overlap), every volume (while the cache is built), the splits.

`batch_size` is per device: under DDP each process draws `batch_size` items per step, so the
effective batch is `batch_size × devices × nodes`. A contrastive step holds `batch_size` targets
*and* `batch_size` backgrounds. The training loader is a torchdata `StatefulDataLoader`, so its
position is saved in checkpoints and a run stopped mid-epoch resumes at the next batch with the
same draws (augmentation is seeded per item by the sampler).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from neurocvae.data import pairing as pairings
from neurocvae.data.augment import Augmentation
from neurocvae.data.cache import VolumeCache, open_or_build
from neurocvae.data.cohort import MAX_LISTED, check_disjoint, line_of, read_manifest
from neurocvae.data.datasets import (
    ContrastiveDataset,
    EpochSampler,
    VolumeDataset,
    model_inputs,
)
from neurocvae.data.splits import load_or_make_splits
from neurocvae.data.volumes import MinMax, Preprocessing, check_crop
from neurocvae.errors import InputError

log = logging.getLogger(__name__)


def default_splits_file(table: str | Path) -> Path:
    """`<folder>/<table>.splits.json` beside the table."""
    table = Path(table)
    return table.with_name(f"{table.stem}.splits.json")


class CohortDataModule(pl.LightningDataModule):
    """What both DataModules share: the cache, intensity scaling, loaders, rejected rows."""

    def __init__(self, *, cache_dir: str, preprocessing: Mapping[str, Any] | None = None,
                 augmentation: Mapping[str, Any] | None = None,
                 split_fractions: Mapping[str, float] | None = None, splits_file: str | None,
                 batch_size: int = 4, num_workers: int = 0, cache_workers: int = 0,
                 seed: int = 42, skip_bad: bool = False, out_dir: str | None = None) -> None:
        super().__init__()
        self.preprocessing = Preprocessing.from_dict(preprocessing or {})
        self.augmentation = Augmentation(**(augmentation or {}))
        self.split_fractions = dict(split_fractions or {"train": 0.8, "val": 0.2})
        if "train" not in self.split_fractions:
            raise InputError(f"split_fractions {self.split_fractions} needs a 'train' split")
        self.cache_dir, self.splits_file = cache_dir, splits_file
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache_workers = cache_workers
        self.seed, self.skip_bad = seed, skip_bad
        self.out_dir = Path(out_dir) if out_dir else None
        self.cache: VolumeCache | None = None
        self.minmax: MinMax | None = None
        self._grid_affine: np.ndarray | None = None
        self._first_path: str | None = None
        self.splits: dict[str, Any] = {}  # split name → its rows (per subclass)

    # --- shared steps -------------------------------------------------------------------------

    def _cached(self, table: pd.DataFrame) -> pd.DataFrame:
        """Build or open the cache for `table`; return the rows whose volume is usable."""
        check_crop(table["path"], self.preprocessing)
        self.cache = open_or_build(table["path"].tolist(), self.preprocessing, self.cache_dir,
                                   workers=self.cache_workers, skip_bad=self.skip_bad)
        usable = table["path"].map(self.cache.__contains__)
        if not usable.all() and self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            rejected = self.cache.rejected.merge(table[["subject_id", "path"]], on="path")
            rejected.to_csv(self.out_dir / "rejected.csv", index=False)
            log.warning("%d row(s) rejected: %s", (~usable).sum(), self.out_dir / "rejected.csv")
        table = table[usable].reset_index(drop=True)
        if self._first_path is None and len(table):
            self._first_path = table["path"].iloc[0]
        return table

    def _fit_intensity(self, train: pd.DataFrame) -> None:
        """Fit `minmax_global` on the training rows only (kept if restored from a checkpoint)."""
        if self.preprocessing.normalise != "minmax_global" or self.minmax is not None:
            return
        rows = self.cache.index.set_index("path").loc[train["path"]]
        self.minmax = MinMax.fit(rows["min"].to_numpy(), rows["max"].to_numpy())
        if self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "normalisation.json").write_text(
                json.dumps({"minmax_global": vars(self.minmax)}, indent=1))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[X, Y, Z] of the model inputs (known once the cache is built)."""
        if self.cache is None:
            raise RuntimeError("image_shape is known after prepare_data()")
        return tuple(int(n) for n in self.cache.array.shape[1:])

    def dataset(self, table: pd.DataFrame, *, train: bool = False) -> VolumeDataset:
        """Items of `table` (which must be covered by the cache); augmented when `train`."""
        return VolumeDataset(table, self.cache,
                             augment=self.augmentation.transform() if train else None)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images to float32 and the fitted intensity scaling, on the device."""
        return model_inputs(batch, self.minmax)

    def _loader(self, dataset: Dataset, sampler: EpochSampler, *, train: bool) -> DataLoader:
        if train and len(sampler) < self.batch_size:
            raise InputError(f"{len(sampler)} training item(s) per device, fewer than "
                             f"batch_size={self.batch_size}: lower the batch size")
        kind = StatefulDataLoader if train else DataLoader
        return kind(dataset, batch_size=self.batch_size, sampler=sampler,
                    num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                    pin_memory=torch.cuda.is_available(), drop_last=train)

    def _draws(self, name: str, *, train: bool) -> tuple[Dataset, EpochSampler]:
        """The dataset and sampler of split `name` (each DataModule says how)."""
        raise NotImplementedError

    def require_split(self, name: str) -> None:
        if name not in self.splits:
            raise InputError(f"no {name!r} split: split_fractions has {list(self.splits)}")

    def _split_loader(self, name: str, *, train: bool = False) -> DataLoader:
        self.require_split(name)
        dataset, sampler = self._draws(name, train=train)
        return self._loader(dataset, sampler, train=train)

    def train_dataloader(self) -> DataLoader:
        """The training draws of the trainer's current epoch. The epoch is set here because a
        run resumed mid-epoch iterates this loader (fast-forwarded to its saved position)
        before Lightning sets the sampler's epoch: without it, a run resumed in epoch ≥ 1
        would draw epoch 0's order."""
        loader = self._split_loader("train", train=True)
        if self.trainer is not None:
            loader.sampler.set_epoch(self.trainer.current_epoch)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._split_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._split_loader("test")

    @property
    def grid_affine(self) -> np.ndarray:
        """[4, 4] the voxel-to-mm (RAS) affine of the model inputs (that of the first usable
        volume of the tables; known once the cache is built)."""
        if self._grid_affine is None:
            if self._first_path is None:
                raise RuntimeError("grid_affine is known after prepare_data()")
            self._grid_affine = self.preprocessing.affine(self._first_path)
        return self._grid_affine

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the fitted intensity scaling, and what a checkpoint copied
        alone needs to read new scans (`neurocvae.contrastive.trained`): the preprocessing and
        the input grid's affine."""
        return {"minmax": vars(self.minmax) if self.minmax else None,
                "preprocessing": self.preprocessing.as_dict(),
                "affine": self.grid_affine.tolist() if self._first_path else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("minmax"):
            self.minmax = MinMax(**state_dict["minmax"])


class BrainAgeDataModule(CohortDataModule):
    """Volumes and ages of one manifest.

    Splits are stratified by group and site over the whole manifest; the train/val/test loaders
    hold only `train_groups` (healthy controls by default: the model learns normal ageing), and
    `predict_dataloader` every usable row of the manifest, in file order. With
    `labelled=False` (prediction only) ages and groups may be unknown and there are no splits.
    """

    def __init__(self, manifest: str, *, train_groups: Sequence[str] = ("HC",),
                 splits_file: str | None = None, labelled: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("split_fractions", {"train": 0.7, "val": 0.15, "test": 0.15})
        super().__init__(splits_file=splits_file or str(default_splits_file(manifest)), **kwargs)
        self.manifest, self.train_groups = manifest, list(train_groups)
        self.labelled = labelled
        self.table: pd.DataFrame | None = None
        self.split_ids: dict[str, list[str]] = {}  # split name → subject ids, every group

    def _manifest(self) -> pd.DataFrame:
        return read_manifest(self.manifest, labelled=self.labelled)

    def prepare_data(self) -> None:
        if self.table is None:  # once set up, the cache is built and the table checked
            self._cached(self._manifest())

    def split_of(self, subject_ids: pd.Series) -> pd.Series:
        """The split (`train`, `val`, …) each subject belongs to, patients included."""
        return subject_ids.map({s: name for name, rows in self.split_ids.items() for s in rows})

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        table = self._manifest()
        if not self.labelled:
            self.table = self._cached(table)
            return
        ids = self.split_ids = load_or_make_splits(table, self.splits_file, self.split_fractions,
                                                   seed=self.seed)
        self.table = self._cached(table)
        modelled = self.table[self.table["group"].isin(self.train_groups)]
        self.splits = {name: modelled[modelled["subject_id"].isin(set(members))]
                       for name, members in ids.items()}
        if self.splits["train"].empty:
            raise InputError(f"{self.manifest}: no training subject in groups {self.train_groups}")
        self._fit_intensity(self.splits["train"])

    def _draws(self, name: str, *, train: bool) -> tuple[Dataset, EpochSampler]:
        """Training: shuffled and padded to equal length per DDP rank; else every scan once."""
        dataset = self.dataset(self.splits[name], train=train)
        return dataset, EpochSampler(len(dataset), seed=self.seed, shuffle=train, pad=train)

    def statistics_dataloader(self) -> DataLoader:
        """The training split once, in order, unaugmented (each DDP rank its own part): what
        BatchNorm statistics are recomputed over (`neurocvae.brainage.precise_bn`)."""
        return self._split_loader("train")

    def predict_dataloader(self) -> DataLoader:
        """Every usable scan once (under DDP, each on one rank)."""
        dataset = self.dataset(self.table)
        return self._loader(dataset, EpochSampler(len(dataset), seed=self.seed, shuffle=False,
                                                  pad=False), train=False)


class ContrastiveDataModule(CohortDataModule):
    """A target set (patients) and a background set (healthy controls), split alike.

    Each training epoch walks the background training set once; every background scan is paired
    with a target by `pairing`: `random` (targets cycled in a fresh order), `age_matched` (a
    random target within `age_window` years, else the nearest) or `site_matched` (a random
    target from the same site, else any). Batches are `{"target": …, "background": …}`.
    """

    def __init__(self, target: str, background: str, *, pairing: str = "random",
                 age_window: float = 1.0, splits_file: str | None = None,
                 **kwargs: Any) -> None:
        if pairing not in pairings.PAIRINGS:
            raise InputError(f"pairing={pairing!r}: expected one of {pairings.PAIRINGS}")
        super().__init__(splits_file=splits_file or str(default_splits_file(target)), **kwargs)
        self.target_file, self.background_file = target, background
        self.pairing, self.age_window = pairing, age_window

    def _tables(self) -> pd.DataFrame:
        target, background = read_manifest(self.target_file), read_manifest(self.background_file)
        check_disjoint({self.target_file: target, self.background_file: background})
        controls = background["group"].value_counts().index[0]  # the background's group
        for file, rows, what in (
                (self.background_file, background[background["group"] != controls],
                 f"the background set holds one group, the controls ({controls}); "),
                (self.target_file, target[target["group"] == controls],
                 f"the target set holds patients, not the background's group {controls}; ")):
            if len(rows):
                lines = ", ".join(str(line_of(row)) for row in rows.index[:MAX_LISTED])
                raise InputError(f"{file}: {what}{len(rows)} row(s) are in group(s) "
                                 f"{sorted(set(rows['group']))} (lines {lines})")
        return pd.concat([target.assign(role="target"), background.assign(role="background")],
                         ignore_index=True)

    def prepare_data(self) -> None:
        if not self.splits:  # once set up, the cache is built and the tables checked
            self._cached(self._tables())

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        table = self._tables()
        ids = load_or_make_splits(table, self.splits_file, self.split_fractions, seed=self.seed,
                                  stratify=("role", "group", "site"))
        table = self._cached(table)
        for name, members in ids.items():
            part = table[table["subject_id"].isin(set(members))]
            self.splits[name] = {role: part[part["role"] == role] for role in
                                 ("target", "background")}
        for role, rows in self.splits["train"].items():
            if rows.empty:
                raise InputError(f"the training split has no {role} subject")
        self._fit_intensity(pd.concat(self.splits["train"].values()))

    def pairing_rule(self, target: pd.DataFrame, background: pd.DataFrame) -> pairings.Pairing:
        if self.pairing == "age_matched":
            return pairings.age_matched_pairing(background["age"].to_numpy(),
                                                target["age"].to_numpy(), window=self.age_window)
        if self.pairing == "site_matched":
            return pairings.site_matched_pairing(background["site"].to_numpy(),
                                                 target["site"].to_numpy())
        return pairings.random_pairing(len(background), len(target))

    def role_loader(self, split: str, role: str) -> DataLoader:
        """Every `role` ("target" or "background") scan of `split` once, in table order,
        unaugmented and unpaired (for encoding)."""
        self.require_split(split)
        dataset = self.dataset(self.splits[split][role])
        return self._loader(dataset, EpochSampler(len(dataset), seed=self.seed, shuffle=False,
                                                  num_replicas=1, rank=0), train=False)

    def input_batches(self, split: str, role: str) -> Iterator[dict[str, Any]]:
        """`role_loader`'s batches as the model sees them: `image` [B, 1, X, Y, Z] float32 with
        the fitted intensity scaling (on the CPU), `subject_id` and the other fields."""
        for batch in self.role_loader(split, role):
            yield self.on_after_batch_transfer(batch, 0)

    def _draws(self, name: str, *, train: bool) -> tuple[Dataset, EpochSampler]:
        parts = self.splits[name]
        if parts["target"].empty or parts["background"].empty:
            raise InputError(f"the {name} split needs targets and backgrounds; it has "
                             f"{len(parts['target'])} and {len(parts['background'])}")
        dataset = ContrastiveDataset(self.dataset(parts["target"], train=train),
                                     self.dataset(parts["background"], train=train))
        sampler = EpochSampler(len(parts["background"]), seed=self.seed, shuffle=train,
                               pairing=self.pairing_rule(parts["target"], parts["background"]))
        return dataset, sampler
