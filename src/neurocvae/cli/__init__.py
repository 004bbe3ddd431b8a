"""Console scripts, one small module per command; each is a Hydra app."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from neurocvae.config import config_dir
from neurocvae.errors import InputError, Stopped, TrainingDiverged

log = logging.getLogger("neurocvae")


def known_settings(config_name: str, choices: dict[str, Any] | None = None) -> set[str]:
    """The top-level keys of `conf/<config_name>.yaml`: its own entries, its config groups,
    `hydra`, and the entries that the chosen `@package _global_` options (`choices`: group →
    option, e.g. preset → quick) bring to the top level."""
    primary = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    groups = set()
    for entry in primary.get("defaults", []):
        names = entry.keys() if isinstance(entry, dict) or OmegaConf.is_dict(entry) else []
        groups |= {name.split()[-1].split("/")[0] for name in names}
    known = {*primary.keys(), *groups, "hydra"}
    for group, choice in (choices or {}).items():
        option = config_dir() / group / f"{choice}.yaml"
        if isinstance(choice, str) and option.is_file() and \
                "@package _global_" in option.read_text().partition("\n")[0]:
            known |= set(OmegaConf.load(option).keys())
    return known - {"defaults"}


def refuse_unknown_additions() -> None:
    """Refuse `+key=value` (or `++key=value`) overrides of a top-level key that the command's
    config does not have: Hydra would store it and nothing would read it. Nested additions to a
    known entry (`+trainer.profiler=simple`) pass through to what reads that entry."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    known = known_settings(hydra_cfg.job.config_name, dict(hydra_cfg.runtime.choices))
    added = [override for override in hydra_cfg.overrides.task if override.startswith("+")]
    unknown = [o for o in added if o.lstrip("+").split("=")[0].split(".")[0] not in known]
    if unknown:
        raise InputError(f"unknown setting(s) {unknown}: {hydra_cfg.job.config_name} has no "
                         f"such key, so it would be stored and ignored; known top-level "
                         f"settings: {sorted(known - {'hydra'})}")


def reports_input_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse unknown `+key` overrides, then run `task`; turn an `InputError` into one clear
    line on stderr and exit status 2, and a `TrainingDiverged` into one line and exit status 3
    (no traceback); a run `Stopped` by a signal exits with its status."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            refuse_unknown_additions()
            return task(*args, **kwargs)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except TrainingDiverged as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(3)
        except Stopped as stopped:
            sys.exit(stopped.status)

    return wrapper
