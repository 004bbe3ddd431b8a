"""A trained model's encoders as an ONNX file, for use outside Python (onnxruntime, C++, …).

The exported graph takes volumes as `Preprocessing` gives them (float32 [B, 1, X, Y, Z]: RAS,
resampled, cropped, normalised; any batch size B) and returns the code means `shared` [B, Z]
and `salient` [B, S]. The rest of the way from a file to the model's input (the cache's float16
rounding and the run's intensity scaling) is inside the graph, so its codes are those of
`TrainedModel.encode`. Needs the `export` extra (onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.volumes import MinMax
from neurocvae.errors import InputError


class CodeMeans(nn.Module):
    """Preprocessed volumes [B, 1, X, Y, Z] → (shared [B, Z], salient [B, S]) code means."""

    def __init__(self, module: ContrastiveModule, minmax: MinMax | None) -> None:
        super().__init__()
        self.shared_encoder = copy.deepcopy(module.nets.shared_encoder).cpu()
        self.salient_encoder = copy.deepcopy(module.nets.salient_encoder).cpu()
        self.minmax = minmax

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = volume.half().float()  # as the volume cache stores it
        if self.minmax is not None:
            x = self.minmax(x)
        return self.shared_encoder(x)[0], self.salient_encoder(x)[0]


def export_onnx(module: ContrastiveModule, minmax: MinMax | None, path: str | Path) -> Path:
    """Write the encoders of `module` (with the intensity scaling `minmax`) to `path` as ONNX
    (input `volume`, outputs `shared`, `salient`); the file appears only when complete."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise InputError(f"exporting to ONNX needs the export extra ({error.name} is missing): "
                         "pip install 'neurocvae[export]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoders = CodeMeans(module, minmax).eval()
    example = torch.zeros(2, 1, *module.nets.input_shape)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    torch.onnx.export(encoders, (example,), partial, input_names=["volume"],
                      output_names=["shared", "salient"], dynamo=True, verbose=False,
                      dynamic_shapes={"volume": {0: torch.export.Dim("batch")}},
                      external_data=False)
    os.replace(partial, path)
    return path
