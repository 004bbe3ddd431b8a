"""Checks of numeric settings shared by the stages: one clear `InputError` per bad value."""

from __future__ import annotations

import math
from typing import Any

from neurocvae.errors import InputError


def require_number(name: str, value: Any, *, above: float | None = None,
                   at_least: float | None = None, meaning: str = "") -> None:
    """Refuse a setting that is not a finite number `> above` (or `≥ at_least`); `meaning`,
    when given, says in the message what the setting is."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (not number or not math.isfinite(value) or (above is not None and value <= above)
            or (at_least is not None and value < at_least)):
        bound = f"> {above:g}" if above is not None else f"≥ {at_least:g}"
        raise InputError(f"{name}={value}: expected a finite number {bound}"
                         + (f" ({meaning})" if meaning else ""))


def check_trainer(trainer: Any) -> None:
    """Refuse trainer settings that would train nothing."""
    epochs = trainer.get("max_epochs")
    if epochs is not None and epochs != -1:  # -1: until stopped
        require_number("trainer.max_epochs", epochs, at_least=1)
