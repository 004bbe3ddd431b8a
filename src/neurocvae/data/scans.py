"""Reading scans a trained model has never seen, exactly as its training read them: the run's
preprocessing, the volume cache's float16 rounding, the fitted intensity scaling. A checkpoint
carries all three (its DataModule's state), so a checkpoint copied alone can read new scans.

`Scans` are a cohort table (a CSV path, or a DataFrame with a `path` column: its other columns
are kept), a folder of NIfTI files, or a list of NIfTI paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from neurocvae.data.cohort import read_manifest, scan_id
from neurocvae.data.datasets import model_inputs
from neurocvae.data.volumes import MinMax, Preprocessing, preprocess
from neurocvae.data.workers import one_by_one
from neurocvae.errors import InputError
from neurocvae.progress import progress

Scans = str | Path | pd.DataFrame | Sequence[str | Path]
ROLES = ("target", "background")  # a scan that may carry the salient pattern, a healthy one


def scans_table(scans: Scans) -> pd.DataFrame:
    """`scans` as a cohort table with absolute paths: a CSV table or a folder (read and checked
    like any cohort table, ages and groups optional), a DataFrame with a `path` column, or a
    list of paths (subject ids: the file names without their suffix). An optional `role`
    column says how the contrastive model reads each scan (`ROLES`; "target" without one, or
    where its cell is empty)."""
    if isinstance(scans, str | Path):
        table = read_manifest(scans, labelled=False)
    else:
        table = _listed_scans(scans)
    if "role" in table.columns:  # an empty cell: the default, a target
        table["role"] = table["role"].fillna("target").replace("", "target")
        wrong = table.index[~table["role"].isin(ROLES)]
        if len(wrong):
            raise InputError(f"row {wrong[0] + 1} of the scans, column 'role': "
                             f"{table['role'][wrong[0]]!r}; expected one of {', '.join(ROLES)} "
                             "(how the contrastive model reads the scan)")
    return table


def _listed_scans(scans: pd.DataFrame | Sequence[str | Path]) -> pd.DataFrame:
    """A DataFrame with a `path` column, or a list of paths, as a table with absolute paths
    and subject ids."""
    if isinstance(scans, pd.DataFrame):
        if "path" not in scans.columns:
            raise InputError(f"a table of scans needs a 'path' column (found "
                             f"{', '.join(map(str, scans.columns))})")
        table = scans.reset_index(drop=True).copy()
    else:
        paths = [Path(p) for p in scans]
        if not paths:
            raise InputError("no scans given")
        table = pd.DataFrame({"path": [str(p) for p in paths]})
    table["path"] = [str(Path(p).resolve()) for p in table["path"]]
    missing = [p for p in table["path"] if not Path(p).is_file()]
    if missing:
        raise InputError(f"{len(missing)} scan(s) not found: {', '.join(missing[:5])}")
    if "subject_id" not in table.columns:
        table.insert(0, "subject_id", [scan_id(Path(p).name) for p in table["path"]])
    return table


@dataclass
class ScanReader:
    """Model inputs from files. preprocessing, minmax: the run's; affine: [4, 4] voxel-to-mm
    (RAS) affine of the model's input grid; shape: [X, Y, Z] the model takes (None: any)."""

    preprocessing: Preprocessing
    minmax: MinMax | None
    affine: np.ndarray
    shape: tuple[int, int, int] | None
    batch_size: int = 8
    num_workers: int = 0  # processes that read scans beside the main one (0: it reads them)
    show_progress: bool = False  # a progress bar over the batches of each pass
    transform: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.transform = self.preprocessing.transform()

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, source: Path, *,
                   shape: Sequence[int] | None = None, **options: Any) -> ScanReader:
        """The reader of a checkpoint whose DataModule state is `state` (from `source`); the
        model takes `shape`, by default the preprocessing's crop."""
        if not state or not state.get("preprocessing") or not state.get("affine"):
            raise InputError(f"{source}: the checkpoint does not carry its preprocessing and "
                             "grid (written by an older neurocvae); train it again")
        preprocessing = Preprocessing.from_dict(state["preprocessing"])
        shape = shape or preprocessing.shape
        return cls(preprocessing=preprocessing,
                   minmax=MinMax(**state["minmax"]) if state.get("minmax") else None,
                   affine=np.asarray(state["affine"], dtype=float),
                   shape=tuple(int(n) for n in shape) if shape else None, **options)

    def read(self, path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
        """One scan as a model input float32 [1, X, Y, Z] (preprocessed, rounded to float16 as
        the cache stores it, scaled) and the [4, 4] affine of its preprocessed grid."""
        volume = preprocess(self.transform, path)
        affine, image = np.asarray(volume.affine, dtype=float), volume.as_tensor()
        if self.shape is not None and tuple(image.shape[1:]) != self.shape:
            raise InputError(f"{path}: preprocessed to {tuple(image.shape[1:])} voxels, but the "
                             f"model takes {self.shape}")
        image = model_inputs({"image": image.half()[None]}, self.minmax)["image"][0]
        return image, affine

    def batches(self, table: pd.DataFrame, description: str = "reading scans"
                ) -> Iterator[dict[str, Any]]:
        """Batches of `batch_size` model inputs: `image` [B, 1, X, Y, Z], `subject_id`,
        `path`, `affine` (one [4, 4] per scan) and `role` (the table's, or "target")."""
        scans = iter(one_by_one(_ReadScans(self, table["path"].tolist()), self.num_workers))
        with progress(description, len(table), shown=self.show_progress) as advance:
            for start in range(0, len(table), self.batch_size):
                rows = table.iloc[start:start + self.batch_size]
                read = [next(scans) for _ in range(len(rows))]  # in the table's order
                problem = next((problem for *_, problem in read if problem), None)
                if problem:
                    raise InputError(problem)
                yield {"image": torch.stack([image for image, _, _ in read]),
                       "subject_id": rows["subject_id"].tolist(), "path": rows["path"].tolist(),
                       "affine": [affine for _, affine, _ in read],
                       "role": (rows["role"].tolist() if "role" in rows.columns
                                else ["target"] * len(rows))}
                advance(len(rows))


class _ReadScans(Dataset):
    """Scan i read by `reader`: (image, affine, ""), or (None, None, the problem) for a scan
    it cannot use, so that a worker process raises nothing."""

    def __init__(self, reader: ScanReader, paths: list[str]) -> None:
        self.reader, self.paths = reader, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, np.ndarray | None, str]:
        try:
            return *self.reader.read(self.paths[i]), ""
        except InputError as error:
            return None, None, str(error)
