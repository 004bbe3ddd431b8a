"""Figures written to files: the headless matplotlib backend and one way to save a figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

DPI = 110


def save_figure(fig: plt.Figure, path: Path, *, tight: bool = True) -> Path:
    """Lay out (unless `tight=False`, e.g. with a shared colour bar), write as PNG, close."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
