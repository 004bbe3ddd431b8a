"""Items of a dataset one at a time, read by worker processes or by the calling one."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset


def one_by_one(dataset: Dataset, workers: int, **options: Any) -> DataLoader:
    """A loader that yields `dataset[i]` as it is, in order, read by `workers` processes (0:
    the calling one). A worker that raises loses the item's context in the main process, so
    the datasets given here return a problem with the item instead of raising."""
    return DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is,
                      **options)


def _as_is(item: Any) -> Any:
    return item
