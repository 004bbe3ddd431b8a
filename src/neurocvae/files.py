"""Writing files that a kill must never leave half-written, JSON that is valid JSON, and
reading PyTorch files (a run's checkpoints) without running pickled code."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from neurocvae.errors import InputError


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: into a hidden file beside it (named by this
    process, so concurrent writers do not meet), then renamed over it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def json_ready(value: Any) -> Any:
    """`value` with NaN and ±inf (anywhere in nested dicts, lists and tuples) as None, and
    numpy scalars as Python numbers: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy and torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, value: Any) -> None:
    """`value` as indented, strictly valid JSON (NaN and inf written as null), atomically."""
    write_text_atomically(Path(path), json.dumps(json_ready(value), indent=1,
                                                 allow_nan=False) + "\n")


def run_checkpoint(run_dir: Path, which: str) -> Path:
    """`best`, `last` or a path → the checkpoint file of a run folder (`checkpoints/`)."""
    path = run_dir / "checkpoints" / f"{which}.ckpt" if which in ("best", "last") else Path(which)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint (checkpoint=best, last or a path)")
    return path


def read_torch_file(path: Path, missing: str, unreadable: str) -> Any:
    """The contents of a PyTorch file, loaded on the CPU with `weights_only=True` (no pickled
    code runs). `InputError`: "<path>: <missing>" when there is no such file, "<path>: not a
    readable <unreadable> (<why>)" when it cannot be read."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safety errors alike
        raise InputError(f"{path}: not a readable {unreadable} ({error})") from error
