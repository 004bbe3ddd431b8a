"""Writing files that a kill must never leave half-written."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: into a hidden file beside it (named by this
    process, so concurrent writers do not meet), then renamed over it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)
