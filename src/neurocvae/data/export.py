"""Trained networks as ONNX files, for use outside Python (onnxruntime, C++, …).

An exported graph takes volumes as `Preprocessing` gives them (float32 [B, 1, X, Y, Z]: RAS,
resampled, cropped, normalised; any batch size B). The rest of the way from a file to the
network's input (the volume cache's float16 rounding and the run's intensity scaling:
`ModelInputs`) is inside the graph, so its outputs are those of the Python model classes
(`neurocvae.TrainedModel`, `neurocvae.BrainAgeModel`). Needs the `export` extra (onnx,
onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from neurocvae.data.volumes import MinMax
from neurocvae.errors import InputError


class ModelInputs(nn.Module):
    """Preprocessed volumes [B, 1, X, Y, Z] → the network's inputs, as the DataModules make them:
    rounded to float16 (the cache) and scaled by `minmax` when the run fitted one."""

    def __init__(self, minmax: MinMax | None) -> None:
        super().__init__()
        self.minmax = minmax

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = volume.half().float()
        return self.minmax(x) if self.minmax is not None else x


def export_onnx(graph: nn.Module, shape: Sequence[int], outputs: Sequence[str],
                path: str | Path) -> Path:
    """Write `graph` (volumes [B, 1, *shape] → `outputs`) to `path` as ONNX with input
    `volume` and a dynamic batch size; the file appears only when complete."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise InputError(f"exporting to ONNX needs the export extra ({error.name} is missing): "
                         "pip install 'neurocvae[export]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    torch.onnx.export(graph.eval(), (torch.zeros(2, 1, *shape),), partial,
                      input_names=["volume"], output_names=list(outputs), dynamo=True,
                      verbose=False, dynamic_shapes={"volume": {0: torch.export.Dim("batch")}},
                      external_data=False)
    os.replace(partial, path)
    return path
