"""Public names of a package, imported on first use: `from neurocvae.data import read_manifest`
must not import PyTorch Lightning (8 s) for a command that only reads a table."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                             Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, serving each public name from its module
    (`names`: name → module within the package, or `module:attribute` when they differ)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = names[name].partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), attribute or name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
