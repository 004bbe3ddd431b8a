"""Console scripts, one small module per command; each is a Hydra app."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from neurocvae.errors import InputError, TrainingDiverged

log = logging.getLogger("neurocvae")


def reports_input_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an `InputError` into one clear line on stderr and exit status 2, and a
    `TrainingDiverged` into one line and exit status 3 (no traceback)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except TrainingDiverged as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(3)

    return wrapper
