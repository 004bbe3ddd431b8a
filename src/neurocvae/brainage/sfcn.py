"""SFCN (Peng et al. 2021, docs/science.md §2), with the loader for the published weight files.

Module names and Sequential indices follow the published model, so its state dict loads as is.
The classifier's average pool is adaptive: identical to the published AvgPool3d([5, 6, 5]) at
160×192×160, and it also works on smaller inputs (every axis ≥ 32 voxels: five halvings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from neurocvae.errors import InputError
from neurocvae.files import read_torch_file

BRAIN_AGE_CHANNELS = (32, 64, 128, 256, 256, 64)
SEX_CHANNELS = (28, 58, 128, 256, 256, 64)
MIN_AXIS = 32  # five 2× max-pools must leave at least one voxel


def _block(c_in: int, c_out: int, *, pool: bool, kernel_size: int = 3) -> nn.Sequential:
    """Conv3d → BatchNorm3d → (MaxPool3d 2) → ReLU, indexed 0, 1, 2(, 3) like the original."""
    layers: list[nn.Module] = [nn.Conv3d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                               nn.BatchNorm3d(c_out)]
    if pool:
        layers.append(nn.MaxPool3d(2, stride=2))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SFCN(nn.Module):
    """Simple fully convolutional network: [B, 1, X, Y, Z] volume → [B, K] log-probabilities.

    Defaults are the brain-age model (40 one-year bins, 2,952,936 parameters); `sex()` builds the
    sex-prediction model. The published model returns a one-element list of [B, K, 1, 1, 1];
    this one returns the [B, K] tensor itself.
    """

    def __init__(self, *, channels: Sequence[int] = BRAIN_AGE_CHANNELS, output_dim: int = 40,
                 dropout: float = 0.5) -> None:
        super().__init__()
        channels = list(channels)
        self.feature_extractor = nn.Sequential()
        c_in = 1
        for i, c_out in enumerate(channels):
            last = i == len(channels) - 1
            self.feature_extractor.add_module(
                f"conv_{i}", _block(c_in, c_out, pool=not last, kernel_size=1 if last else 3))
            c_in = c_out
        self.classifier = nn.Sequential()
        self.classifier.add_module("average_pool", nn.AdaptiveAvgPool3d(1))
        if dropout > 0:
            self.classifier.add_module("dropout", nn.Dropout(dropout))
        self.classifier.add_module(f"conv_{len(channels)}", nn.Conv3d(c_in, output_dim, 1))
        self.min_axis = 2 ** (len(channels) - 1)

    @classmethod
    def sex(cls, **kwargs) -> SFCN:
        """The published sex-prediction model (2 outputs: 0 female, 1 male; 2,918,144 params)."""
        return cls(channels=SEX_CHANNELS, output_dim=2, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[2:]) < self.min_axis:
            raise ValueError(f"SFCN needs every axis ≥ {self.min_axis} voxels; got "
                             f"{tuple(x.shape[2:])}")
        logits = self.classifier(self.feature_extractor(x))
        return torch.log_softmax(logits.flatten(1), dim=1)


def _listing(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weight file into `model` and return it.

    Accepts a plain state dict, one saved from `nn.DataParallel` (keys prefixed `module.`, as the
    published files are) and a Lightning checkpoint of `BrainAgeModule` (keys prefixed `net.`).
    Loaded with `weights_only=True`. A file of another architecture raises `InputError` listing
    the missing keys, the unexpected keys and the shape mismatches.
    """
    path = Path(path)
    state = read_torch_file(path, "weight file not found", "PyTorch weight file")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict, found {type(state).__name__}")
    for prefix in ("module.", "net."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [f"{key} (file {tuple(state[key].shape)}, model {tuple(value.shape)})"
                  for key, value in expected.items()
                  if key in state and state[key].shape != value.shape]
    if missing or unexpected or mismatched:
        problems = [f"{label} {len(keys)}: {_listing(keys)}"
                    for label, keys in (("missing keys", missing),
                                        ("unexpected keys", unexpected),
                                        ("shape mismatches", mismatched)) if keys]
        raise InputError(f"{path} does not fit {type(model).__name__} "
                         f"({sum(p.numel() for p in model.parameters()):,} parameters): "
                         + "; ".join(problems))
    model.load_state_dict(state)
    return model
